"""The task models: where the embedding thresholds come from, what batching costs, and how
well an honest digits classifier does on challenges.

    .venv/bin/python -m bench.bench_embedding_model [--callers 32] [--rounds 8] [--repeats 5]
        [--skip-agreement] [--skip-throughput] [--challenges 100]

(a) agreement: 256 challenge texts embedded by all-MiniLM-L6-v2 (batch 64) are compared with
    the same texts embedded honestly another way (one at a time, other batches, one thread)
    and by shortcuts a cheating miner might take (a normalized sum of cached per-sentence
    vectors, the first sentence only, text cut to 32 tokens, the int8-quantized model, a
    random projection, another text's vector). Reported: the cosine's spread and the mean
    quality ``compute_item_quality`` gives each (the thresholds in ``agora.tasks.embedding``).
(b) throughput: ``--callers`` concurrent callers, each sending ``--rounds`` requests one after
    another, through ``MiniLMBackend``'s dynamic batcher; then ``model.encode`` called directly
    on exactly the batches the batcher formed. Reported: sentences/s both ways and their ratio
    (the batcher's overhead), and ``model.encode`` once per request (what batching saves), for
    requests of 1 text (a gateway's single queries) and of 16 (a validator's challenge).
(c) classification: each ``SklearnDigitsBackend`` kind is trained on the public split and
    answers ``--challenges`` challenges; reported: fit time, accuracy and score (mean, min),
    and the same for random labels.

Figures only; no assertion. Texts are seeded. Timings on a shared machine are noisy: the
three ways alternate ``--repeats`` times; printed are the best wall-clock rate (the run least
disturbed by other work) and the median rate per CPU-second of this process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
import warnings
from typing import Any

import numpy as np

from agora.tasks.embedding import (
    MiniLMBackend,
    compute_cosine_ppm,
    compute_item_quality,
    load_corpus,
    load_sentence_transformer,
    make_challenge,
    quantize,
)


class RecordingEncoder:
    """The real model, noting the batches it is asked to encode."""

    def __init__(self, encoder: Any) -> None:
        self.encoder = encoder
        self.batches: list[list[str]] = []

    def encode(self, texts: list[str], **options: Any) -> Any:
        self.batches.append(list(texts))
        return self.encoder.encode(texts, **options)


def make_texts(count: int) -> list[str]:
    texts: list[str] = []
    seed = 0
    while len(texts) < count:
        texts += make_challenge(seed.to_bytes(4, "big"), b"bench").request["texts"]
        seed += 1
    return texts[:count]


def encode(model: Any, texts: list[str], batch_size: int = 64) -> np.ndarray:
    return model.encode(
        texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False
    )


def summarize(name: str, reference: np.ndarray, vectors: np.ndarray) -> None:
    cosines, qualities = [], []
    for expected, answer in zip(reference, vectors, strict=True):
        cosine_ppm = compute_cosine_ppm(quantize(answer.tolist()), quantize(expected.tolist()))
        cosines.append(cosine_ppm / 1e6)
        qualities.append(compute_item_quality(cosine_ppm) / 1e6)
    print(
        f"    {name:34s} cos min {min(cosines):8.5f} median {statistics.median(cosines):8.5f}"
        f" max {max(cosines):8.5f}  mean quality {statistics.fmean(qualities):.3f}"
    )


def measure_agreement(model: Any) -> None:
    import torch

    texts = make_texts(256)
    reference = encode(model, texts)
    corpus = load_corpus()
    cached = dict(zip(corpus, encode(model, list(corpus)), strict=True))

    def sentences_of(text: str) -> list[str]:
        lower = text.lower()
        return [
            s for _, s in sorted((lower.find(s.lower()), s) for s in corpus if s.lower() in lower)
        ]

    def normalized(vector: np.ndarray) -> np.ndarray:
        return vector / np.linalg.norm(vector)

    print(f"(a) agreement with the reference on {len(texts)} challenge texts")
    summarize(
        "honest, one text at a time", reference, np.stack([encode(model, [t])[0] for t in texts])
    )
    summarize("honest, batches of 7, reversed", reference, encode(model, texts[::-1], 7)[::-1])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    summarize("honest, one thread", reference, encode(model, texts, 16))
    torch.set_num_threads(threads)
    summed = [normalized(sum(cached[s] for s in sentences_of(t))) for t in texts]
    summarize("cached per-sentence vectors, summed", reference, np.stack(summed))
    first = [cached[sentences_of(t)[0]] for t in texts]
    summarize("first sentence only", reference, np.stack(first))
    model.max_seq_length = 32
    summarize("text cut to 32 tokens", reference, encode(model, texts))
    model.max_seq_length = 256
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = torch.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        summarize("int8-quantized model", reference, encode(quantized, texts))
    projection = np.random.default_rng(0).normal(size=(384, 384))
    summarize("random projection of the vectors", reference, reference @ projection)
    summarize("another text's vector", reference, np.roll(reference, 1, axis=0))


async def run_callers(backend: MiniLMBackend, requests: list[list[list[str]]]) -> None:
    async def caller(own: list[list[str]]) -> None:
        for texts in own:
            await backend.embed(texts)

    await asyncio.gather(*(caller(own) for own in requests))


def timed(work: Any) -> tuple[float, float]:
    """Wall and CPU seconds of ``work()`` (CPU time is steadier on a shared machine)."""
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def measure_throughput(model: Any, callers: int, rounds: int, size: int, repeats: int) -> None:
    texts = make_texts(callers * rounds * size)
    requests = [
        [texts[(c * rounds + r) * size : (c * rounds + r + 1) * size] for r in range(rounds)]
        for c in range(callers)
    ]
    runs: dict[str, list[tuple[float, float]]] = {"batcher": [], "direct": [], "unbatched": []}
    for _ in range(repeats):
        recorder = RecordingEncoder(model)
        backend = MiniLMBackend(encoder=recorder)
        runs["batcher"].append(timed(lambda b=backend: asyncio.run(run_callers(b, requests))))
        runs["direct"].append(
            timed(lambda r=recorder: [encode(model, batch) for batch in r.batches])
        )
        runs["unbatched"].append(
            timed(lambda: [encode(model, request) for own in requests for request in own])
        )
    sizes = [len(batch) for batch in recorder.batches]
    print(
        f"    requests of {size:2d} text(s): {len(sizes)} model batches for {callers * rounds}"
        f" requests (mean {statistics.fmean(sizes):.1f} texts)"
    )
    for label, column in (("wall, best", 0), ("CPU, median", 1)):
        rate = {
            name: (max if column == 0 else statistics.median)(len(texts) / t[column] for t in times)
            for name, times in runs.items()
        }
        print(
            f"      {label:11s} batcher {rate['batcher']:6.1f} texts/s, direct encode on its"
            f" batches {rate['direct']:6.1f} (ratio {rate['batcher'] / rate['direct']:.3f});"
            f" one encode per request {rate['unbatched']:6.1f}"
        )


def measure_classification(challenges: int) -> None:
    from agora.tasks import classification

    def run(response_for: Any) -> tuple[list[float], list[float]]:
        accuracies, scores = [], []
        for seed in range(challenges):
            challenge = classification.make_challenge(seed.to_bytes(4, "big"), b"bench")
            response = response_for(challenge)
            expected = challenge.secret["labels"]
            right = sum(a == b for a, b in zip(response["labels"], expected, strict=True))
            accuracies.append(right / len(expected))
            reference = {"labels": expected}
            scores.append(classification.compute_score(challenge, response, reference, 0) / 1e6)
        return accuracies, scores

    def report(name: str, accuracies: list[float], scores: list[float]) -> None:
        print(
            f"    {name:24s} accuracy mean {statistics.fmean(accuracies):.3f} min"
            f" {min(accuracies):.3f}; score mean {statistics.fmean(scores):.3f}"
            f" min {min(scores):.3f}"
        )

    print(f"(c) classification on {challenges} challenges of 60 perturbed held-out digits")
    for kind in classification.KINDS:
        start = time.perf_counter()
        backend = asyncio.run(classification.SklearnDigitsBackend.train(kind, 0))
        fitted = time.perf_counter() - start
        accuracies, scores = run(
            lambda challenge, b=backend: asyncio.run(classification.handle(b, challenge.request))
        )
        report(f"{kind} (fit {fitted:.1f}s)", accuracies, scores)
    rng = random.Random(0)
    accuracies, scores = run(
        lambda challenge: classification.make_random_response(challenge.request, rng)
    )
    report("random labels", accuracies, scores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--callers", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--challenges", type=int, default=100)
    parser.add_argument("--skip-agreement", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (others' work)")
    if not (args.skip_agreement and args.skip_throughput):
        start = time.perf_counter()
        model = load_sentence_transformer()
        print(f"model loaded in {time.perf_counter() - start:.1f}s")
    if not args.skip_throughput:  # first: (a) changes torch's thread settings on its way
        print(f"(b) throughput, {args.callers} concurrent callers x {args.rounds} requests each")
        measure_throughput(model, args.callers, args.rounds, 1, args.repeats)
        measure_throughput(model, args.callers, max(1, args.rounds // 4), 16, args.repeats)
    if not args.skip_agreement:
        measure_agreement(model)
    if args.challenges:
        measure_classification(args.challenges)


if __name__ == "__main__":
    main()
