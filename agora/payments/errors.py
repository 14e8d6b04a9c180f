"""Every way a seller refuses a payment, each with a stable code in 3520-3539.

Most answer HTTP 402. A refusal over the voucher's amount (``InsufficientPayment``,
``VoucherReplayed``) carries ``served`` and ``required`` as attributes, and in the error
envelope's ``details`` (``agora.errors``), so a payer adjusts its next voucher without reading
the message. ``decode_payment_error`` gives a payer the seller's refusal back as its own
class.
"""

from __future__ import annotations

from typing import Any

from agora.errors import AgoraError
from agora.neuron.errors import RemoteError


class PaymentError(AgoraError):
    """Base of the payment gate's refusals."""

    code = 3520
    http_status = 402


class PaymentRequired(PaymentError):
    """The caller has no stake on the subnet and attached no ``payment``: pay through a
    payment channel to this miner (see its published price)."""

    code = 3521


class MalformedPayment(PaymentError):
    """``payment`` is not ``{"voucher": {"channel_id", "cumulative", "signature"}}``."""

    code = 3522
    http_status = 400


class UnknownChannel(PaymentError):
    """The voucher names a channel the chain does not know (not opened, or not yet in a
    block the miner's node has applied)."""

    code = 3523


class WrongPayee(PaymentError):
    """The channel pays another hotkey, or a hotkey on another subnet, than this miner."""

    code = 3524


class NotChannelPayer(PaymentError):
    """The caller is not the account that opened the channel: only the payer spends it."""

    code = 3525
    http_status = 403


class ChannelClosed(PaymentError):
    """The channel is closed on chain."""

    code = 3526


class ChannelExpiring(PaymentError):
    """The channel expires within ``EXPIRY_MARGIN_BLOCKS``: extend it (a top-up with a later
    expiry) or open another."""

    code = 3527


class InvalidVoucher(PaymentError):
    """The voucher is not signed by the channel's payer for this chain, channel and amount:
    forged, altered, or taken from another channel."""

    code = 3528


class VoucherRefused(PaymentError):
    """Base of the refusals over a voucher's amount (never raised itself). ``served``: the
    base units this miner served on the channel; ``required``: the least cumulative amount
    that pays for this request. The gate's message repeats both for a person."""

    def __init__(self, message: str, served: int, required: int) -> None:
        super().__init__(message)
        self.served = served
        self.required = required

    def __reduce__(self) -> Any:
        return (type(self), (self.message, self.served, self.required))

    @property
    def details(self) -> dict[str, Any]:
        return {"served": self.served, "required": self.required}


class InsufficientPayment(VoucherRefused):
    """The voucher leaves less credit than the request costs (``served`` and ``required``
    say how much a voucher must carry)."""

    code = 3529


class VoucherReplayed(VoucherRefused):
    """The voucher leaves no credit and its amount is not above what this miner already
    served on the channel: an old voucher sent again (``served`` and ``required`` say how
    much a new one must carry)."""

    code = 3530


class VoucherExceedsDeposit(PaymentError):
    """The voucher is for more than the channel's deposit: top the channel up first."""

    code = 3531


class ChainUnavailable(PaymentError):
    """The miner cannot read the channel from its node right now; retry later."""

    code = 3532
    http_status = 503


class TooManyPending(PaymentError):
    """The channel already has ``MAX_PENDING_PER_CHANNEL`` requests under way."""

    code = 3533
    http_status = 429


class InvalidPrice(PaymentError):
    """A price that is not ``AMOUNT/UNIT`` with a positive AGR amount (at most 9 decimals)
    and a unit among ``request``, ``item``, ``1k-tokens``."""

    code = 3534
    http_status = 400


class CreditRefused(PaymentError):
    """The request asks to be paid only if its answer is accepted (a hold, ``vouchers``) and
    this seller gives no such credit, or no more to this payer: pay it with a voucher."""

    code = 3535


_SIMPLE = (
    PaymentRequired,
    MalformedPayment,
    UnknownChannel,
    WrongPayee,
    NotChannelPayer,
    ChannelClosed,
    ChannelExpiring,
    InvalidVoucher,
    VoucherExceedsDeposit,
    ChainUnavailable,
    TooManyPending,
    InvalidPrice,
    CreditRefused,
)
_REFUSED = (InsufficientPayment, VoucherReplayed)


def decode_payment_error(error: RemoteError) -> PaymentError | None:
    """A seller's refusal, as it raised it: its class and attributes, the message as
    received. None when ``error`` is not a payment refusal, or one whose ``details`` lack
    what its class carries (a seller that does not say, so nothing is adjusted)."""
    for simple in _SIMPLE:
        if error.code == simple.code:
            return simple(error.message)
    for refused in _REFUSED:
        if error.code == refused.code:
            served = _read_amount(error.details.get("served"))
            required = _read_amount(error.details.get("required"))
            if served is None or required is None:
                return None
            return refused(error.message, served, required)
    return None


def _read_amount(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None
