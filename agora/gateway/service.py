"""``Gateway.serve``: one developer request, from model to paid, verified answer and receipt.

The steps, the same for every task:
1. find the model's market on the chain (``catalog``) and check the request with the task's
   own validation, so a bad request costs nothing and never reaches a miner;
2. refuse it if it could take the day's spending past the limit (``SpendMeter``);
3. get the answer at the requested verification level (``verification``): each miner call
   picks a miner (``routing``), pays it with a fresh voucher (``channels``) and fails over to
   another miner when one fails or times out; a failed call is never paid for;
4. send each miner asked for a verified answer its verdict (below);
5. write the receipt (every call: miner, role, cost, latency, and the hash of the trained
   model it serves on chain, for a federated subnet's model) with the channels' new
   committed amounts, in one transaction (``store``).

Verified calls pay only the answers accepted. Under spot and redundant verification each
call carries a hold instead of a voucher (``payments.vouchers``): the miner works on credit
until the answers are compared. Then each miner gets its verdict: a signed voucher for each
of its holds accepted, the hold itself for each rejected. A call is rejected, and costs
nothing, when its answer is outvoted (a primary whose spot check two miners contradict, a
checker the tie-break contradicts, a redundant answer outside the majority, every answer when
no majority agrees) or malformed, or when the call failed; any other answered call is paid,
even when the request fails for another reason. A miner that gives no credit (or no more to
this payer) refuses holds (``CreditRefused``): it is not asked for verified answers, as paying
it up front would let any miner escape the verdicts by refusing credit.
"""

from __future__ import annotations

import asyncio
import logging
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from agora.amounts import format_agr
from agora.errors import AgoraError
from agora.gateway.catalog import Catalog, Market, Offer
from agora.gateway.channels import ChannelManager, Ticket
from agora.gateway.config import LEVELS, GatewayConfig
from agora.gateway.errors import (
    BadRequest,
    GatewayError,
    MinersFailed,
    NoMinerAvailable,
    SpendLimitReached,
    VerificationFailed,
)
from agora.gateway.routing import Router
from agora.gateway.store import ChannelRecord, GatewayStore, Receipt
from agora.gateway.verification import CHECKS, Sample, find_majority
from agora.neuron.client import NeuronClient
from agora.neuron.errors import RemoteError
from agora.payments.errors import (
    ChannelExpiring,
    CreditRefused,
    MalformedPayment,
    VoucherRefused,
    decode_payment_error,
)
from agora.payments.vouchers import VERDICT_ROUTE, Hold, make_payment, make_verdict
from agora.tasks.base import (
    TASK_CODES,
    InvalidRequestError,
    ModelNotServedError,
    RequestTooLargeError,
    TaskError,
)
from agora.tasks.generation import (
    InvalidMaxTokens,
    InvalidMessages,
    InvalidStop,
    InvalidTemperature,
    UnknownField,
)

log = logging.getLogger("agora.gateway")

VERDICT_TIMEOUT_S = 5.0
VERDICT_RETRIES_S = (1.0, 5.0, 25.0)  # pauses before sending an undelivered verdict again

# Task error codes -> the OpenAI request field they are about.
TASK_ERROR_PARAMS = {
    InvalidRequestError.code: "input",
    RequestTooLargeError.code: "input",
    ModelNotServedError.code: "model",
    InvalidMessages.code: "messages",
    InvalidMaxTokens.code: "max_tokens",
    InvalidTemperature.code: "temperature",
    InvalidStop.code: "stop",
    UnknownField.code: "messages",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """A developer's request, in the task's own shape."""

    request_id: str
    model: str
    request: dict[str, Any]
    verification: str = "none"
    prefer: tuple[int, ...] = ()  # uids to try first (``Agora-Miner``)


@dataclass(frozen=True, slots=True, kw_only=True)
class Call:
    """One miner call behind a request; only ``ok`` calls were paid."""

    uid: int
    miner: str
    role: str  # primary, spot, tiebreak, redundant
    cost: int  # base units paid: 0 unless ok
    latency_ms: int
    status: str  # ok, failed, rejected (answered, outvoted or malformed: not paid)
    error: str = ""
    model_hash: str = ""  # hex: the trained model the miner serves on chain, if any

    def to_json(self) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "uid": self.uid,
            "miner": self.miner,
            "role": self.role,
            "cost": self.cost,
            "latency_ms": self.latency_ms,
            "status": self.status,
            "error": self.error,
        }
        if self.model_hash:
            answer["model_hash"] = self.model_hash
        return answer


