"""Kinds of AI work: for each, a challenge from a seed, a miner's handler, an integer score.

Every task, these built-in ones and any from an installed package, is found through the
``agora.tasks`` entry-point group (``registry``); docs/write-your-own-task.md shows how.

- ``base``: the public task interface (``Task``), the score scale, latency credit, seeded
  draws, backend specs, and the shared request errors.
- ``embedding``: text embeddings with all-MiniLM-L6-v2; a dynamic batcher for miners.
- ``classification``: digit classifiers the miners train; scored on held-out perturbed images.
- ``generation``: chat with SmolLM2-135M-Instruct; answers checked by recomputed logits.
- ``generation_model``: SmolLM2-135M-Instruct in-process (``SmolLM2Backend``), and its cache of
  weights de-quantized from the GGUF file.
- ``federated``: a model trained by data contributors whose rows never leave them; scored by
  leave-one-out improvement on held-out rows, aggregated by ``protocol.federation``.
- ``forward``: backends that forward a task to an OpenAI-compatible inference engine.
- ``registry``: the one list of task kinds: entry points to task code, loaded when asked.
- ``data/corpus.txt``: the sentences embedding challenges are built from.
"""
