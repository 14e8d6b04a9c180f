"""Yuma Consensus and the stateless rules around it, bit-exact with the Bittensor chain.

Files:
- ``yuma.py``: ``compute_epoch(EpochInputs) -> EpochResult``, one subnet epoch as a flat
  list of the spec's steps (``docs/yuma.md`` section 4), both bond paths.
- ``yuma_fast.py``: the same epoch vectorized with numpy, bit for bit (a differential test
  holds the two equal); what the ledger runs.
- ``fixed.py``: the fixed-point arithmetic (I32F32, I64F64, I96F32, U64F64) with the
  chain's rounding, saturation and safe division, on plain integers.
- ``weights.py``: what ``set_weights`` accepts and stores (section 8), commit-reveal v2
  hashes and commit queues (section 9).
- ``registration.py``: the registration price (decay, increase, bounds) and the uid a
  newcomer replaces (section 10).
- ``errors.py``: the coded refusals of these helpers.

Everything here is pure and integer-only: the ledger reads its state, calls these functions
with plain values, and writes what they return. The simulator (``agora.simulate``) is a
thin shell over the same functions.
"""