@dataclass(slots=True)
class HeldCall:
    """A verified call paid by a hold: accepted unless its answer is outvoted or malformed,
    or the call failed (``call`` None: no answer)."""

    offer: Offer
    ticket: Ticket
    call: int | None  # its index in ``Trace.calls``, once answered
    accepted: bool = True
    reason: str = ""  # why it was rejected, for the receipt


@dataclass(slots=True)
class Answer:
    offer: Offer
    body: dict[str, Any]
    hold: HeldCall | None = None

    def reject(self, reason: str) -> None:
        if self.hold is not None:
            self.hold.accepted = False
            self.hold.reason = reason


@dataclass(slots=True)
class Trace:
    """What a request did so far: its calls, the channels they changed, and its holds."""

    calls: list[Call] = field(default_factory=list)
    channels: dict[bytes, ChannelRecord] = field(default_factory=dict)
    holds: list[HeldCall] = field(default_factory=list)

    @property
    def cost(self) -> int:
        return sum(call.cost for call in self.calls)


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    request_id: str
    model: str
    task: str
    verification: str
    answer: dict[str, Any]
    calls: tuple[Call, ...]
    cost: int
    latency_ms: int


class CallFailed(GatewayError):
    """One miner call failed; the gateway tries another miner (never reaches a developer)."""

    code = 3610
    http_status = 502


class SpendMeter:
    """The day's spending (UTC days) against the limit: ``spent`` from the receipts, plus the
    calls under way (``reserved``)."""

    def __init__(self, limit: int | None, store: GatewayStore, clock: Callable[[], float]) -> None:
        self.limit = limit
        self.store = store
        self.clock = clock
        self.day = ""
        self.spent = 0
        self.reserved = 0

    def get_day(self) -> str:
        day = time.strftime("%Y-%m-%d", time.gmtime(self.clock()))
        if day != self.day:
            self.day, self.spent = day, self.store.get_spent(day)
        return day

    def check(self, amount: int) -> None:
        """Raise unless ``amount`` more fits in the day's limit."""
        self.get_day()
        if self.limit is not None and self.spent + self.reserved + amount > self.limit:
            raise SpendLimitReached(
                f"this request could cost up to {format_agr(amount)}; "
                f"{format_agr(self.spent + self.reserved, unit=False)} of the daily limit of "
                f"{format_agr(self.limit)} is spent or under way (UTC day {self.day})"
            )

    def reserve(self, amount: int) -> None:
        self.check(amount)
        self.reserved += amount

    def release(self, amount: int, paid: bool) -> None:
        self.reserved -= amount
        if paid:
            self.get_day()
            self.spent += amount


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayParts:
    """What a ``Gateway`` works with, built by ``server.run_gateway`` (or a test)."""

    catalog: Catalog
    router: Router
    channels: ChannelManager
    store: GatewayStore
    neurons: NeuronClient
    rng: random.Random
    clock: Callable[[], float] = time.time


