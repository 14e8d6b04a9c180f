"""Epoch time of Yuma Consensus: the readable path against the vectorized one.

    .venv/bin/python -m bench.bench_epoch [--mode yuma3|yuma2|liquid] [--repeats N]
                                          [--profile UIDS:VALIDATORS] [--max-uids N]

For 64, 256, 1024 and 4096 uids, with dense weights (every validator weights every uid)
from 64 and 256 validators, it times ``compute_epoch`` (readable, ``yuma.py``) and
``compute_epoch_fast`` (vectorized, ``yuma_fast.py``) on the same inputs, and prints the
curve and the ratio readable/fast. The epoch is a steady-state one: permits held, and the
bonds are those a first epoch on the same weights produced, as the ledger would store them.
The readable path is skipped where its time, extrapolated from the previous size, would
pass 60 s. Default mode: Yuma3 bonds, liquid alpha off (a new subnet's defaults). All
inputs are seeded; nothing is asserted, but ``same`` says whether both paths agreed.
The goal: a 4096-uid epoch from 256 validators in at most 1 s.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from agora.protocol.consensus.yuma import EpochInputs, EpochResult, YumaParams, compute_epoch
from agora.protocol.consensus.yuma_fast import compute_epoch_fast

UID_COUNTS = (64, 256, 1024, 4096)
VALIDATOR_COUNTS = (64, 256)
READABLE_LIMIT_SECONDS = 60.0
U16_MAX = 65_535
MODES = {
    "yuma3": {"yuma3": True, "liquid_alpha": False},
    "yuma2": {"yuma3": False, "liquid_alpha": False},
    "liquid": {"yuma3": True, "liquid_alpha": True},
}


def make_inputs(uids: int, validators: int, mode: str, seed: int = 0) -> EpochInputs:
    """Validators 0..v-1 with stake and permits weight every uid; uids v.. are miners."""
    rng = np.random.default_rng(seed)
    stake = [int(s) for s in rng.integers(10**9, 10**15, size=validators)]
    weights: list[tuple[tuple[int, int], ...]] = []
    for uid in range(uids):
        if uid >= validators:
            weights.append(())
            continue
        values = rng.integers(0, U16_MAX + 1, size=uids)
        values[int(rng.integers(0, uids))] = U16_MAX  # set_weights max-upscales each row
        weights.append(tuple(zip(range(uids), values.tolist(), strict=True)))
    first = EpochInputs(
        block=1_000,
        tempo=360,
        emission=10**12,
        stake=(*stake, *[0] * (uids - validators)),
        registered_at=(1,) * uids,
        last_update=(999,) * uids,
        validator_permit=tuple(uid < validators for uid in range(uids)),
        weights=tuple(weights),
        bonds=((),) * uids,
        params=YumaParams(max_validators=validators, **MODES[mode]),
    )
    previous = compute_epoch_fast(first)
    return replace(first, block=1_360, last_update=(1_359,) * uids, bonds=previous.bonds_u16)


def best_of(
    repeats: int, epoch: Callable[[EpochInputs], EpochResult], inputs: EpochInputs
) -> tuple[float, EpochResult]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = epoch(inputs)
        best = min(best, time.perf_counter() - start)
    assert result is not None
    return best, result


def profile(title: str, run: Callable[[], object]) -> None:
    profiler = cProfile.Profile()
    profiler.runcall(run)
    print(f"\n--- profile: {title} (top 20 by cumulative time) ---")
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=sorted(MODES), default="yuma3")
    parser.add_argument("--repeats", type=int, default=3, help="best of N (fast path)")
    parser.add_argument("--profile", metavar="UIDS:VALIDATORS", help="cProfile both paths")
    parser.add_argument(
        "--max-uids", type=int, default=UID_COUNTS[-1], help="largest size (short run: 1024)"
    )
    arguments = parser.parse_args()

    if arguments.profile:
        uids, validators = (int(part) for part in arguments.profile.split(":"))
        inputs = make_inputs(uids, validators, arguments.mode)
        profile(f"readable, {uids} uids", lambda: compute_epoch(inputs))
        profile(f"fast, {uids} uids", lambda: compute_epoch_fast(inputs))
        return

    print(f"mode {arguments.mode}, dense weights, times in seconds (best of {arguments.repeats})")
    print(f"{'uids':>6}{'validators':>12}{'readable':>12}{'fast':>10}{'ratio':>9}{'same':>7}")
    for validators in VALIDATOR_COUNTS:
        readable_estimate, previous_uids = 0.0, 0
        for uids in (u for u in UID_COUNTS if u <= arguments.max_uids):
            if validators > uids:
                print(f"{uids:>6}{validators:>12}{'n/a: more validators than uids':>38}")
                continue
            if previous_uids:
                readable_estimate *= uids / previous_uids  # time grows with the entries
            readable_time = measure(uids, validators, arguments, readable_estimate)
            readable_estimate = readable_time or readable_estimate
            previous_uids = uids
    print("goal: 4096 uids from 256 validators in <= 1 s (fast path)")


def measure(
    uids: int, validators: int, arguments: argparse.Namespace, readable_estimate: float
) -> float | None:
    """Time both paths on one size and print a row; the readable time, if it ran."""
    inputs = make_inputs(uids, validators, arguments.mode)
    fast_time, fast_result = best_of(arguments.repeats, compute_epoch_fast, inputs)
    if readable_estimate > READABLE_LIMIT_SECONDS:
        print(f"{uids:>6}{validators:>12}{'skipped':>12}{fast_time:>10.3f}")
        return None
    repeats = arguments.repeats if readable_estimate < 2 else 1
    readable_time, readable_result = best_of(repeats, compute_epoch, inputs)
    same = "yes" if readable_result == fast_result else "NO"
    ratio = readable_time / fast_time
    print(
        f"{uids:>6}{validators:>12}{readable_time:>12.3f}{fast_time:>10.3f}{ratio:>8.1f}x{same:>7}"
    )
    return readable_time


if __name__ == "__main__":
    main()
