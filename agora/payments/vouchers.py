"""The voucher on the wire: how a paying caller attaches a payment to a request.

A paying caller puts ``{"voucher": {"channel_id": "0x..", "cumulative": N, "signature":
"0x.."}}`` under the request body's ``"payment"`` key (``make_payment``); the seller reads it
back with ``parse_payment``. The voucher is the payer's signature of the channel's cumulative
amount (``protocol.channels``); its JSON form (``voucher_to_json``, ``voucher_from_json``) is
here, at the edge, shared by the CLI and every seller and buyer. Pure: no I/O.

Holds: paid only if the answer is accepted. A buyer that checks answers against each other
(the gateway's spot and redundant verification) pays only the ones it accepts. Such a call
carries ``{"hold": {"channel_id": "0x..", "cumulative": N}}`` instead of a voucher: the amount
the voucher would carry, unsigned, so the seller can count it but never claim it. Once the
answers are compared, the buyer sends the seller its ``verdict`` on ``VERDICT_ROUTE``
(``make_verdict``): for each hold accepted, the voucher for that amount, now signed; for each
hold rejected, the hold itself. The seller works on credit until then; ``books`` bounds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from agora.payments.errors import MalformedPayment
from agora.protocol.channels import VOUCHER_RECORD, Voucher
from agora.protocol.codec import HASH, U64, Record
from agora.protocol.errors import ProtocolError

VERDICT_ROUTE = "/payment/verdict"
MAX_VERDICT_ENTRIES = 256  # vouchers and holds in one verdict

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class Hold:
    """A call paid only if its answer is accepted: what its voucher would carry, unsigned."""

    channel_id: bytes
    cumulative: int


HOLD_RECORD: Record[Hold] = Record(Hold, (("channel_id", HASH), ("cumulative", U64)))


def voucher_to_json(voucher: Voucher) -> Any:
    """``{"channel_id": "0x..", "cumulative": N, "signature": "0x.."}``."""
    return VOUCHER_RECORD.to_json(voucher)


def voucher_from_json(value: Any, path: str = "voucher") -> Voucher:
    """The voucher of that JSON form; a bad field raises a coded protocol error."""
    return VOUCHER_RECORD.from_json(value, path)


def make_payment(payment: Voucher | Hold) -> dict[str, Any]:
    """The ``payment`` object a caller attaches to a request."""
    if isinstance(payment, Hold):
        return {"hold": HOLD_RECORD.to_json(payment)}
    return {"voucher": voucher_to_json(payment)}


def parse_payment(payment: Any) -> Voucher | Hold:
    if isinstance(payment, dict) and len(payment) == 1 and "hold" in payment:
        return _read(HOLD_RECORD, payment["hold"], "payment.hold")
    if not isinstance(payment, dict) or "voucher" not in payment:
        raise MalformedPayment('payment must be {"voucher": {...}} or {"hold": {...}}')
    return _read(VOUCHER_RECORD, payment["voucher"], "payment.voucher")


def make_verdict(accepted: list[Voucher], rejected: list[Hold]) -> dict[str, Any]:
    """The body of a verdict: the vouchers paying the accepted holds, the rejected holds."""
    return {
        "accept": [voucher_to_json(voucher) for voucher in accepted],
        "reject": [HOLD_RECORD.to_json(hold) for hold in rejected],
    }


def parse_verdict(body: Any) -> tuple[list[Voucher], list[Hold]]:
    """A verdict's vouchers and holds; anything else raises ``MalformedPayment``."""
    if not isinstance(body, dict) or set(body) != {"accept", "reject"}:
        raise MalformedPayment('a verdict is {"accept": [vouchers], "reject": [holds]}')
    accept, reject = body["accept"], body["reject"]
    if not isinstance(accept, list) or not isinstance(reject, list):
        raise MalformedPayment("a verdict's accept and reject are lists")
    if len(accept) + len(reject) > MAX_VERDICT_ENTRIES:
        raise MalformedPayment(f"a verdict holds at most {MAX_VERDICT_ENTRIES} entries")
    vouchers = [_read(VOUCHER_RECORD, v, f"accept[{i}]") for i, v in enumerate(accept)]
    holds = [_read(HOLD_RECORD, h, f"reject[{i}]") for i, h in enumerate(reject)]
    return vouchers, holds


def _read(record: Record[T], value: Any, path: str) -> T:
    try:
        return record.from_json(value, path)
    except ProtocolError as error:
        raise MalformedPayment(f"{path}: {error.message}") from None
