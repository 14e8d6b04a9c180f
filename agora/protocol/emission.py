"""Emission and epochs: new tokens every block, paid by Yuma Consensus at each subnet's epoch.

At the end of every block (``transition.state_transition`` names these steps, in order):
1. registration prices decay (``subnets.process_registration_prices``);
2. the block's emission is minted (``process_block_emission``): ``initial_block_emission``
   halved every ``halving_interval_blocks``, never past ``supply_cap``; the treasury takes its
   governable share ``treasury_emission_u16``, and the rest is shared among subnets by their
   ``emission_share`` and accumulates in each subnet's ``pending_emission``;
3. every subnet whose epoch falls on this block runs Yuma over its neurons (``process_epochs``)
   and pays what it accumulated: the owner cut to the owner, incentive to each miner's
   coldkey, dividends to each validator's owner (its take) and stakers (pro rata); the
   validators' share of the payment-channel fees claimed since the last epoch is paid with
   the dividends, in proportion to them (``process_channel_fees``).

Every base unit is accounted for: what integer division leaves over (the shares among
subnets, Yuma's rounding, an epoch with nobody to pay) goes to the treasury.
"""

from __future__ import annotations

from dataclasses import replace

from agora.protocol.accounts import increase_balance
from agora.protocol.channels import get_fee_pool, set_fee_pool
from agora.protocol.consensus.weights import compute_commit_block_for_mask
from agora.protocol.consensus.yuma import EpochInputs, EpochResult
from agora.protocol.consensus.yuma_fast import compute_epoch_fast
from agora.protocol.kinds import BlockContext, TransactionKind
from agora.protocol.params import U16_ONE
from agora.protocol.staking import distribute_dividends, get_hotkey, get_total_stake
from agora.protocol.state import State
from agora.protocol.subnets import (
    Subnet,
    compute_yuma_params,
    get_neurons,
    get_owner_uid,
    get_subnet,
    get_subnets,
    is_epoch_block,
    set_neuron,
    set_subnet,
)
from agora.protocol.voting_power import record_contribution
from agora.protocol.weight_commits import get_commits


def register_tables(state: State) -> None:
    """Emission keeps its totals in the ledger table (``minted``, ``treasury``)."""


KINDS: tuple[TransactionKind, ...] = ()


def compute_supply_held(state: State) -> int:
    """What emission has minted and not yet paid is held by the subnets (pending emission)."""
    return 0


def check_invariants(state: State) -> None:
    """Emission checks no invariant of its own beyond the supply conservation."""


def compute_block_emission(params_emission: int, halving_interval: int, height: int) -> int:
    halvings = height // halving_interval if halving_interval else 0
    return params_emission >> halvings if halvings < 64 else 0


def process_block_emission(state: State, context: BlockContext) -> None:
    params = state.params
    subnets = get_subnets(state)
    if not subnets:
        return
    supply = state.get_ledger("genesis_supply") + state.get_ledger("minted")
    room = max(params.supply_cap - supply + state.get_ledger("burned"), 0)
    amount = min(
        compute_block_emission(
            params.initial_block_emission, params.halving_interval_blocks, context.height
        ),
        room,
    )
    if amount == 0:
        return
    state.set_ledger("minted", state.get_ledger("minted") + amount)
    # The treasury's governable share comes first; the subnets share the rest.
    to_treasury = amount * params.treasury_emission_u16 // U16_ONE
    state.set_ledger("treasury", state.get_ledger("treasury") + to_treasury)
    amount -= to_treasury
    total_share = sum(subnet.emission_share for subnet in subnets)
    given = 0
    for subnet in subnets:
        share = amount * subnet.emission_share // total_share if total_share else 0
        if share:
            set_subnet(state, replace(subnet, pending_emission=subnet.pending_emission + share))
            given += share
    # Floor division among subnets leaves up to (subnets - 1) base units.
    state.set_ledger("treasury", state.get_ledger("treasury") + amount - given)


def process_epochs(state: State, context: BlockContext) -> None:
    """Run the epoch of every subnet whose epoch falls on this block, in netuid order."""
    for subnet in get_subnets(state):
        if is_epoch_block(subnet.netuid, subnet.hyperparameters.tempo, context.height):
            process_epoch(state, subnet.netuid, context)


