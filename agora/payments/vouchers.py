"""The voucher on the wire: how a paying caller attaches a payment to a request.

A paying caller puts ``{"voucher": {"channel_id": "0x..", "cumulative": N, "signature":
"0x.."}}`` under the request body's ``"payment"`` key (``make_payment``); the seller reads it
back with ``parse_payment``. The voucher is the payer's signature of the channel's cumulative
amount (``protocol.channels``); its JSON form (``voucher_to_json``, ``voucher_from_json``) is
here, at the edge, shared by the CLI and every seller and buyer. Pure: no I/O.
"""

from __future__ import annotations

from typing import Any

from agora.payments.errors import MalformedPayment
from agora.protocol.channels import VOUCHER_RECORD, Voucher
from agora.protocol.errors import ProtocolError


def voucher_to_json(voucher: Voucher) -> Any:
    """``{"channel_id": "0x..", "cumulative": N, "signature": "0x.."}``."""
    return VOUCHER_RECORD.to_json(voucher)


def voucher_from_json(value: Any, path: str = "voucher") -> Voucher:
    """The voucher of that JSON form; a bad field raises a coded protocol error."""
    return VOUCHER_RECORD.from_json(value, path)


def make_payment(voucher: Voucher) -> dict[str, Any]:
    """The ``payment`` object a caller attaches to a request."""
    return {"voucher": voucher_to_json(voucher)}


def parse_payment(payment: Any) -> Voucher:
    if not isinstance(payment, dict) or "voucher" not in payment:
        raise MalformedPayment('payment must be {"voucher": {...}}')
    try:
        return voucher_from_json(payment["voucher"], "payment.voucher")
    except ProtocolError as error:
        raise MalformedPayment(f"payment.voucher: {error.message}") from None
