"""Dev chains: a genesis with well-known funded accounts and a faucet, for local work.

The dev keys are derived from public seeds (like the well-known keys of Ethereum dev nodes):
they are for local networks only and must never hold real value.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from nacl.signing import SigningKey

from agora.protocol.address import encode_address
from agora.protocol.params import BASE_UNITS_PER_AGR

DEV_CHAIN_ID = "agora-dev"
DEV_ACCOUNT_BALANCE = 1_000_000 * BASE_UNITS_PER_AGR
FAUCET_BALANCE = 10_000_000 * BASE_UNITS_PER_AGR
FAUCET_GRANT = 1_000 * BASE_UNITS_PER_AGR
# Governance a person can watch: proposals vote for a minute and enact seconds later, and
# the treasury takes 2% of block emission so that there is something to spend.
DEV_PARAMS: dict[str, int] = {"treasury_emission_u16": 1_311, "governance_epoch_blocks": 20}
DEV_TRACKS: dict[str, dict[str, int]] = {
    name: {
        "deposit": deposit * BASE_UNITS_PER_AGR,
        "voting_period_blocks": voting,
        "timelock_blocks": timelock,
        "extension_blocks": 10,
    }
    for name, deposit, voting, timelock in (
        ("parameters", 10, 60, 10),
        ("small_spend", 1, 40, 10),
        ("large_spend", 10, 60, 20),
        ("emergency", 5, 20, 0),
        ("signal", 1, 30, 0),
    )
}


@dataclass(frozen=True, slots=True)
class DevAccount:
    name: str
    seed: bytes

    @property
    def address(self) -> str:
        return encode_address(bytes(SigningKey(self.seed).verify_key))


def compute_dev_seed(name: str) -> bytes:
    return hashlib.blake2b(b"agora-dev-key:" + name.encode(), digest_size=32).digest()


def get_dev_accounts(count: int) -> list[DevAccount]:
    return [DevAccount(f"dev{i}", compute_dev_seed(f"dev{i}")) for i in range(count)]


FAUCET_ACCOUNT = DevAccount("faucet", compute_dev_seed("faucet"))


def create_dev_genesis(
    accounts: int, timestamp: int, params: dict[str, Any] | None = None
) -> dict[str, Any]:
    balances = {account.address: DEV_ACCOUNT_BALANCE for account in get_dev_accounts(accounts)}
    balances[FAUCET_ACCOUNT.address] = FAUCET_BALANCE
    return {
        "chain_id": DEV_CHAIN_ID,
        "timestamp": timestamp,
        "params": {**DEV_PARAMS, **(params or {})},
        "balances": balances,
        "governance": {"tracks": DEV_TRACKS},
    }
