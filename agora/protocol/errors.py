"""Every way the protocol can refuse something, each with a stable numeric code.

Codes are a public contract: clients match on them, receipts store them, and they never
change meaning once released. Ranges by domain:

    1000-1099  encoding and format (stateless)       1100-1199  signatures and chain
    1200-1299  accounts, nonces and fees             1300-1399  blocks and genesis
    2000-2099  subnets and registration               2100-2199  staking and delegation
    2200-2299  weights and commit-reveal             2300-2399  payment channels
    2400-2499  governance and voting power           2500-2599  data, federated rounds, lineage
    2600-2699  services

Every domain's errors are here, in one hierarchy under ``ProtocolError``; the Yuma rules'
own refusals are in ``consensus/errors.py``, subclasses of the same base.

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


# --- payment channels (channels.py) ------------------------------------------------------


class ChannelNotFound(ProtocolError):
    """No channel has that id (ids are 32 bytes, printed as 0x-hex)."""

    code = 2301


class PayeeNotRegistered(ProtocolError):
    """A channel is opened to a hotkey that has no uid on the subnet it names."""

    code = 2302


class NotChannelPayer(ProtocolError):
    """Only the account that opened the channel may top it up or close it."""

    code = 2303


class NotChannelPayee(ProtocolError):
    """Only the channel's payee hotkey may claim a voucher of that channel."""

    code = 2304


class ChannelClosed(ProtocolError):
    """The channel was closed: it takes no claim, top-up or second close."""

    code = 2305


class InvalidVoucherSignature(ProtocolError):
    """The voucher is not signed by the channel's payer for this chain, channel and amount:
    forged, altered, or signed for another channel."""

    code = 2306


class VoucherNotNewer(ProtocolError):
    """The voucher's cumulative amount is not above what was already claimed (a replay, or
    an older voucher than the last one claimed)."""

    code = 2307


class VoucherExceedsDeposit(ProtocolError):
    """The voucher's cumulative amount is above the channel's deposit."""

    code = 2308


class ChannelNotExpired(ProtocolError):
    """The payer tried to close the channel before its expiry block."""

    code = 2309


class InvalidChannelExpiry(ProtocolError):
    """An expiry that is not after the current block (open), or earlier than the channel's
    current expiry (top-up: an expiry is never shortened)."""

    code = 2310


# --- governance and voting power (governance.py, voting_power.py) ------------------------


class UnknownParameter(ProtocolError):
    """A ``param_change`` names something that is not a governable parameter."""

    code = 2401


class ParameterOutOfBounds(ProtocolError):
    """A proposed value lies outside the hard bounds written in the code for its parameter."""

    code = 2402


class ParameterChangeBreaksInvariant(ProtocolError):
    """Each value is within bounds, but together with the current state they break a rule
    (a default take above the maximum, a minimum above its maximum, fewer subnets allowed
    than exist, a supply cap below the supply, no emission share left)."""

    code = 2403


class ProposalNotFound(ProtocolError):
    """No proposal has that id."""

    code = 2404


class ProposalNotVoting(ProtocolError):
    """The proposal's voting is over (or it was never open): ballots are refused."""

    code = 2405


class AlreadyVoted(ProtocolError):
    """The account already voted on this proposal; a ballot cannot be changed."""

    code = 2406


class NoVotingPower(ProtocolError):
    """The account has no stake and no recent verified contribution, so its vote weighs 0."""

    code = 2407


class TreasuryInsufficient(ProtocolError):
    """A spend asks for more than the treasury holds."""

    code = 2408


class LiveProposalExists(ProtocolError):
    """The proposer already has a proposal voting or queued on this track."""

    code = 2409


class MalformedProposal(ProtocolError):
    """A proposal body is empty, repeats an entry, or asks for a zero amount."""

    code = 2410


class CannotCancel(ProtocolError):
    """A ``cancel`` targets a proposal that is neither queued nor a running stream."""

    code = 2411


class InvalidVote(ProtocolError):
    """A ballot's choice or conviction is out of range."""

    code = 2412


class StakeLockedByVote(ProtocolError):
    """``remove_stake`` would take the coldkey's stake below what its votes locked."""

    code = 2413


class SpendAboveTrackLimit(ProtocolError):
    """A spend's total exceeds what even the large spend track may pay."""

    code = 2414


# --- federated models (federation.py) ----------------------------------------------------


