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
        "params": params or {},
        "balances": balances,
    }
