"""The refusals of the consensus helpers: weights, commit-reveal, registration and the epoch.

Each class mirrors one error of the Bittensor chain where there is one (named in its
docstring), so a subnet designer who knows those errors recognises these. Codes sit in the
protocol's ranges (2000-2099 subnets and registration, 2200-2299 weights and commit-reveal)
in sub-blocks of their own (2050-2069, 2250-2279) so that the subnet and weights handlers
can take the lower codes of each range. Codes never change meaning once released.
"""

from __future__ import annotations

from agora.protocol.errors import ProtocolError

# --- subnets, registration and the epoch (2050-2069) ----------------------------------


class InvalidEpochInputs(ProtocolError):
    """The epoch was handed per-uid vectors of different lengths or values out of range.

    The ledger builds these inputs from its own state, so this signals a bug in the caller,
    never a user's mistake; it is raised instead of computing an epoch on garbage.
    """

    code = 2050


class InvalidRegistrationPrice(ProtocolError):
    """The registration price rules are inconsistent: a negative amount, ``min_burn`` above
    ``max_burn``, a half-life outside [0, 65535] or a multiplier below zero."""

    code = 2051


class NoUidToPrune(ProtocolError):
    """The subnet is full and every uid is an immortal owner key, so a new registration
    has no uid to take (the chain's ``get_neuron_to_prune`` returns ``None``)."""

    code = 2052


# --- weights (2250-2262) -------------------------------------------------------------


class WeightsLengthMismatch(ProtocolError):
    """``uids`` and ``values`` have different lengths (chain: ``WeightVecNotEqualSize``)."""

    code = 2250


class TooManyWeights(ProtocolError):
    """More weights than uids in the subnet (chain: ``UidsLengthExceedUidsInSubNet``)."""

    code = 2251


class WeightsSetterNotRegistered(ProtocolError):
    """The hotkey setting weights has no uid on the subnet
    (chain: ``HotKeyNotRegisteredInSubNet``)."""

    code = 2252


class NotEnoughStakeToSetWeights(ProtocolError):
    """The setter's stake is below the stake threshold and it is not the subnet owner
    (chain: ``NotEnoughStakeToSetWeights``)."""

    code = 2253


class IncorrectWeightsVersionKey(ProtocolError):
    """The submitted version key is older than the subnet's weights version key
    (chain: ``IncorrectWeightVersionKey``)."""

    code = 2254


class SettingWeightsTooFast(ProtocolError):
    """Fewer blocks than the weights rate limit have passed since the setter's last update
    (chain: ``SettingWeightsTooFast``; ``CommittingWeightsTooFast`` for commits)."""

    code = 2255


class NoValidatorPermit(ProtocolError):
    """A uid without a validator permit set weights other than a single self-weight
    (chain: ``NeuronNoValidatorPermit``)."""

    code = 2256


class DuplicateWeightUids(ProtocolError):
    """The same uid appears twice in one weights submission (chain: ``DuplicateUids``)."""

    code = 2257


class InvalidWeightUid(ProtocolError):
    """A weight names a uid that does not exist on the subnet
    (chain: ``UidVecContainInvalidOne``)."""

    code = 2258


class TooFewWeights(ProtocolError):
    """Fewer weights than ``min(min_allowed_weights, n)`` and not a self-weight
    (chain: ``WeightVecLengthIsLow``)."""

    code = 2259


class MaxWeightExceeded(ProtocolError):
    """Once normalized, one weight is above the subnet's max weight limit
    (chain: ``MaxWeightExceeded``)."""

    code = 2260


class WeightValueOutOfRange(ProtocolError):
    """A uid or a weight value does not fit in a u16 (the chain's types forbid it)."""

    code = 2261


# --- commit-reveal (2270-2279) -------------------------------------------------------


class TooManyUnrevealedCommits(ProtocolError):
    """The hotkey already has 10 unexpired, unrevealed commits
    (chain: ``TooManyUnrevealedCommits``)."""

    code = 2270


class NoWeightsCommitFound(ProtocolError):
    """A reveal arrived but the hotkey has no unexpired commit (chain: ``NoWeightsCommitFound``)."""

    code = 2271


class ExpiredWeightCommit(ProtocolError):
    """The revealed data matches a commit whose reveal epoch has passed
    (chain: ``ExpiredWeightCommit``)."""

    code = 2272


class RevealTooEarly(ProtocolError):
    """The revealed data matches a commit whose reveal epoch has not come yet
    (chain: ``RevealTooEarly``)."""

    code = 2273


class CommitHashMismatch(ProtocolError):
    """The revealed data hashes to none of the hotkey's commits
    (chain: ``InvalidRevealCommitHashNotMatch``)."""

    code = 2274


class InvalidCommitData(ProtocolError):
    """The data to hash for a commit is malformed: a hotkey that is not 32 bytes, or a
    netuid, uid, value or salt outside u16, or a version key outside u64."""

    code = 2275
