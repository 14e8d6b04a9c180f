"""Every way the protocol can refuse something, each with a stable numeric code.

Codes are a public contract: clients match on them, receipts store them, and they never
change meaning once released. Ranges by domain:

    1000-1099  encoding and format (stateless)       1100-1199  signatures and chain
    1200-1299  accounts, nonces and fees             1300-1399  blocks and genesis
    2000-2099  subnets and registration               2100-2199  staking and delegation
    2200-2299  weights and commit-reveal             2300-2399  payment channels
    2400-2499  governance                            2500-2599  data, federated rounds, lineage

Each class's docstring says when it is raised. The message given at raise time says what
the person can do about it.
"""

from __future__ import annotations

from agora.errors import AgoraError


class ProtocolError(AgoraError):
    """Base of every protocol refusal."""

    code = 1000


# --- encoding and format (stateless) -------------------------------------------------


class MalformedTransaction(ProtocolError):
    """The bytes or fields of a transaction cannot be decoded into a transaction."""

    code = 1001


class UnknownTransactionKind(ProtocolError):
    """The transaction names a kind this protocol version does not define."""

    code = 1002


class AmountOutOfRange(ProtocolError):
    """An amount is zero where it must be positive, negative, or does not fit in 64 bits."""

    code = 1003


class TransactionTooLarge(ProtocolError):
    """The encoded transaction exceeds the protocol's size limit."""

    code = 1004


class InvalidAddress(ProtocolError):
    """An address is not a well-formed, correctly checksummed ``agr1...`` string."""

    code = 1005


class InvalidField(ProtocolError):
    """A transaction field has a value outside what its kind allows."""

    code = 1006


# --- signatures and chain ------------------------------------------------------------


class InvalidSignature(ProtocolError):
    """The signature does not verify against the sender's public key."""

    code = 1101


class WrongChain(ProtocolError):
    """The transaction was signed for another chain id (replay protection across chains)."""

    code = 1102


# --- accounts, nonces and fees -------------------------------------------------------


class BadNonce(ProtocolError):
    """The nonce is not the sender's next nonce: replayed (too low) or out of order (too high)."""

    code = 1201


class FeeTooLow(ProtocolError):
    """The fee is below the chain's minimum fee."""

    code = 1202


class InsufficientBalance(ProtocolError):
    """The account cannot pay the amount it moves (fees are checked separately)."""

    code = 1203


class CannotPayFee(ProtocolError):
    """The sender cannot pay the fee, so the transaction cannot even be charged."""

    code = 1204


class SelfTransfer(ProtocolError):
    """A transfer names its own sender as recipient: it would only burn a fee."""

    code = 1205


class BalanceOverflow(ProtocolError):
    """Crediting the amount would push a balance past the 64-bit limit."""

    code = 1206


# --- blocks and genesis --------------------------------------------------------------


class InvalidBlock(ProtocolError):
    """A block header does not follow its parent (height, parent hash, timestamp)."""

    code = 1301


class StateRootMismatch(ProtocolError):
    """Re-executing a block gave a different state root than the block claims."""

    code = 1302


class InvalidGenesis(ProtocolError):
    """The genesis file is missing a field or holds a value out of range."""

    code = 1303


class InvariantViolated(ProtocolError):
    """A state invariant (supply conservation, no negative amount) does not hold: a bug."""

    code = 1304


# --- subnets and registration ------------------------------------------------------------


class SubnetNotFound(ProtocolError):
    """No subnet has that netuid."""

    code = 2001


class NotSubnetOwner(ProtocolError):
    """Only the subnet's owner coldkey may do this."""

    code = 2002


class TooManySubnets(ProtocolError):
    """The chain already holds ``max_subnets`` subnets."""

    code = 2003


class UnknownHyperparameter(ProtocolError):
    """The hyperparameter name is not one a subnet has."""

    code = 2004


class HyperparameterOutOfBounds(ProtocolError):
    """The value is outside the bounds governance allows for that hyperparameter."""

    code = 2005


class AlreadyRegistered(ProtocolError):
    """The hotkey already has a uid on this subnet."""

    code = 2006


class HotkeyOwnedByAnother(ProtocolError):
    """The hotkey was first registered by another coldkey, which owns it."""

    code = 2007


class NeuronNotFound(ProtocolError):
    """The hotkey has no uid on this subnet: register it first."""

    code = 2008


# --- staking and delegation ----------------------------------------------------------------


class HotkeyNotFound(ProtocolError):
    """The hotkey is unknown to the chain: it must be registered on a subnet first."""

    code = 2101


class NotHotkeyOwner(ProtocolError):
    """Only the coldkey that owns the hotkey may do this."""

    code = 2102


class InsufficientStake(ProtocolError):
    """The coldkey has less stake on that hotkey than it tries to remove."""

    code = 2103


class TakeOutOfBounds(ProtocolError):
    """The validator take is above the chain's ``max_take_u16``."""

    code = 2104


# --- weights and commit-reveal (the rules' own errors are in consensus/errors.py) ----------


class CommitRevealRequired(ProtocolError):
    """The subnet uses commit-reveal, so weights cannot be set directly."""

    code = 2201


class CommitRevealDisabled(ProtocolError):
    """The subnet takes weights directly, so commits and reveals are refused."""

    code = 2202


def all_error_classes() -> list[type[ProtocolError]]:
    """Every concrete error class, for documentation and for the uniqueness test of codes."""
    found: list[type[ProtocolError]] = []
    pending: list[type[ProtocolError]] = [ProtocolError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return sorted(found, key=lambda c: c.code)