class FederationError(ProtocolError):
    """Base of the federated-model refusals (codes 2500-2519)."""

    code = 2500


class InvalidVector(FederationError):
    """A model or update vector is empty, longer than ``MAX_PARAMETERS``, holds a value
    outside the signed 32-bit range, or its bytes do not decode to one."""

    code = 2501


class VectorShapeMismatch(FederationError):
    """An update does not have as many parameters as the model it updates."""

    code = 2502


class NothingToAggregate(FederationError):
    """No contributor was paid for the round, so there is no update to aggregate."""

    code = 2503


# --- data and lineage (data.py) ----------------------------------------------------------


class DataError(ProtocolError):
    """Base of the data and lineage refusals (codes 2520-2549)."""

    code = 2520


class NotFederatedSubnet(DataError):
    """The subnet's task kind is not ``federated``, or its owner has not started it."""

    code = 2521


class FederationAlreadyStarted(DataError):
    """``start_federation`` on a subnet whose federation has already started."""

    code = 2522


class NotFederationOwner(DataError):
    """Only the subnet owner's coldkey may start its federation."""

    code = 2523


class NoTrainingConsent(DataError):
    """The contributor has no data commitment on this subnet that allows training."""

    code = 2524


class WrongRound(DataError):
    """The transaction names a round other than the subnet's current one."""

    code = 2525


class OutsideWindow(DataError):
    """A commit outside the commit window, a reveal outside the reveal window, or a record
    before the reveal window closed and an epoch ran after it."""

    code = 2526


class NoUpdateCommitment(DataError):
    """A reveal from a contributor that made no commitment this round, or one already
    revealed."""

    code = 2527


class UpdateCommitmentMismatch(DataError):
    """The revealed update does not match the contributor's commitment."""

    code = 2528


class DuplicateUpdate(DataError):
    """Another contributor already revealed this very update in this round (a replay)."""

    code = 2529


class RoundRecordMismatch(DataError):
    """The round record differs from what the ledger recomputes: the parent hash, the list
    of revealed updates and credits, or the new model hash."""

    code = 2530


class ModelUnknown(DataError):
    """No round record produced a model with this hash."""

    code = 2531


class NoInferenceConsent(DataError):
    """A contributor credited in the model's lineage does not allow inference."""

    code = 2532


class NotRegisteredOnSubnet(DataError):
    """The sender hotkey has no uid on the subnet it names."""

    code = 2533


# --- services (services.py) --------------------------------------------------------------


class ServiceNotFound(ProtocolError):
    """No live service has that id (never registered, deregistered, or expired)."""

    code = 2601


class ServiceAlreadyRegistered(ProtocolError):
    """The owner already has a live service of that name: renew it, or deregister it first."""

    code = 2602


class NotServiceOwner(ProtocolError):
    """Only the service's owner hotkey may renew or deregister it."""

    code = 2603


class MissingEndpointProof(ProtocolError):
    """A registration without any endpoint, or with an endpoint whose proof is empty: every
    endpoint needs the owner's signature over (service id, URL, recent state root)."""

    code = 2604


class InvalidEndpointProof(ProtocolError):
    """An endpoint proof not signed by the owner for this chain, service and URL: signed by
    another key (a foreign proof), or for another service or URL."""

    code = 2605


class StaleEndpointProof(ProtocolError):
    """The endpoint proof names a block that is not among the last ``PROOF_WINDOW_BLOCKS``:
    sign a fresh proof over a recent state root."""

    code = 2606


class ServiceBondTooLow(ProtocolError):
    """The bond is below ``MIN_SERVICE_BOND``."""

    code = 2607


class InvalidServiceTtl(ProtocolError):
    """A time to live of 0 or above ``MAX_SERVICE_TTL_BLOCKS``, or a renewal that would bring
    the expiry earlier than it is."""

    code = 2608


class InvalidServiceRecord(ProtocolError):
    """A field of the record is out of bounds: an empty name, a price unit or transport not
    in the lists, a URL that is not http(s), a zero price, too many endpoints or tags."""

    code = 2609


def all_error_classes() -> list[type[ProtocolError]]:
    """Every concrete error class, for documentation and for the uniqueness test of codes."""
    found: list[type[ProtocolError]] = []
    pending: list[type[ProtocolError]] = [ProtocolError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return sorted(found, key=lambda c: c.code)
