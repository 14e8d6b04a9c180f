"""Build, sign and send a transaction: what the CLI and every participant process do."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agora.client.client import NodeClient
from agora.protocol.address import Address, encode_address
from agora.protocol.transactions import Transaction, encode_transaction, sign_transaction


def make_transaction(
    *,
    chain_id: str,
    public_key: bytes,
    sign: Callable[[bytes], bytes],
    nonce: int,
    fee: int,
    body: Any,
) -> bytes:
    """Canonical signed bytes of a transaction."""
    tx = Transaction(chain_id=chain_id, sender=Address(public_key), nonce=nonce, fee=fee, body=body)
    return encode_transaction(sign_transaction(tx, sign))


async def sign_next_transaction(
    client: NodeClient,
    *,
    public_key: bytes,
    sign: Callable[[bytes], bytes],
    body: Any,
    fee: int | None = None,
) -> bytes:
    """``body`` signed with the sender's next nonce and the chain's minimum fee, not sent."""
    chain = await client.get_chain()
    account = await client.get_account(encode_address(public_key))
    return make_transaction(
        chain_id=chain["chain_id"],
        public_key=public_key,
        sign=sign,
        nonce=account["next_nonce"],
        fee=fee if fee is not None else chain["params"]["min_fee"],
        body=body,
    )


async def send_transaction(
    client: NodeClient,
    *,
    public_key: bytes,
    sign: Callable[[bytes], bytes],
    body: Any,
    fee: int | None = None,
) -> bytes:
    """Sign ``body`` with the sender's next nonce and the chain's minimum fee; submit it."""
    raw = await sign_next_transaction(client, public_key=public_key, sign=sign, body=body, fee=fee)
    (tx_hash,) = await client.submit([raw])
    return tx_hash
