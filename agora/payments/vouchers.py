"""The voucher on the wire: how a paying caller attaches a payment to a request.

A paying caller puts ``{"voucher": {"channel_id": "0x..", "cumulative": N, "signature":
"0x.."}}`` under the request body's ``"payment"`` key (``make_payment``); the seller reads it
back with ``parse_payment``. The voucher is the payer's signature of the channel's cumulative
amount (``protocol.channels``). Pure: no I/O.
"""

from __future__ import annotations

from typing import Any

from agora.payments.errors import MalformedPayment
from agora.protocol.channels import Voucher, voucher_from_json, voucher_to_json
from agora.protocol.errors import ProtocolError


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
