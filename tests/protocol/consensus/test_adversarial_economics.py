"""Adversarial economics through the protocol's own Yuma Consensus (``compute_epoch``).

Seeded simulations of whole runs of epochs, each epoch's permits and bonds carried into the
next exactly as the ledger carries them, with a new subnet's parameters
(``DEFAULT_YUMA_PARAMS``: kappa one half, Yuma3 bonds). Validators are uids ``0..V-1``,
miners follow; honest validators weight each miner by its quality plus their own
measurement noise.

- Collusion below kappa. Colluding validators put all their weight on a cheating miner whose
  real quality is low. Whatever their stake below kappa, consensus clips them to what the
  honest stake grants the cheater, so it earns at most ``COLLUSION_BOUND_PERCENT`` of the
  miners' emission (an honest miner here earns about 14%); the colluders themselves earn
  almost no dividends. Above kappa they decide consensus and the cheater takes everything.
- Weight copying. A validator that copies the others' weights (their stake-weighted mean)
  earns more than an honest validator of the same stake when it can copy the weights of the
  current epoch (no commit-reveal: they are on chain before the epoch runs), and less when it
  can only copy revealed weights, one epoch old (commit-reveal), because miners' quality moves
  between epochs and its bonds follow yesterday's miners.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from agora.protocol.consensus.yuma import (
    DEFAULT_YUMA_PARAMS,
    EpochInputs,
    EpochResult,
    WeightRow,
    compute_epoch,
)

U16_MAX = 65_535
EMISSION = 1_000_000_000
BLOCKS_PER_EPOCH = 10
AGR = 10**9
MINERS = 8
COLLUSION_BOUND_PERCENT = 3

WeightsOf = Callable[[int, int], list[float]]  # (validator uid, epoch) -> a score per miner


def to_row(scores: list[float], validators: int) -> WeightRow:
    """Scores as a stored u16 weight row over the miners (the largest at 65,535)."""
    top = max(scores)
    if top <= 0:
        return ()
    values = [(validators + j, int(U16_MAX * score / top)) for j, score in enumerate(scores)]
    return tuple((uid, value) for uid, value in values if value > 0)


def run_epochs(stakes: list[int], weights_of: WeightsOf, epochs: int) -> list[EpochResult]:
    """``epochs`` epochs in a row, every validator setting weights before each."""
    validators = len(stakes)
    n = validators + MINERS
    permit = tuple([True] * validators + [False] * MINERS)
    bonds: tuple[WeightRow, ...] = tuple(() for _ in range(n))
    results = []
    for epoch in range(1, epochs + 1):
        block = epoch * BLOCKS_PER_EPOCH
        rows = [to_row(weights_of(v, epoch), validators) for v in range(validators)]
        inputs = EpochInputs(
            block=block,
            tempo=BLOCKS_PER_EPOCH - 1,
            emission=EMISSION,
            stake=tuple(stakes + [0] * MINERS),
            registered_at=(0,) * n,
            last_update=(block,) * n,
            validator_permit=permit,
            weights=tuple(rows + [()] * MINERS),
            bonds=bonds,
            params=DEFAULT_YUMA_PARAMS,
        )
        result = compute_epoch(inputs)
        permit, bonds = result.validator_permit, result.bonds_u16
        results.append(result)
    return results


# --- collusion below kappa ------------------------------------------------------------------


def simulate_collusion(colluding_percent: int, seed: int = 7) -> tuple[int, int, int, int]:
    """Three honest validators and, with ``colluding_percent`` of the stake, colluders who
    weight only the cheater (the last miner). Returns, over 20 epochs, the cheater's and all
    miners' emission, the colluders' and all validators' emission."""
    rng = random.Random(seed)
    quality = [rng.uniform(0.5, 1.0) for _ in range(MINERS - 1)] + [0.05]
    honest = 100 - colluding_percent
    stakes = [honest * 40 * AGR // 100, honest * 35 * AGR // 100, honest * 25 * AGR // 100]
    if colluding_percent:
        stakes.append(colluding_percent * AGR)

    def weights_of(validator: int, epoch: int) -> list[float]:
        if validator == 3:
            return [0.0] * (MINERS - 1) + [1.0]
        noise = random.Random(seed * 1_000_003 + epoch * 1_000 + validator)
        return [max(0.0, q + noise.uniform(-0.05, 0.05)) for q in quality]

    results = run_epochs(stakes, weights_of, 20)
    cheater = len(stakes) + MINERS - 1
    return (
        sum(r.miner_emission[cheater] for r in results),
        sum(sum(r.miner_emission) for r in results),
        sum(r.validator_emission[3] for r in results) if colluding_percent else 0,
        sum(sum(r.validator_emission) for r in results),
    )


@pytest.mark.parametrize("colluding_percent", [0, 5, 10, 20, 30, 40, 45, 49])
def test_colluders_below_kappa_give_a_cheater_only_a_small_share(colluding_percent: int) -> None:
    cheater, miners, colluders, validators = simulate_collusion(colluding_percent)
    assert cheater * 100 <= COLLUSION_BOUND_PERCENT * miners
    # An honest miner's fair share is about 1/7: the cheater stays far below it.
    assert cheater * 7 * 4 < miners
    # Clipped to consensus, the colluders earn far less than their stake's share.
    assert colluders * 100 <= colluding_percent * validators // 2


def test_the_share_grows_with_the_colluders_stake_and_jumps_past_kappa() -> None:
    shares = [simulate_collusion(p)[0] for p in (0, 20, 40, 49)]
    assert shares == sorted(shares)
    cheater, miners, colluders, validators = simulate_collusion(51)
    assert cheater * 100 >= 90 * miners  # above kappa, they decide consensus
    assert colluders * 100 >= 90 * validators


# --- weight copying and commit-reveal -------------------------------------------------------

HONEST_STAKES = [35 * AGR, 25 * AGR, 20 * AGR, 10 * AGR]
COPIER_STAKE = 10 * AGR  # the same as the last honest validator's, uid 3
COPIER = 4


def simulate_copier(lag_epochs: int, persistence_percent: int, seed: int) -> tuple[int, int]:
    """Four honest validators and a copier; each epoch a miner's quality keeps
    ``persistence_percent`` of the last and the rest is drawn anew. The copier sets the
    stake-weighted mean of the honest weights of ``lag_epochs`` ago (0: the current ones,
    1: the revealed ones under commit-reveal). Returns the validator emission of the honest
    validator of the copier's stake and of the copier, over epochs 11 to 40."""
    epochs = 40
    rng = random.Random(seed)
    quality = [[rng.random() for _ in range(MINERS)]]
    keep = persistence_percent / 100
    for _ in range(epochs):
        quality.append([keep * q + (1 - keep) * rng.random() for q in quality[-1]])
    measured: dict[tuple[int, int], list[float]] = {}

    def honest_scores(validator: int, epoch: int) -> list[float]:
        if (validator, epoch) not in measured:
            noise = random.Random(seed * 1_000_003 + epoch * 1_000 + validator)
            measured[validator, epoch] = [
                max(0.0, q + noise.gauss(0.0, 0.1)) for q in quality[epoch]
            ]
        return measured[validator, epoch]

    def weights_of(validator: int, epoch: int) -> list[float]:
        if validator != COPIER:
            return honest_scores(validator, epoch)
        source = epoch - lag_epochs
        if source < 1:
            return [1.0] * MINERS  # nothing revealed yet
        total = sum(HONEST_STAKES)
        return [
            sum(s * honest_scores(v, source)[j] for v, s in enumerate(HONEST_STAKES)) / total
            for j in range(MINERS)
        ]

    results = run_epochs([*HONEST_STAKES, COPIER_STAKE], weights_of, epochs)[10:]
    return (
        sum(r.validator_emission[3] for r in results),
        sum(r.validator_emission[COPIER] for r in results),
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_weight_copier_earns_more_than_an_honest_validator_without_commit_reveal(
    seed: int,
) -> None:
    honest, copier = simulate_copier(lag_epochs=0, persistence_percent=50, seed=seed)
    assert copier > honest


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_weight_copier_earns_less_than_an_honest_validator_under_commit_reveal(
    seed: int,
) -> None:
    honest, copier = simulate_copier(lag_epochs=1, persistence_percent=50, seed=seed)
    assert copier < honest


def test_commit_reveal_protects_only_while_miners_change_between_epochs() -> None:
    """The copier's lag costs it in proportion to how much miners change per epoch: with
    quality that barely moves (90% kept), yesterday's weights are as good as today's."""
    ratios = []
    for persistence in (0, 50, 90):
        honest, copier = simulate_copier(lag_epochs=1, persistence_percent=persistence, seed=11)
        ratios.append(copier * 1_000 // honest)
    assert ratios == sorted(ratios)
    assert ratios[0] < 800  # miners redrawn each epoch: the copier earns under 80%
    assert ratios[-1] > 1_000  # stable miners: copying revealed weights still pays
