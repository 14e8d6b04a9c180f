"""Properties of governance under random traffic (hypothesis).

Random sequences of proposals (parameter changes with values in and out of bounds, spends,
shares, cancels, signals), ballots with any choice and conviction, stake moves and empty
blocks. After every block: every parameter, track number and hyperparameter bound is within
its hard bounds, no proposal was enacted before its timelock ended, and the supply invariant
holds (deposits, escrowed streams and the treasury included).
"""

from __future__ import annotations

from typing import Any

from governance_helpers import AGR, Governed, param_change
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agora.protocol.governance import (
    CANCELLED,
    COMPLETED,
    ENACTED,
    STREAMING,
    TRACK_BOUNDS,
    TRACK_NAMES,
    ProposeCancel,
    ProposeEmissionShares,
    ProposeText,
    ProposeTreasurySpend,
    Vote,
    get_proposals,
)
from agora.protocol.invariants import check_invariants
from agora.protocol.params import PARAM_BOUNDS
from agora.protocol.staking import AddStake, RemoveStake
from agora.protocol.subnets import HYPERPARAMETER_BOUNDS

NAMES = sorted(PARAM_BOUNDS) + [
    f"track.{track}.{field}" for track in TRACK_NAMES for field in TRACK_BOUNDS
]
HYPERPARAMETER_NAMES = [
    f"hyperparameter.{n}.{end}" for n in HYPERPARAMETER_BOUNDS for end in ("min", "max")
]


def bounds_of(name: str) -> tuple[int, int]:
    if name.startswith("hyperparameter."):
        return HYPERPARAMETER_BOUNDS[name.split(".")[1]]
    if name.startswith("track."):
        return TRACK_BOUNDS[name.split(".")[2]]
    return PARAM_BOUNDS[name]


@st.composite
def changes(draw: Any) -> tuple[str, int]:
    name = draw(st.sampled_from(NAMES + HYPERPARAMETER_NAMES))
    low, high = bounds_of(name)
    value = draw(
        st.one_of(
            st.integers(low, min(high, low + 100_000)),
            st.integers(low, min(high, low + 100_000)),
            st.integers(max(low, high - 100_000), high),
            st.integers(0, (1 << 64) - 1),  # mostly out of bounds
        )
    )
    return name, value


KINDS = ["param", "spend", "shares", "cancel", "text", "stake", "unstake"]
KINDS += ["vote"] * 6 + ["advance"] * 3


@st.composite
def actions(draw: Any) -> tuple[str, int, Any]:
    """(what, who, body): a transaction from voter ``who``, or "advance" by ``who`` blocks."""
    who = draw(st.integers(0, 3))
    kind = draw(st.sampled_from(KINDS))
    if kind == "param":
        body: Any = param_change(*draw(st.lists(changes(), min_size=1, max_size=3)))
    elif kind == "spend":
        body = ProposeTreasurySpend(
            recipient=draw(st.sampled_from([b"\x01" * 32, b"\x02" * 32])),
            amount=draw(st.integers(1, 5 * AGR)),
            payments=draw(st.integers(1, 4)),
            description="",
        )
    elif kind == "shares":
        body = ProposeEmissionShares(shares=((1, draw(st.integers(0, 1_000_001))),), description="")
    elif kind == "cancel":
        body = ProposeCancel(target=draw(st.integers(0, 3)), description="")
    elif kind == "text":
        body = ProposeText(description="signal")
    elif kind == "vote":
        body = Vote(
            proposal_id=draw(st.integers(0, 3)),
            choice=draw(st.sampled_from([1, 1, 1, 1, 0, 2, 3, 4])),
            conviction=draw(st.sampled_from([0, 0, 0, 1, 2, 6, 7])),
        )
    elif kind in ("stake", "unstake"):
        body = draw(st.integers(1, 200)) * AGR
    else:
        body = draw(st.integers(1, 25))
    return kind, who, body


def check_bounds_and_timelocks(gov: Governed) -> None:
    check_invariants(gov.state)  # supply, bounds of every governed number, escrow
    for proposal in get_proposals(gov.state):
        if proposal.status in (ENACTED, STREAMING, COMPLETED) and proposal.enacted_at:
            assert proposal.enacted_at >= proposal.closed_at + proposal.rules.timelock_blocks
            assert proposal.enacted_at == proposal.enact_at
        if proposal.status == CANCELLED:
            assert proposal.escrow == 0


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(actions(), min_size=5, max_size=40))
def test_random_governance_traffic_keeps_bounds_timelocks_and_supply(
    sequence: list[tuple[str, int, Any]],
) -> None:
    gov = Governed([300 * AGR, 200 * AGR, 100 * AGR, 50 * AGR], seed=5)
    gov.chain.advance(20)  # something in the treasury
    for kind, who, body in sequence:
        voter = gov.voters[who]
        hotkey = gov.hotkeys[who].address
        if kind == "advance":
            for _ in range(body):
                gov.chain.advance(1)
                check_bounds_and_timelocks(gov)
            continue
        if kind == "stake":
            body = AddStake(hotkey=hotkey, amount=body)
        elif kind == "unstake":
            body = RemoveStake(hotkey=hotkey, amount=body)
        gov.chain.send(voter, body)
        check_bounds_and_timelocks(gov)
    gov.chain.advance(80)  # let everything due close, enact and stream
    check_bounds_and_timelocks(gov)
