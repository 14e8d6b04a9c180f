"""The weight commits table: each validator's unrevealed weight commits, per subnet.

Its own module, below both domains that touch it: registration clears the commits of a hotkey
whose uid is replaced (``subnets.py``), commit and reveal write them (``weights.py``), and the
epoch reads them (``emission.py``). The weights domain registers the table.
"""

from __future__ import annotations

from agora.protocol.address import Address
from agora.protocol.codec import HASH, U64, ListOf, Record, decode_field, encode_field
from agora.protocol.consensus.weights import MAX_UNREVEALED_COMMITS, WeightCommit
from agora.protocol.state import State

COMMITS_TAG = 30

COMMIT_RECORD: Record[WeightCommit] = Record(
    WeightCommit, (("commit_hash", HASH), ("commit_epoch", U64), ("commit_block", U64))
)
COMMITS_FIELD = ListOf(COMMIT_RECORD, MAX_UNREVEALED_COMMITS + 1)


def register_commits_table(state: State) -> None:
    state.add_table(
        COMMITS_TAG,
        "weight_commits",
        (
            lambda key: key[0].to_bytes(2, "big") + key[1],
            lambda raw: (int.from_bytes(raw[:2], "big"), Address(bytes(raw[2:]))),
        ),
        (
            lambda commits: encode_field(COMMITS_FIELD, commits),
            lambda raw: decode_field(COMMITS_FIELD, raw),
        ),
    )


def get_commits(state: State, netuid: int, hotkey: Address) -> tuple[WeightCommit, ...]:
    commits: tuple[WeightCommit, ...] = state.tables["weight_commits"].get((netuid, hotkey), ())
    return commits


def set_commits(
    state: State, netuid: int, hotkey: Address, commits: tuple[WeightCommit, ...]
) -> None:
    if commits:
        state.tables["weight_commits"].set((netuid, hotkey), commits)
    else:
        state.tables["weight_commits"].delete((netuid, hotkey))


def clear_commits(state: State, netuid: int, hotkey: Address) -> None:
    state.tables["weight_commits"].delete((netuid, hotkey))
