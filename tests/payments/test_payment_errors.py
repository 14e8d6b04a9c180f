"""Payment refusals carry their data as attributes, and keep it across the wire.

A real neuron server on loopback answers a signed request with a payment refusal raised by
its handler; the buyer's ``NeuronClient`` gets a ``RemoteError`` whose envelope ``details``
hold the refusal's ``served`` and ``required``, and ``decode_payment_error`` gives the refusal
back as its own class, without reading the message. A remote error without those details,
or of another kind, is not taken for one.
"""

from __future__ import annotations

import asyncio
import hashlib
import pickle
from typing import Any

import pytest

from agora.errors import AgoraError, decode_error, encode_error
from agora.neuron.client import NeuronClient
from agora.neuron.errors import RemoteError
from agora.neuron.server import Caller, NeuronServer
from agora.payments.errors import (
    ChannelExpiring,
    InsufficientPayment,
    PaymentError,
    VoucherRefused,
    VoucherReplayed,
    decode_payment_error,
)
from agora.tasks.base import InvalidRequestError
from agora.wallet.keys import Keypair

SELLER = Keypair(hashlib.sha256(b"agora-payment-errors:seller").digest())
BUYER = Keypair(hashlib.sha256(b"agora-payment-errors:buyer").digest())


def refuse_with(error: AgoraError) -> RemoteError:
    """``error`` raised by a real server's handler, as the buyer's client receives it."""

    async def handler(caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
        raise error

    async def exchange() -> RemoteError:
        server = NeuronServer(SELLER, None)
        server.add_route("/work", handler)
        url = await server.start()
        client = NeuronClient(BUYER)
        try:
            with pytest.raises(RemoteError) as raised:
                await client.call(url, SELLER.public_key, "/work", {"texts": ["a"]})
            return raised.value
        finally:
            await client.close()
            await server.stop()

    return asyncio.run(exchange())


@pytest.mark.parametrize("cls", [InsufficientPayment, VoucherReplayed])
def test_a_refused_voucher_reaches_the_buyer_with_served_and_required(
    cls: type[VoucherRefused],
) -> None:
    remote = refuse_with(cls("the voucher leaves too little credit", 7_000, 9_000))
    assert (remote.code, remote.name, remote.status) == (cls.code, cls.__name__, 402)
    assert remote.details == {"served": 7_000, "required": 9_000}
    refusal = decode_payment_error(remote)
    assert type(refusal) is cls
    assert isinstance(refusal, VoucherRefused)
    assert (refusal.served, refusal.required) == (7_000, 9_000)
    assert refusal.message == remote.message


def test_other_refusals_decode_to_their_class_or_to_nothing() -> None:
    expiring = decode_payment_error(refuse_with(ChannelExpiring("extend the channel")))
    assert type(expiring) is ChannelExpiring
    task = refuse_with(InvalidRequestError("texts must be a list"))
    assert task.details == {} and decode_payment_error(task) is None
    # A seller that does not say what it served: nothing to adjust a voucher by.
    assert decode_payment_error(RemoteError("short", InsufficientPayment.code)) is None
    unsaid = RemoteError("short", VoucherReplayed.code, details={"served": -1, "required": 2})
    assert decode_payment_error(unsaid) is None


def test_the_envelope_carries_details_only_for_errors_that_have_them() -> None:
    refusal = InsufficientPayment("short", 5, 8)
    assert encode_error(refusal) == {
        "error": {
            "code": InsufficientPayment.code,
            "name": "InsufficientPayment",
            "message": "short",
            "details": {"served": 5, "required": 8},
        }
    }
    plain = encode_error(ChannelExpiring("extend it"))
    assert "details" not in plain["error"]
    read = decode_error(encode_error(refusal), status=402, default=RemoteError)
    assert (read.code, read.name, read.message, read.details) == (
        InsufficientPayment.code,
        "InsufficientPayment",
        "short",
        {"served": 5, "required": 8},
    )
    garbled = decode_error(
        {"error": {"code": "3529", "details": []}}, status=502, default=RemoteError
    )
    assert (garbled.code, garbled.name, garbled.message, garbled.details) == (
        RemoteError.code,
        "RemoteError",
        "HTTP 502",
        {},
    )


@pytest.mark.parametrize("cls", [InsufficientPayment, VoucherReplayed])
def test_refusals_survive_pickling_with_their_data(cls: type[VoucherRefused]) -> None:
    copy = pickle.loads(pickle.dumps(cls("short", 3, 4)))
    assert type(copy) is cls and isinstance(copy, PaymentError)
    assert (copy.code, copy.message, copy.served, copy.required) == (cls.code, "short", 3, 4)