class Gateway:
    def __init__(self, config: GatewayConfig, parts: GatewayParts) -> None:
        self.config = config
        self.catalog = parts.catalog
        self.router = parts.router
        self.channels = parts.channels
        self.store = parts.store
        self.neurons = parts.neurons
        self.rng = parts.rng
        self.clock = parts.clock
        self.meter = SpendMeter(config.daily_limit, parts.store, parts.clock)
        self._redeliveries: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        """Stop sending the verdicts not delivered yet."""
        for task in list(self._redeliveries):
            task.cancel()
        await asyncio.gather(*self._redeliveries, return_exceptions=True)

    # --- the entry point -----------------------------------------------------------------------

    async def serve(self, job: Job) -> Outcome:
        started = time.perf_counter()
        market = self.catalog.find(job.model)
        self.validate_job(market, job)
        self.meter.check(self.estimate_cost(market, job))
        trace = Trace()
        error: AgoraError | None = None
        try:
            answer = await self._serve_level(market, job, trace)
        except AgoraError as failure:
            error = failure
        finally:
            await self._conclude_holds(trace)
        self._record(job, market, trace, started, error)
        if error is not None:
            raise error
        return Outcome(
            request_id=job.request_id,
            model=job.model,
            task=market.task,
            verification=job.verification,
            answer=answer,
            calls=tuple(trace.calls),
            cost=trace.cost,
            latency_ms=_elapsed_ms(started),
        )

    def validate_job(self, market: Market, job: Job) -> None:
        if job.verification not in LEVELS:
            raise BadRequest(
                f"verification must be one of {', '.join(LEVELS)}", param="agora_verification"
            )
        try:
            CHECKS[market.task].validate_request(job.request, job.verification)
        except TaskError as error:
            raise BadRequest(error.message, param=TASK_ERROR_PARAMS.get(error.code)) from None
        if not market.offers:
            raise NoMinerAvailable(
                f"no miner of subnet {market.netuid} sells {market.model} right now"
            )
        if job.verification != "none" and len(market.offers) < 2:
            raise NoMinerAvailable(
                f"verification {job.verification!r} needs two miners and one sells "
                f"{market.model} right now; ask for verification 'none'"
            )

    def estimate_cost(self, market: Market, job: Job) -> int:
        """The most the request should cost: its dearest miner's price, times the calls its
        level makes (a spot check's sample and tie-break cost no more than the request)."""
        worst = max(offer.price.compute_cost(market.task, job.request) for offer in market.offers)
        calls = {"none": 1, "spot": 3, "redundant": self.config.redundancy}[job.verification]
        return worst * calls

    async def _serve_level(self, market: Market, job: Job, trace: Trace) -> dict[str, Any]:
        if job.verification == "spot":
            return await self._serve_spot(market, job, trace)
        if job.verification == "redundant":
            return await self._serve_redundant(market, job, trace)
        answer = await self._answer(market, job.request, "primary", set(), trace, job.prefer)
        return answer.body

    # --- verification levels -----------------------------------------------------------------

    async def _serve_spot(self, market: Market, job: Job, trace: Trace) -> dict[str, Any]:
        """The primary's answer, once a second miner's recomputed sample agrees with it."""
        check = CHECKS[market.task]
        losers: set[bytes] = set()
        for _ in range(self.config.attempts):
            primary = await self._answer(
                market, job.request, "primary", set(losers), trace, job.prefer, held=True
            )
            sample = check.sample(job.request, self.rng)
            if await self._check_sample(market, primary, sample, trace):
                return primary.body
            primary.reject("outvoted: the spot check and its tie-break disagree with it")
            losers.add(primary.offer.hotkey)
            self.router.penalize(primary.offer)
        raise VerificationFailed(
            f"the answers of {self.config.attempts} miners failed their spot checks"
        )

    async def _check_sample(
        self, market: Market, primary: Answer, sample: Sample, trace: Trace
    ) -> bool:
        """Whether the primary's answer agrees with a checker's sample; a third miner breaks
        a disagreement (and the loser is rested, its call rejected)."""
        check = CHECKS[market.task]
        exclude = {primary.offer.hotkey}
        projected = sample.project(primary.body)
        try:
            checker = await self._answer(market, sample.request, "spot", exclude, trace, held=True)
        except NoMinerAvailable:
            raise NoMinerAvailable(
                "spot verification needs a second miner and only one sells this model right "
                "now; ask for verification 'none'"
            ) from None
        if check.agrees_with_sample(projected, sample.read(checker.body)):
            return True
        try:
            tie = await self._answer(market, sample.request, "tiebreak", exclude, trace, held=True)
        except NoMinerAvailable:
            raise VerificationFailed(
                "two miners disagree on a spot check and no third miner can break the tie"
            ) from None
        if check.agrees_with_sample(projected, sample.read(tie.body)):
            checker.reject("outvoted: the tie-break agrees with the answer it checked")
            self.router.penalize(checker.offer)
            return True
        return False

    async def _serve_redundant(self, market: Market, job: Job, trace: Trace) -> dict[str, Any]:
        """``redundancy`` miners answer; the majority's answer wins."""
        check = CHECKS[market.task]
        count = min(self.config.redundancy, len(market.offers))
        if count < 2:
            raise NoMinerAvailable("redundant verification needs at least two miners")
        exclude: set[bytes] = set()
        results = await asyncio.gather(
            *(
                self._answer(
                    market,
                    job.request,
                    "redundant",
                    exclude,
                    trace,
                    job.prefer if i == 0 else (),
                    held=True,
                )
                for i in range(count)
            ),
            return_exceptions=True,
        )
        answered = [r for r in results if not isinstance(r, BaseException)]
        errors = [r for r in results if isinstance(r, BaseException)]
        for error in errors:
            if isinstance(error, BadRequest) or not isinstance(error, AgoraError):
                raise error
        if len(answered) < 2:
            # A reason of the gateway's own (funds, the chain, the limit) before the miners'.
            own = [e for e in errors if not isinstance(e, MinersFailed | NoMinerAvailable)]
            if own:
                raise own[0]
            raise MinersFailed(f"{len(answered)} of {count} miners answered; two are needed")
        majority = find_majority([answer.body for answer in answered], check.agrees)
        if majority is None:
            for answer in answered:
                answer.reject("no majority of the answers agrees")
            raise VerificationFailed(f"no majority among {len(answered)} miners' answers")
        for index, answer in enumerate(answered):
            if index not in majority:
                answer.reject("outvoted: the majority's answer differs")
                self.router.penalize(answer.offer)
        return answered[majority[0]].body

    # --- one answer, one call ----------------------------------------------------------------

    async def _answer(
        self,
        market: Market,
        request: dict[str, Any],
        role: str,
        exclude: set[bytes],
        trace: Trace,
        prefer: tuple[int, ...] = (),
        *,
        held: bool = False,
    ) -> Answer:
        """One miner's answer, failing over to another miner up to ``attempts`` times; every
        miner tried is added to ``exclude``. ``held``: paid by a hold (a verified call)."""
        failures: list[str] = []
        for _ in range(self.config.attempts):
            offer = self.router.choose(market.offers, exclude=exclude, prefer=prefer)
            if offer is None:
                break
            exclude.add(offer.hotkey)
            try:
                return await self._call(market, offer, request, role, trace, held)
            except CallFailed as error:
                failures.append(f"uid {offer.uid}: {error.message}")
        if not failures:
            raise NoMinerAvailable(f"no other miner of subnet {market.netuid} is available")
        raise MinersFailed(f"{len(failures)} miner(s) failed: " + "; ".join(failures))

    async def _call(
        self,
        market: Market,
        offer: Offer,
        request: dict[str, Any],
        role: str,
        trace: Trace,
        held: bool,
    ) -> Answer:
        """Pay ``offer`` for ``request`` and return its answer, or raise ``CallFailed``.
        A refusal over the voucher itself (the miner served more than we counted, or the
        channel nears expiry) is fixed and retried once on the same miner; a miner that
        refuses a hold fails the call (another miner is asked)."""
        cost = offer.price.compute_cost(market.task, request)
        for attempt in range(2):
            self.meter.reserve(cost)
            try:
                ticket = await self.channels.issue(offer.hotkey, market.netuid, cost, held=held)
            except BaseException:
                self.meter.release(cost, paid=False)
                raise
            try:
                return await self._send(market, offer, request, ticket, trace, role)
            except RemoteError as error:
                if ticket.held and _refuses_holds(error):
                    trace.calls.append(_failed_call(offer, role, None, error))
                    raise CallFailed(
                        f"uid {offer.uid} gives this payer no credit, which verified calls need"
                    ) from None
                if attempt == 0 and await self._fix_payment(ticket, error):
                    continue
                raise self._refused(offer, role, trace, error) from None
        raise AssertionError("unreachable")

    async def _send(
        self,
        market: Market,
        offer: Offer,
        request: dict[str, Any],
        ticket: Ticket,
        trace: Trace,
        role: str,
    ) -> Answer:
        """One signed, paid call. Settles the ticket and the meter either way (a hold's once
        its verdict is out, ``_conclude_holds``)."""
        body = {**request, "payment": make_payment(ticket.payment)}
        self.router.begin(offer)
        started = time.perf_counter()
        try:
            response = await self.neurons.call(
                offer.url,
                offer.hotkey,
                market.route,
                body,
                timeout_s=self._timeout(market, request),
            )
        except AgoraError as error:
            refused = isinstance(error, RemoteError)
            self._unpaid(offer, ticket, trace, may_hold=not refused)
            self.router.fail(offer, blame=not refused)  # a refusal is judged by the caller
            if refused:
                raise
            trace.calls.append(_failed_call(offer, role, started, error))
            raise CallFailed(f"error[{error.code}] {error.message}") from None
        except BaseException:  # cancelled, or a bug: nothing was earned
            self._unpaid(offer, ticket, trace, may_hold=True)
            self.router.fail(offer, blame=False)
            raise
        record = self.channels.settle(ticket, succeeded=True)
        if not ticket.held:
            self.meter.release(ticket.cost, paid=True)
        if record is not None:
            trace.channels[record.channel_id] = record
        self.router.succeed(offer, response.latency_ms)
        trace.calls.append(
            Call(
                uid=offer.uid,
                miner=offer.address,
                role=role,
                cost=ticket.cost,
                latency_ms=response.latency_ms,
                status="ok",
                model_hash=offer.model_hash,
            )
        )
        answer = Answer(offer, response.body)
        if ticket.held:
            answer.hold = HeldCall(offer, ticket, len(trace.calls) - 1)
            trace.holds.append(answer.hold)
        if not CHECKS[market.task].validate_answer(request, response.body):
            self.router.penalize(offer)
            answer.reject("the answer is malformed")
            paid = "it is not paid" if ticket.held else "it was paid"
            raise CallFailed(f"the answer is malformed ({paid}: the miner is rested)")
        return answer

    def _unpaid(self, offer: Offer, ticket: Ticket, trace: Trace, *, may_hold: bool) -> None:
        """A call that earned nothing. Its ticket is settled as failed; a hold the miner may
        still keep (it refused nothing, so it may have done the work) is rejected instead,
        with the request's verdicts, so the miner forgets it too."""
        if ticket.held and may_hold:
            trace.holds.append(HeldCall(offer, ticket, None, accepted=False))
        else:
            self.channels.settle(ticket, succeeded=False)
        self.meter.release(ticket.cost, paid=False)

    async def _conclude_holds(self, trace: Trace) -> None:
        """Send each miner the verdict on its holds, and settle them: an accepted hold's cost
        is owed (its voucher goes with the verdict), a rejected one's call costs nothing."""
        by_miner: dict[bytes, list[HeldCall]] = {}
        for held in trace.holds:
            by_miner.setdefault(held.offer.hotkey, []).append(held)
        await asyncio.gather(*(self._send_verdict(holds, trace) for holds in by_miner.values()))
        trace.holds.clear()

    async def _send_verdict(self, holds: list[HeldCall], trace: Trace) -> None:
        offer = holds[0].offer
        accepted = [self.channels.sign_accepted(h.ticket) for h in holds if h.accepted]
        rejected = [
            Hold(channel_id=h.ticket.channel_id, cumulative=h.ticket.amount)
            for h in holds
            if not h.accepted
        ]
        verdict = make_verdict(accepted, rejected)
        delivered = await self._deliver(offer, verdict)
        if not delivered:  # again later, in the background (a verdict may come twice)
            task = asyncio.create_task(self._redeliver(offer, verdict))
            self._redeliveries.add(task)
            task.add_done_callback(self._redeliveries.discard)
        for held in holds:
            record = self.channels.conclude(
                held.ticket, accepted=held.accepted, delivered=delivered
            )
            if record is not None:
                trace.channels[record.channel_id] = record
            if held.call is None:
                continue  # failed: its meter share is already released
            self.meter.release(held.ticket.cost, paid=held.accepted)
            if not held.accepted:
                call = trace.calls[held.call]
                why = f"rejected: {held.reason}"
                trace.calls[held.call] = replace(call, cost=0, status="rejected", error=why)

    async def _deliver(self, offer: Offer, verdict: dict[str, Any]) -> bool:
        try:
            await self.neurons.call(
                offer.url, offer.hotkey, VERDICT_ROUTE, verdict, timeout_s=VERDICT_TIMEOUT_S
            )
        except AgoraError as error:
            log.warning("verdict to uid %d not delivered: %s", offer.uid, error.message)
            return False
        return True

    async def _redeliver(self, offer: Offer, verdict: dict[str, Any]) -> None:
        """An undelivered verdict, sent again a few times before the miner's holds expire:
        its vouchers pay the miner even if no later call does, and its rejections spare the
        payer's credit there. Until it is delivered, its holds are treated as undelivered."""
        for pause in VERDICT_RETRIES_S:
            await asyncio.sleep(pause)
            if await self._deliver(offer, verdict):
                return

    async def _fix_payment(self, ticket: Ticket, error: RemoteError) -> bool:
        """Whether a refusal over the voucher was fixed, so the call may be sent again."""
        refusal = decode_payment_error(error)
        if isinstance(refusal, VoucherRefused):
            self.channels.adopt_served(ticket, refusal.served)  # else retired: a new channel
            return True
        if isinstance(refusal, ChannelExpiring):
            await self.channels.extend(ticket.channel_id)
            return True
        return False

    def _refused(self, offer: Offer, role: str, trace: Trace, error: RemoteError) -> GatewayError:
        """A miner's refusal: the developer's error when the task says the request is bad,
        else this miner's failure (the caller fails over)."""
        trace.calls.append(_failed_call(offer, role, None, error))
        # A miner running another model: its fault, not the developer's.
        is_task_error = error.code in TASK_CODES and error.code != ModelNotServedError.code
        if is_task_error and 400 <= error.status < 500:
            return BadRequest(
                f"the miner refused the request: {error.message}",
                param=TASK_ERROR_PARAMS.get(error.code),
            )
        self.router.penalize(offer)
        return CallFailed(f"error[{error.code}] {error.message}")

    def _timeout(self, market: Market, request: dict[str, Any]) -> float:
        if market.task == "generation":
            config = self.config
            tokens = int(request.get("max_tokens", 0))
            return config.generation_timeout_base_s + config.generation_timeout_per_token_s * tokens
        return self.config.embedding_timeout_s

    # --- receipts and prices -------------------------------------------------------------------

    def _record(
        self, job: Job, market: Market, trace: Trace, started: float, error: AgoraError | None
    ) -> None:
        now = self.clock()
        receipt = Receipt(
            request_id=job.request_id,
            created_at=now,
            day=self.meter.get_day(),
            model=job.model,
            task=market.task,
            verification=job.verification,
            status="ok" if error is None else "failed",
            cost=trace.cost,
            latency_ms=_elapsed_ms(started),
            calls=tuple(call.to_json() for call in trace.calls),
            error="" if error is None else f"error[{error.code}] {error.message}",
        )
        self.store.add_receipt(receipt, list(trace.channels.values()))

    def compute_level_prices(self, market: Market) -> dict[str, Any]:
        return compute_level_prices(market, self.config.redundancy)


def compute_level_prices(market: Market, redundancy: int) -> dict[str, Any]:
    """What one unit of the market's most common pricing unit costs at each level, at the
    median price of the miners selling in that unit (a spot check's sample costs at most one
    more unit; a disagreement adds a tie-break)."""
    if not market.offers:
        return {}
    units = [offer.price.per for offer in market.offers]
    unit = max(sorted(set(units)), key=units.count)
    price = int(statistics.median(o.price.amount for o in market.offers if o.price.per == unit))
    return {"per": unit, "none": price, "spot": 2 * price, "redundant": redundancy * price}


def _refuses_holds(error: RemoteError) -> bool:
    """The miner gives no credit to this payer (or does not know holds)."""
    return isinstance(decode_payment_error(error), CreditRefused | MalformedPayment)


def _failed_call(offer: Offer, role: str, started: float | None, error: AgoraError) -> Call:
    return Call(
        uid=offer.uid,
        miner=offer.address,
        role=role,
        cost=0,
        latency_ms=0 if started is None else _elapsed_ms(started),
        status="failed",
        error=f"error[{error.code}] {error.message}"[:300],
        model_hash=offer.model_hash,
    )


def _elapsed_ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