def process_epoch(state: State, netuid: int, context: BlockContext) -> None:
    """Run Yuma on one subnet and pay what it accumulated since its last epoch."""
    subnet = get_subnet(state, netuid)
    emission = subnet.pending_emission
    owner_cut = emission * state.params.owner_cut_u16 // 65_535
    to_neurons = emission - owner_cut
    paid = 0
    result = None
    if subnet.n > 0:
        result = compute_epoch_fast(compute_epoch_inputs(state, subnet, to_neurons, context.height))
        paid = process_epoch_result(state, subnet, result, context.height)
        if owner_cut:
            increase_balance(state, subnet.owner, owner_cut)
    else:
        owner_cut = 0
    # Yuma's rounding, or a subnet with no neurons: what is not paid goes to the treasury.
    state.set_ledger("treasury", state.get_ledger("treasury") + emission - owner_cut - paid)
    process_channel_fees(state, netuid, result)
    subnet = get_subnet(state, netuid)
    set_subnet(
        state,
        replace(
            subnet,
            pending_emission=0,
            last_epoch_block=context.height,
            epoch_index=subnet.epoch_index + 1,
        ),
    )


def compute_epoch_inputs(state: State, subnet: Subnet, emission: int, block: int) -> EpochInputs:
    neurons = get_neurons(state, subnet.netuid)
    h = subnet.hyperparameters
    commit_blocks = None
    if h.commit_reveal:
        epoch = subnet.epoch_index + 1
        commit_blocks = tuple(
            compute_commit_block_for_mask(
                get_commits(state, subnet.netuid, neuron.hotkey), epoch, h.reveal_period_epochs
            )
            for neuron in neurons
        )
    return EpochInputs(
        block=block,
        tempo=h.tempo,
        last_step_block=subnet.last_epoch_block,
        emission=emission,
        stake=tuple(get_total_stake(state, neuron.hotkey) for neuron in neurons),
        registered_at=tuple(neuron.registered_at for neuron in neurons),
        last_update=tuple(neuron.last_update for neuron in neurons),
        validator_permit=tuple(neuron.validator_permit for neuron in neurons),
        weights=tuple(neuron.weights for neuron in neurons),
        bonds=tuple(neuron.bonds for neuron in neurons),
        params=compute_yuma_params(h),
        owner_uid=get_owner_uid(state, subnet),
        commit_blocks=commit_blocks,
    )


def process_epoch_result(state: State, subnet: Subnet, result: EpochResult, height: int) -> int:
    """Store the epoch's outputs on each neuron and pay them; returns the total paid.

    What each neuron earns is also its verified contribution, the part of voting power that
    comes from measured work (``voting_power.record_contribution``).
    """
    paid = 0
    for uid, neuron in enumerate(get_neurons(state, subnet.netuid)):
        set_neuron(
            state,
            subnet.netuid,
            uid,
            replace(
                neuron,
                validator_permit=result.validator_permit[uid],
                active=result.active[uid],
                stake_u16=result.stake_u16[uid],
                consensus_u16=result.consensus_u16[uid],
                incentive_u16=result.incentive_u16[uid],
                dividends_u16=result.dividends_u16[uid],
                validator_trust_u16=result.validator_trust_u16[uid],
                emission=result.emission[uid],
                bonds=result.bonds_u16[uid],
            ),
        )
        if result.miner_emission[uid]:
            increase_balance(state, neuron.coldkey, result.miner_emission[uid])
            record_contribution(state, neuron.coldkey, result.miner_emission[uid], height)
        distribute_dividends(state, neuron.hotkey, result.validator_emission[uid])
        if result.validator_emission[uid]:
            owner = get_hotkey(state, neuron.hotkey).owner
            record_contribution(state, owner, result.validator_emission[uid], height)
        paid += result.miner_emission[uid] + result.validator_emission[uid]
    return paid


def process_channel_fees(state: State, netuid: int, result: EpochResult | None) -> None:
    """Pay the validators' share of the subnet's channel fees, in proportion to the epoch's
    dividends, as dividends (the validator's take, then its stakers)."""
    pool = get_fee_pool(state, netuid)
    if pool == 0:
        return
    set_fee_pool(state, netuid, 0)
    paid = 0
    total_dividends = 0 if result is None else sum(result.dividends_u16)
    if result is not None and total_dividends > 0:
        for neuron, dividends in zip(get_neurons(state, netuid), result.dividends_u16, strict=True):
            share = pool * dividends // total_dividends
            if share:
                distribute_dividends(state, neuron.hotkey, share)
                paid += share
    # The floors, or an epoch where no validator earned dividends: the rest to the treasury.
    state.set_ledger("treasury", state.get_ledger("treasury") + pool - paid)
