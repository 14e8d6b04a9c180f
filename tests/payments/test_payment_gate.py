"""The miner's payment gate: prices, vouchers checked against a real node, claims on chain.

A dev node runs in its own process (a block as soon as a transaction waits). A subnet has two
miner hotkeys; a payer and an attacker open channels to them with real transactions. The gate
runs in this process, as a miner's handler runs it: ``reserve`` before the work, ``settle``
after it succeeded, ``release`` (or the end of the request's task) when it failed. Shown:
- prices parse, print, ride in an endpoint's fragment and cost what the units say;
- every bad payment is refused with its code and leaves nothing settled: none, malformed,
  unknown channel, another miner's channel, someone else's channel, a forged voucher, a
  voucher relabelled onto another channel, below the price, replayed, above the deposit, a
  channel about to expire;
- a failed request costs nothing: the next voucher may carry the same amount;
- ``claim_all`` claims exactly what was settled; ``run`` claims before the channel expires;
- random concurrent traffic: an honest payer (the gateway's voucher rule) is never refused
  in any arrival order and pays exactly its successes; whatever a payer sends, the best
  voucher always covers the work done;
- holds: work on credit up to the seller's limit per payer, paid only when its payer accepts
  it (the voucher of the verdict is claimed), written off against that payer when rejected or
  left without a verdict; a bad verdict changes nothing; a verdict the miner did not get is
  sent again; on random traffic with verdicts, the same two properties.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import socket
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from node_helpers import NodeProcess, NodeProcesses

from agora.client.client import NodeApiError, NodeClient
from agora.client.participant import submit_and_wait
from agora.errors import AgoraError
from agora.gateway.catalog import Catalog, Offer
from agora.gateway.channels import ChannelManager, PaidChannel, compute_next_amount
from agora.gateway.config import GatewayConfig
from agora.gateway.errors import InsufficientFunds
from agora.gateway.routing import Router
from agora.gateway.service import Call, Gateway, GatewayParts, HeldCall, Trace
from agora.gateway.store import ChannelRecord, GatewayStore
from agora.neuron.client import NeuronClient
from agora.neuron.server import Caller, NeuronServer, NeuronServerConfig
from agora.node.devchain import DEV_CHAIN_ID, compute_dev_seed
from agora.payments.books import (
    EXPIRY_MARGIN_BLOCKS,
    HOLD_TIMEOUT_S,
    ChannelBook,
    PaymentBooks,
    compute_sufficient_amount,
)
from agora.payments.errors import (
    ChannelClosed,
    ChannelExpiring,
    CreditRefused,
    InsufficientPayment,
    InvalidPrice,
    InvalidVoucher,
    MalformedPayment,
    NotChannelPayer,
    PaymentRequired,
    UnknownChannel,
    VoucherExceedsDeposit,
    VoucherReplayed,
    WrongPayee,
)
from agora.payments.gate import PaymentGate, PaymentGateConfig
from agora.payments.prices import Price, parse_endpoint
from agora.payments.store import VoucherStore
from agora.payments.vouchers import VERDICT_ROUTE, Hold, make_payment, make_verdict
from agora.protocol.accounts import Transfer
from agora.protocol.address import Address
from agora.protocol.channels import (
    CloseChannel,
    OpenChannel,
    TopUpChannel,
    Voucher,
    compute_channel_id,
    sign_voucher,
)
from agora.protocol.params import BASE_UNITS_PER_AGR
from agora.protocol.subnets import NO_HOTKEY, CreateSubnet, Register
from agora.wallet.keys import Keypair

T = TypeVar("T")
AGR = BASE_UNITS_PER_AGR
PRICE = Price.parse("0.001/request")
REQUEST = {"model": "all-MiniLM-L6-v2", "texts": ["a text"]}
OWNER = Keypair(compute_dev_seed("dev0"))
PAYER = Keypair(compute_dev_seed("dev1"))
ATTACKER = Keypair(compute_dev_seed("dev2"))
FILLER = Keypair(compute_dev_seed("dev7"))


def make_keypair(name: str) -> Keypair:
    return Keypair(hashlib.sha256(f"agora-payments-test:{name}".encode()).digest())


MINER = make_keypair("miner")
OTHER_MINER = make_keypair("other-miner")
SINK = make_keypair("sink")


# --- prices -------------------------------------------------------------------------------------


def test_prices_parse_print_and_ride_in_the_endpoint() -> None:
    assert Price.parse("0.001/request") == Price(amount=1_000_000, per="request")
    assert Price.parse("2") == Price(amount=2 * AGR, per="request")
    assert Price.parse(" 0.000000001 / item ") == Price(amount=1, per="item")
    assert Price.parse("0.5/1k-tokens").to_text() == "0.5/1k-tokens"
    assert PRICE.to_json() == {"amount": 1_000_000, "per": "request", "text": "0.001/request"}
    for bad in ("", "abc/request", "0/request", "-1/request", "0.0000000001/request", "1/hour"):
        with pytest.raises(InvalidPrice):
            Price.parse(bad)

    endpoint = PRICE.attach("http://127.0.0.1:8091")
    assert endpoint == "http://127.0.0.1:8091#price=1000000&per=request"
    assert parse_endpoint(endpoint) == ("http://127.0.0.1:8091", PRICE)
    assert parse_endpoint("http://h:1") == ("http://h:1", None)
    assert parse_endpoint("http://h:1#price=x") == ("http://h:1", None)
    assert parse_endpoint("http://h:1#price=5&per=century") == ("http://h:1", None)
    assert (
        Price.parse("1/item").attach(endpoint) == "http://127.0.0.1:8091#price=1000000000&per=item"
    )


def test_costs_follow_the_unit() -> None:
    texts = {"texts": ["abcd", "abcdefgh", "x"]}
    chat = {"messages": [{"role": "user", "content": "x" * 10}], "max_tokens": 20}
    assert PRICE.compute_cost("embedding", texts) == 1_000_000
    assert Price(amount=7, per="item").compute_cost("embedding", texts) == 21
    assert Price(amount=7, per="item").compute_cost("generation", chat) == 7
    # 13 characters -> 4 tokens; 10 characters -> 3 tokens, plus 20 to generate.
    assert Price(amount=1000, per="1k-tokens").compute_cost("embedding", texts) == 4
    assert Price(amount=1000, per="1k-tokens").compute_cost("generation", chat) == 23
    assert Price(amount=1, per="1k-tokens").compute_cost("generation", chat) == 1  # rounded up
    assert Price(amount=5, per="item").compute_cost("embedding", "not a request") == 5


# --- a real node ---------------------------------------------------------------------------------


def run(work: Callable[[NodeClient], Awaitable[T]], url: str) -> T:
    async def main() -> T:
        async with NodeClient(url) as client:
            return await work(client)

    return asyncio.run(main())


async def send(client: NodeClient, key: Keypair, body: Any) -> dict[str, Any]:
    return await submit_and_wait(client, key, body, type(body).__name__)


async def open_channel(
    client: NodeClient, payer: Keypair, payee: Keypair, netuid: int, deposit: int, blocks: int
) -> bytes:
    nonce = (await client.get_account(payer.address))["next_nonce"]
    head = (await client.get_head())["height"]
    body = OpenChannel(
        payee=Address(payee.public_key), netuid=netuid, deposit=deposit, expiry=head + blocks
    )
    await send(client, payer, body)
    return compute_channel_id(Address(payer.public_key), nonce)


async def advance(client: NodeClient, blocks: int) -> None:
    for _ in range(blocks):
        await send(client, FILLER, Transfer(recipient=Address(SINK.public_key), amount=1))


class Setup:
    def __init__(self, node: NodeProcess, netuid: int, channels: dict[str, bytes]) -> None:
        self.node = node
        self.netuid = netuid
        self.channels = channels

    def gate(
        self, client: NodeClient, store: VoucherStore | None = None, **settings: Any
    ) -> PaymentGate:
        config = PaymentGateConfig(
            hotkey=MINER,
            netuid=self.netuid,
            task_kind="embedding",
            price=PRICE,
            chain_id=DEV_CHAIN_ID,
            **settings,
        )
        return PaymentGate(config, client, store)

    def claimed(self, channel: str) -> int:
        info = self.node.get_json(f"/v1/channels/0x{self.channels[channel].hex()}")
        return int(info["claimed"])


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    processes = NodeProcesses(tmp_path_factory.mktemp("logs"))
    try:
        node = processes.run(tmp_path_factory.mktemp("node"))

        async def prepare(client: NodeClient) -> Setup:
            body = CreateSubnet(task_kind="embedding", task_config="{}", owner_hotkey=NO_HOTKEY)
            await send(client, OWNER, body)
            netuid = max(
                s["netuid"] for s in (await client.request("GET", "/v1/subnets"))["subnets"]
            )
            for hotkey in (MINER, OTHER_MINER):
                await send(
                    client, OWNER, Register(netuid=netuid, hotkey=Address(hotkey.public_key))
                )
            await send(
                client, OWNER, Transfer(recipient=Address(MINER.public_key), amount=10 * AGR)
            )
            channels = {
                "main": await open_channel(client, PAYER, MINER, netuid, AGR, 1_000),
                "second": await open_channel(client, PAYER, MINER, netuid, AGR, 1_000),
                "other-miner": await open_channel(client, PAYER, OTHER_MINER, netuid, AGR, 1_000),
                "attacker": await open_channel(client, ATTACKER, MINER, netuid, AGR, 1_000),
                "small": await open_channel(client, PAYER, MINER, netuid, 2_500_000, 1_000),
                "short": await open_channel(client, PAYER, MINER, netuid, AGR, 50),
                "holds": await open_channel(client, PAYER, MINER, netuid, AGR, 1_000),
                "verdict-after-restart": await open_channel(
                    client, PAYER, MINER, netuid, AGR, 1_000
                ),
            }
            return Setup(node, netuid, channels)

        yield run(prepare, node.url)
    finally:
        processes.stop_all()


def voucher(channel_id: bytes, cumulative: int, key: Keypair = PAYER) -> Voucher:
    return sign_voucher(DEV_CHAIN_ID, channel_id, cumulative, key.sign)


def payment(channel_id: bytes, cumulative: int, key: Keypair = PAYER) -> dict[str, Any]:
    return make_payment(voucher(channel_id, cumulative, key))


def test_every_bad_payment_is_refused_with_its_code(setup: Setup) -> None:
    main, price = setup.channels["main"], PRICE.amount

    async def attacks(client: NodeClient) -> None:
        gate = setup.gate(client)

        async def refused(error: type[AgoraError], payer: Keypair, paid: Any) -> None:
            with pytest.raises(error) as caught:
                await gate.reserve(payer.public_key, paid, REQUEST)
            assert caught.value.code == error.code
            assert getattr(caught.value, "http_status", 0) in (400, 402, 403)

        await refused(PaymentRequired, PAYER, None)
        await refused(MalformedPayment, PAYER, {"voucher": {"channel_id": "0x00"}})
        await refused(MalformedPayment, PAYER, {"cheque": 1})
        await refused(UnknownChannel, PAYER, payment(b"\x01" * 32, price))
        await refused(WrongPayee, PAYER, payment(setup.channels["other-miner"], price))
        # The attacker's own channel, or the payer's voucher sent by the attacker.
        await refused(NotChannelPayer, PAYER, payment(setup.channels["attacker"], price, ATTACKER))
        await refused(NotChannelPayer, ATTACKER, payment(main, price))
        await refused(InvalidVoucher, PAYER, payment(main, price, key=ATTACKER))  # forged
        relabelled = voucher(setup.channels["second"], price)
        moved = Voucher(channel_id=main, cumulative=price, signature=relabelled.signature)
        await refused(InvalidVoucher, PAYER, make_payment(moved))
        altered = voucher(main, price)
        raised = Voucher(channel_id=main, cumulative=10 * price, signature=altered.signature)
        await refused(InvalidVoucher, PAYER, make_payment(raised))
        await refused(InsufficientPayment, PAYER, payment(main, price - 1))
        await refused(VoucherExceedsDeposit, PAYER, payment(main, AGR + 1))

        # One good request, settled; the same voucher again is a replay.
        served = await gate.reserve(PAYER.public_key, payment(main, price), REQUEST)
        await gate.settle(served)
        with pytest.raises(VoucherReplayed) as replay:
            await gate.reserve(PAYER.public_key, payment(main, price), REQUEST)
        assert (replay.value.served, replay.value.required) == (price, 2 * price)
        assert replay.value.message.endswith(f"(served: {price}, required: {2 * price})")
        with pytest.raises(InsufficientPayment) as short:
            await gate.reserve(PAYER.public_key, payment(main, 2 * price - 1), REQUEST)
        assert (short.value.served, short.value.required) == (price, 2 * price)
        assert short.value.message.endswith(f"(served: {price}, required: {2 * price})")

        book = gate.channels[main]
        assert (book.consumed, book.best_amount, book.pending) == (price, price, {})
        assert gate.get_earned()["claimable"] == price
        assert await gate.claim_all() == [main]

    run(attacks, setup.node.url)
    assert setup.claimed("main") == PRICE.amount  # the one request served, nothing else


def test_a_failed_request_costs_nothing(setup: Setup) -> None:
    channel, price = setup.channels["second"], PRICE.amount

    async def work(client: NodeClient) -> ChannelBook:
        gate = setup.gate(client)
        failed = await gate.reserve(PAYER.public_key, payment(channel, price), REQUEST)
        gate.release(failed)  # the work failed
        again = await gate.reserve(PAYER.public_key, payment(channel, price), REQUEST)
        await gate.settle(again)

        async def request_that_fails() -> None:
            await gate.reserve(PAYER.public_key, payment(channel, 2 * price), REQUEST)
            raise RuntimeError("the model failed")  # a handler that never settles

        with pytest.raises(RuntimeError):
            await asyncio.create_task(request_that_fails())
        await asyncio.sleep(0)  # the ended task's callbacks run
        third = await gate.reserve(PAYER.public_key, payment(channel, 2 * price), REQUEST)
        await gate.settle(third)
        await gate.claim_all()
        return gate.channels[channel]

    book = run(work, setup.node.url)
    assert (book.consumed, book.claimed, book.pending) == (2 * PRICE.amount, 2 * PRICE.amount, {})
    assert setup.claimed("second") == 2 * PRICE.amount


def hold(channel_id: bytes, cumulative: int) -> dict[str, Any]:
    return make_payment(Hold(channel_id=channel_id, cumulative=cumulative))


def test_holds_are_paid_only_when_their_payer_accepts_them(setup: Setup, tmp_path: Path) -> None:
    """Three requests on credit (the seller's limit), a fourth refused; a bad verdict of every
    kind changes nothing; the verdict pays the one accepted with its voucher, kept on disk, and
    frees the rejected one's amount for the next voucher, not its credit. Only the accepted
    and the paid work is claimed."""
    channel, price = setup.channels["holds"], PRICE.amount

    async def work(client: NodeClient) -> tuple[ChannelBook, list[Voucher]]:
        store = VoucherStore(tmp_path / "vouchers.sqlite")
        gate = setup.gate(client, store, credit=3 * price)
        first, second, third = [
            await gate.reserve(PAYER.public_key, hold(channel, n * price), REQUEST)
            for n in (1, 2, 3)
        ]
        with pytest.raises(CreditRefused) as refused:
            await gate.reserve(PAYER.public_key, hold(channel, 4 * price), REQUEST)
        assert (refused.value.code, refused.value.http_status) == (3535, 402)
        await gate.settle(first)
        await gate.settle(second)
        gate.release(first)  # the end of the request's task: a hold done waits for its verdict
        gate.release(third)  # its work failed
        book = gate.channels[channel]
        assert set(book.pending) == {first.id, second.id} == set(book.awaiting)
        earned = {"served": 0, "claimable": 0, "claimed": 0, "held": 2 * price}
        assert gate.get_earned() == earned

        accept = voucher(channel, 2 * price)
        rejected = Hold(channel_id=channel, cumulative=price)
        bad_verdicts: list[tuple[Keypair, Any, type[AgoraError]]] = [
            (ATTACKER, make_verdict([accept], [rejected]), NotChannelPayer),
            (PAYER, make_verdict([voucher(channel, 2 * price, ATTACKER)], []), InvalidVoucher),
            (PAYER, make_verdict([voucher(channel, AGR + 1)], []), VoucherExceedsDeposit),
            (
                PAYER,
                make_verdict([voucher(setup.channels["other-miner"], price)], []),
                NotChannelPayer,
            ),
            (PAYER, {"accept": [], "reject": [], "more": []}, MalformedPayment),
            (PAYER, {"accept": [{"channel_id": "0x00"}], "reject": []}, MalformedPayment),
            (PAYER, {"accept": [], "reject": [{"cumulative": -1}]}, MalformedPayment),
        ]
        for caller, verdict, error in bad_verdicts:
            with pytest.raises(error):
                await gate.resolve(caller.public_key, verdict)
            assert gate.get_earned() == earned and store.load() == []

        verdict = make_verdict([accept], [rejected])
        assert await gate.resolve(PAYER.public_key, verdict) == {"accepted": 1, "rejected": 1}
        assert await gate.resolve(PAYER.public_key, verdict) == {"accepted": 0, "rejected": 0}
        assert gate.get_earned() == {
            "served": price,
            "claimable": 2 * price,
            "claimed": 0,
            "held": 0,
        }
        assert store.load() == [accept]  # on disk before the verdict is answered
        # The rejected request's amount pays the payer's next request.
        await gate.settle(
            await gate.reserve(PAYER.public_key, payment(channel, 2 * price), REQUEST)
        )

        # A hold never given a verdict is forgotten at its deadline: the seller lost it.
        forgotten = await gate.reserve(PAYER.public_key, hold(channel, 3 * price), REQUEST)
        await gate.settle(forgotten)
        now = asyncio.get_running_loop().time()
        assert await gate.expire_holds(now) == []
        assert await gate.expire_holds(now + HOLD_TIMEOUT_S + 1) == [forgotten]
        # Rejected and expired work stays against the payer, on all its channels: one more
        # request's worth of credit is left, not three.
        assert gate.books.written_off == {PAYER.public_key: 2 * price}
        second = setup.channels["second"]
        other = await gate.reserve(PAYER.public_key, hold(second, AGR // 2), REQUEST)
        with pytest.raises(CreditRefused):
            await gate.reserve(PAYER.public_key, hold(channel, 4 * price), REQUEST)
        gate.release(other)
        await gate.settle(
            await gate.reserve(PAYER.public_key, payment(channel, 3 * price), REQUEST)
        )
        assert await gate.claim_all() == [channel]
        kept = store.load()
        # A restart does not give the payer its credit back.
        restarted = setup.gate(client, store, credit=3 * price)
        await restarted.recover()
        assert restarted.books.written_off == {PAYER.public_key: 2 * price}
        await restarted.reserve(PAYER.public_key, hold(channel, 4 * price), REQUEST)
        with pytest.raises(CreditRefused):
            await restarted.reserve(PAYER.public_key, hold(channel, 5 * price), REQUEST)
        store.close()
        return gate.channels[channel], kept

    book, kept = run(work, setup.node.url)
    assert (book.consumed, book.claimed, book.pending, book.awaiting) == (
        3 * price,
        3 * price,
        {},
        {},
    )
    assert [v.cumulative for v in kept] == [3 * price]
    assert setup.claimed("holds") == 3 * price  # three requests accepted or paid, of five


def test_a_verdict_reaching_a_restarted_seller_still_pays(setup: Setup, tmp_path: Path) -> None:
    """A kill loses the holds (work on credit is not on disk); the verdict's voucher that
    comes after the restart matches none, and is still kept, on disk, and claimed."""
    channel, price = setup.channels["verdict-after-restart"], PRICE.amount

    async def work(client: NodeClient) -> None:
        killed = setup.gate(client, VoucherStore(tmp_path / "vouchers.sqlite"), credit=price)
        await killed.settle(await killed.reserve(PAYER.public_key, hold(channel, price), REQUEST))
        assert killed.store is not None and killed.store.load() == []
        killed.store.close()
        store = VoucherStore(tmp_path / "vouchers.sqlite")
        restarted = setup.gate(client, store, credit=price)
        assert await restarted.recover() == 0
        verdict = make_verdict([voucher(channel, price)], [])
        assert await restarted.resolve(PAYER.public_key, verdict) == {"accepted": 0, "rejected": 0}
        assert store.load() == [voucher(channel, price)]
        assert await restarted.claim_all() == [channel]
        store.close()

    run(work, setup.node.url)
    assert setup.claimed("verdict-after-restart") == PRICE.amount


def test_a_seller_without_credit_refuses_holds(setup: Setup) -> None:
    """Before anything is read from the chain (the channel here does not even exist)."""

    async def work(client: NodeClient) -> None:
        gate = setup.gate(client)
        for channel in (setup.channels["holds"], b"\x01" * 32):
            with pytest.raises(CreditRefused):
                await gate.reserve(PAYER.public_key, hold(channel, PRICE.amount), REQUEST)
        assert gate.channels == {}

    run(work, setup.node.url)


def test_the_deposit_and_expiry_are_read_again_when_they_matter(setup: Setup) -> None:
    small, short, price = setup.channels["small"], setup.channels["short"], PRICE.amount

    async def work(client: NodeClient) -> None:
        gate = setup.gate(client, head_max_age_s=0.0, head_stale_s=0.0)
        first = await gate.reserve(PAYER.public_key, payment(small, 2 * price), REQUEST)
        await gate.settle(first)
        with pytest.raises(VoucherExceedsDeposit):
            await gate.reserve(PAYER.public_key, payment(small, 3 * price), REQUEST)
        await send(client, PAYER, TopUpChannel(channel_id=small, amount=AGR, expiry=0))
        await gate.settle(await gate.reserve(PAYER.public_key, payment(small, 3 * price), REQUEST))

        head = (await client.get_head())["height"]
        info = await client.get_channel(short)
        await advance(client, max(0, info["expiry"] - EXPIRY_MARGIN_BLOCKS - head))
        with pytest.raises(ChannelExpiring):
            await gate.reserve(PAYER.public_key, payment(short, price), REQUEST)
        # Extended by its payer, it serves again; closed after expiry, it never does.
        await send(client, PAYER, TopUpChannel(channel_id=short, amount=0, expiry=head + 500))
        await gate.settle(await gate.reserve(PAYER.public_key, payment(short, price), REQUEST))
        assert await gate.claim_all() == [small, short]

    run(work, setup.node.url)
    assert setup.claimed("small") == 3 * PRICE.amount
    assert setup.claimed("short") == PRICE.amount


def test_run_claims_before_the_channel_expires(setup: Setup) -> None:
    price = PRICE.amount

    async def work(client: NodeClient) -> tuple[int, int]:
        # A channel that expires 40 blocks from now.
        fresh = await open_channel(client, PAYER, MINER, setup.netuid, AGR, 40)
        gate = setup.gate(
            client, claim_interval_s=3_600, poll_interval_s=0.05, head_max_age_s=0, head_stale_s=0
        )
        for amount in (price, 2 * price):
            await gate.settle(await gate.reserve(PAYER.public_key, payment(fresh, amount), REQUEST))
        stop = asyncio.Event()
        running = asyncio.create_task(gate.run(stop))
        await asyncio.sleep(0.3)  # polls, far from expiry: nothing is claimed yet
        before = (await client.get_channel(fresh))["claimed"]
        expiry = (await client.get_channel(fresh))["expiry"]
        head = (await client.get_head())["height"]
        await advance(client, expiry - 2 * EXPIRY_MARGIN_BLOCKS - head)
        for _ in range(200):
            if (await client.get_channel(fresh))["claimed"] == 2 * price:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await running
        # The payer closes once expired: it takes back the rest, nothing more is owed.
        await advance(client, expiry - (await client.get_head())["height"])
        await send(client, PAYER, CloseChannel(channel_id=fresh))
        after = await client.get_channel(fresh)
        return before, after["claimed"]

    before, after = run(work, setup.node.url)
    assert (before, after) == (0, 2 * PRICE.amount)

    async def closed(client: NodeClient) -> None:
        gate = setup.gate(client)
        info = await client.list_channels(payer=PAYER.address)
        shut = next(bytes.fromhex(c["id"][2:]) for c in info if c["closed"])
        with pytest.raises(ChannelClosed):
            await gate.reserve(PAYER.public_key, payment(shut, 3 * PRICE.amount), REQUEST)

    run(closed, setup.node.url)


def test_a_new_gate_recovers_the_kept_vouchers_and_forgets_the_dead_ones(
    setup: Setup, tmp_path: Path
) -> None:
    """What one gate settled is on disk; a gate started later on the same store claims it and
    counts it as served. A voucher whose channel was closed meanwhile, or that names no
    channel on this chain, is forgotten."""
    price, path = PRICE.amount, tmp_path / "vouchers.sqlite"
    kept = b""

    async def work(client: NodeClient) -> tuple[int, list[bytes], int]:
        nonlocal kept
        kept = await open_channel(client, PAYER, MINER, setup.netuid, AGR, 1_000)
        closing = await open_channel(client, PAYER, MINER, setup.netuid, AGR, 30)
        store = VoucherStore(path)
        gate = setup.gate(client, store)
        for channel, amount in ((kept, price), (kept, 2 * price), (closing, price)):
            await gate.settle(
                await gate.reserve(PAYER.public_key, payment(channel, amount), REQUEST)
            )
        store.save(voucher(bytes(32), price))  # no such channel
        store.close()  # the gate is gone without a claim: the process was killed
        expiry = (await client.get_channel(closing))["expiry"]
        await advance(client, expiry - (await client.get_head())["height"])
        await send(client, PAYER, CloseChannel(channel_id=closing))

        store = VoucherStore(path)
        later = setup.gate(client, store)
        unclaimed = await later.recover()
        remaining = [v.channel_id for v in store.load()]
        with pytest.raises(VoucherReplayed):
            await later.reserve(PAYER.public_key, payment(kept, 2 * price), REQUEST)
        assert await later.claim_all() == [kept]
        store.close()
        return unclaimed, remaining, (await client.get_channel(kept))["claimed"]

    unclaimed, remaining, claimed = run(work, setup.node.url)
    assert unclaimed == 2 * price
    assert remaining == [kept]
    assert claimed == 2 * price


# --- the credit rule, on random traffic --------------------------------------------------------


def make_book(consumed: int = 0) -> ChannelBook:
    return ChannelBook(
        payer=PAYER.public_key,
        payee=MINER.public_key,
        netuid=1,
        deposit=10**12,
        expiry=10**9,
        closed=False,
        claimed=consumed,
        consumed=consumed,
    )


def offline_books() -> PaymentBooks:
    """The gate's pure part (``admit``/``settle``/``release``): never reaches a node."""
    return PaymentBooks(payee=MINER.public_key, netuid=1, price=PRICE, chain_id=DEV_CHAIN_ID)


CHANNEL = b"\x07" * 32


def fake_voucher(amount: int) -> Voucher:
    return Voucher(channel_id=CHANNEL, cumulative=amount, signature=b"\x00" * 64)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 60), st.integers(1, 6)), max_size=60))
def test_whatever_a_payer_sends_the_best_voucher_covers_the_work(
    ops: list[tuple[int, int, int]],
) -> None:
    books = offline_books()
    book = books.channels[CHANNEL] = make_book()
    pending = []
    for op, amount, cost in ops:
        if op <= 1:
            try:
                pending.append(books.admit(book, fake_voucher(amount), cost))
            except (InsufficientPayment, VoucherReplayed):
                pass
        elif pending:
            reservation = pending.pop(amount % len(pending))
            (books.settle if op == 2 else books.release)(reservation)
        assert book.best_amount >= book.consumed
    for reservation in pending:
        books.settle(reservation)
        assert book.best_amount >= book.consumed


def make_payer(committed: int) -> PaidChannel:
    """The gateway's side of the channel ``make_book`` keeps the seller's side of."""
    record = ChannelRecord(
        channel_id=CHANNEL,
        payer="p",
        payee="q",
        netuid=1,
        deposit=10**12,
        expiry=10**9,
        committed=committed,
        closed=False,
        refund=0,
    )
    return PaidChannel(record=record, payee=MINER.public_key)


@settings(max_examples=300, deadline=None)
@given(st.randoms(use_true_random=False), st.integers(1, 60))
def test_an_honest_payer_is_never_refused_and_pays_its_successes(
    rng: random.Random, steps: int
) -> None:
    """The gateway's voucher rule against the gate's, in any arrival order, any failures."""
    books = offline_books()
    book = books.channels[CHANNEL] = make_book(consumed=5)
    payer = make_payer(committed=5)
    in_transit: list[tuple[int, int, int]] = []  # (ticket, amount, cost)
    arrived: list[tuple[int, Any]] = []
    failures = 0
    for ticket in range(steps * 3):
        move = rng.randrange(3)
        if move == 0 or not (in_transit or arrived):
            cost = rng.randint(1, 4)
            amount = compute_next_amount(payer) + cost
            payer.in_flight[ticket] = (amount, cost)
            in_transit.append((ticket, amount, cost))
        elif move == 1 and in_transit:
            number, amount, cost = in_transit.pop(rng.randrange(len(in_transit)))
            arrived.append((number, books.admit(book, fake_voucher(amount), cost)))  # never raises
        elif arrived:
            number, reservation = arrived.pop(rng.randrange(len(arrived)))
            _, cost = payer.in_flight.pop(number)
            if rng.random() < 0.3:
                books.release(reservation)
                failures += 1
            else:
                books.settle(reservation)
                payer.record = _committed(payer.record, cost)
    for number, amount, cost in in_transit:
        arrived.append((number, books.admit(book, fake_voucher(amount), cost)))
    for number, reservation in arrived:
        _, cost = payer.in_flight.pop(number)
        books.settle(reservation)
        payer.record = _committed(payer.record, cost)
    assert book.consumed == payer.record.committed
    assert book.best_amount >= book.consumed
    if failures == 0:
        assert book.best_amount == book.consumed
    assert compute_sufficient_amount(book, 1) == book.consumed + 1


def _committed(record: ChannelRecord, cost: int) -> ChannelRecord:
    return replace(record, committed=record.committed + cost)


def test_a_voucher_sent_twice_at_once_pays_once() -> None:
    books = offline_books()
    book = books.channels[CHANNEL] = make_book()
    books.admit(book, fake_voucher(PRICE.amount), PRICE.amount)
    with pytest.raises(InsufficientPayment):
        books.admit(book, fake_voucher(PRICE.amount), PRICE.amount)


def test_out_of_order_arrivals_are_admitted() -> None:
    books = offline_books()
    book = books.channels[CHANNEL] = make_book()
    price = PRICE.amount
    second = books.admit(book, fake_voucher(2 * price), price)
    first = books.admit(book, fake_voucher(price), price)
    books.release(second)  # the later voucher's request fails, the earlier one succeeds
    books.settle(first)
    assert (book.consumed, book.best_amount) == (price, price)


@settings(max_examples=300, deadline=None)
@given(st.randoms(use_true_random=False), st.integers(1, 60))
def test_with_holds_an_honest_payer_is_never_refused_and_pays_what_it_accepts(
    rng: random.Random, steps: int
) -> None:
    """The gateway's channel manager (holds, verdicts, failures, in any arrival order) against
    the gate's books: no refusal; the work the payer accepted is exactly what the seller
    counts as served, and the best voucher covers it."""
    books = offline_books()
    books.credit = 10**9
    book = books.channels[CHANNEL] = make_book()
    payer = make_payer(committed=0)
    in_transit: list[tuple[int, int, int, bool]] = []  # ticket, amount, cost, held
    arrived: list[tuple[int, Any]] = []
    awaiting: list[tuple[int, Any]] = []  # holds done, waiting for their verdict
    for ticket in range(steps * 4):
        move = rng.randrange(4)
        if move == 0 or not (in_transit or arrived or awaiting):
            cost, held = rng.randint(1, 4), rng.random() < 0.5
            amount = compute_next_amount(payer) + cost
            payer.in_flight[ticket] = (amount, cost)
            in_transit.append((ticket, amount, cost, held))
        elif move == 1 and in_transit:
            number, amount, cost, held = in_transit.pop(rng.randrange(len(in_transit)))
            paid = Hold(channel_id=CHANNEL, cumulative=amount) if held else fake_voucher(amount)
            arrived.append((number, books.admit(book, paid, cost)))  # never raises
        elif move == 2 and arrived:
            number, reservation = arrived.pop(rng.randrange(len(arrived)))
            if rng.random() < 0.3:
                books.release(reservation)
                del payer.in_flight[number]
            elif reservation.held:
                books.hold(reservation, 0.0)
                awaiting.append((number, reservation))
            else:
                books.settle(reservation)
                payer.record = _committed(payer.record, payer.in_flight.pop(number)[1])
        elif awaiting:
            number, reservation = awaiting.pop(rng.randrange(len(awaiting)))
            amount, cost = payer.in_flight.pop(number)
            if rng.random() < 0.5:
                assert books.accept(book, fake_voucher(amount))
                payer.record = _committed(payer.record, cost)
            else:
                assert books.reject(book, amount)
        assert book.best_amount >= book.consumed
    assert book.consumed + sum(r.cost for _, r in awaiting) <= payer.record.committed + sum(
        cost for _, cost in payer.in_flight.values()
    )
    for number, _ in awaiting:
        amount, cost = payer.in_flight.pop(number)
        books.accept(book, fake_voucher(amount))
        payer.record = _committed(payer.record, cost)
    for number, amount, cost, _ in in_transit:
        books.settle(books.admit(book, fake_voucher(amount), cost))
        payer.record = _committed(payer.record, payer.in_flight.pop(number)[1])
    for number, reservation in arrived:
        if reservation.held:
            books.hold(reservation, 0.0)
            books.accept(book, fake_voucher(reservation.cumulative))
        else:
            books.settle(reservation)
        payer.record = _committed(payer.record, payer.in_flight.pop(number)[1])
    assert book.consumed == payer.record.committed
    assert book.best_amount >= book.consumed
    assert book.pending == {} and book.awaiting == {}


# --- the gateway's channels against the gate ---------------------------------------------------


async def start_manager(
    client: NodeClient, store: GatewayStore, payer: Keypair = PAYER
) -> ChannelManager:
    """The gateway's channels of ``payer``: deposits of ten requests, 200-block channels."""
    manager = ChannelManager(
        client=client, payer=payer, store=store, deposit=10 * PRICE.amount, channel_blocks=200
    )
    await manager.start()
    return manager


def test_the_gateways_channels_pay_the_gate_and_recover_a_lost_answer(
    setup: Setup, tmp_path: Path
) -> None:
    """``gateway.channels`` opens a real channel and issues vouchers the gate admits. An answer
    lost after the miner settled it (a timeout) makes the next voucher a replay: the gateway
    adopts the miner's count, as it is no more than a voucher it signed (which the miner could
    claim anyway). After a restart that forgot more than that, it does not take the miner's
    word: it retires the channel and opens another."""
    price = PRICE.amount

    async def work(client: NodeClient) -> tuple[list[ChannelRecord], int]:
        store = GatewayStore(tmp_path / "gateway.db")
        manager = await start_manager(client, store)
        gate = setup.gate(client)

        async def call(succeeded: bool = True, seen: bool = True) -> None:
            ticket = await manager.issue(MINER.public_key, setup.netuid, price)
            try:
                reservation = await gate.reserve(
                    PAYER.public_key, make_payment(ticket.voucher), REQUEST
                )
            except (VoucherReplayed, InsufficientPayment) as error:
                manager.settle(ticket, succeeded=False)
                manager.adopt_served(ticket, error.served)
                return await call(succeeded, seen)
            if succeeded:
                await gate.settle(reservation)
            else:
                gate.release(reservation)
            record = manager.settle(ticket, succeeded=succeeded and seen)
            if record is not None:  # what the gateway stores with the request's receipt
                store.save_channel(record)

        await call()
        await call(succeeded=False)  # a failure: the next voucher repeats the amount
        await call(seen=False)  # settled by the miner, the answer lost on the way
        await call()
        [first] = manager.channels
        assert first.committed == 3 * price

        # A restart that lost two writes: the miner says it served more than the gateway
        # signed since (one voucher, 2 * price): not believed.
        store.save_channel(replace(first, committed=price))
        restarted = await start_manager(client, store)
        manager = restarted
        await call()
        await gate.claim_all()
        records = store.list_channels(PAYER.address)
        store.close()
        return records, (await client.get_channel(first.channel_id))["claimed"]

    records, claimed_first = run(work, setup.node.url)
    retired, fresh = records[-2:]
    assert claimed_first == 3 * PRICE.amount  # what the miner really served there
    assert fresh.channel_id != retired.channel_id and fresh.committed == PRICE.amount


def test_the_gateways_holds_pay_the_gate_only_what_it_accepts(setup: Setup, tmp_path: Path) -> None:
    """``gateway.channels`` issues holds the gate admits on credit; the verdict's voucher pays
    the accepted one, the rejected one's amount goes to the next call. A rejected hold whose
    verdict was not delivered stays under way for the gateway until the gate has forgotten it
    too, so the next voucher covers it and is admitted meanwhile."""
    price = PRICE.amount

    async def work(client: NodeClient) -> tuple[ChannelRecord, int]:
        store = GatewayStore(tmp_path / "gateway.db")
        manager = await start_manager(client, store)
        gate = setup.gate(client, credit=10 * price)

        async def call(held: bool) -> Any:
            ticket = await manager.issue(MINER.public_key, setup.netuid, price, held=held)
            paid = make_payment(ticket.payment)
            await gate.settle(await gate.reserve(PAYER.public_key, paid, REQUEST))
            assert manager.settle(ticket, succeeded=True) is None or not held
            return ticket

        accepted, rejected = await call(held=True), await call(held=True)
        assert (accepted.voucher, rejected.voucher) == (None, None)
        assert (accepted.amount, rejected.amount) == (price, 2 * price)
        verdict = make_verdict([manager.sign_accepted(accepted)], [rejected.payment])
        assert await gate.resolve(PAYER.public_key, verdict) == {"accepted": 1, "rejected": 1}
        record = manager.conclude(accepted, accepted=True, delivered=True)
        assert record is not None and record.committed == price
        assert manager.conclude(rejected, accepted=False, delivered=True) is None
        paid = await call(held=False)
        assert paid.amount == 2 * price  # the rejected call's amount, issued again

        # A verdict lost on the way: the gateway counts the hold under way until the gate's
        # deadline, so its next voucher is admitted whichever way the gate decides.
        lost = await call(held=True)
        manager.conclude(lost, accepted=False, delivered=False)
        after = await call(held=False)
        assert after.amount == 4 * price
        gate.books.expire_holds(asyncio.get_running_loop().time() + HOLD_TIMEOUT_S + 1)
        await gate.claim_all()
        [channel] = manager.channels
        info = await client.get_channel(channel.channel_id)
        store.close()
        return channel, info["claimed"]

    channel, claimed = run(work, setup.node.url)
    assert channel.committed == 3 * PRICE.amount  # the accepted hold and two paid calls
    assert claimed == 4 * PRICE.amount  # the last voucher, covering the lost hold's amount


def test_a_verdict_the_miner_did_not_get_is_sent_again(setup: Setup, tmp_path: Path) -> None:
    """The miner's server is down when the gateway sends its verdict, and back a moment
    later: the verdict, sent again in the background, pays the accepted hold with no later
    call. Until then the hold waits at the miner, unpaid and not written off."""
    price = PRICE.amount

    async def work(client: NodeClient) -> dict[str, int]:
        store = GatewayStore(tmp_path / "gateway.db")
        manager = await start_manager(client, store)
        gate = setup.gate(client, credit=10 * price)
        ticket = await manager.issue(MINER.public_key, setup.netuid, price, held=True)
        reservation = await gate.reserve(PAYER.public_key, make_payment(ticket.payment), REQUEST)
        await gate.settle(reservation)
        manager.settle(ticket, succeeded=True)

        async def verdicts(caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
            return await gate.resolve(caller.hotkey, body)

        server = NeuronServer(MINER, None, NeuronServerConfig())
        server.add_route(VERDICT_ROUTE, verdicts, public=True)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        offer = Offer(
            uid=0,
            hotkey=MINER.public_key,
            address=MINER.address,
            url=f"http://127.0.0.1:{port}",
            price=PRICE,
            incentive=0,
            stake=0,
        )
        neurons = NeuronClient(PAYER)
        gateway = Gateway(
            GatewayConfig(node_url=setup.node.url, data_dir=tmp_path),
            GatewayParts(
                catalog=Catalog(client),
                router=Router(random.Random(1)),
                channels=manager,
                store=store,
                neurons=neurons,
                rng=random.Random(1),
            ),
        )
        trace = Trace()
        trace.calls.append(
            Call(uid=0, miner=offer.address, role="spot", cost=price, latency_ms=1, status="ok")
        )
        trace.holds.append(HeldCall(offer, ticket, 0))
        try:
            await gateway._conclude_holds(trace)  # the miner is down: not delivered
            assert trace.channels[ticket.channel_id].committed == price  # owed all the same
            assert gate.get_earned()["held"] == price
            await server.start("127.0.0.1", port)
            for _ in range(200):
                if gate.get_earned()["held"] == 0:
                    break
                await asyncio.sleep(0.05)
            return gate.get_earned()
        finally:
            await gateway.close()
            await server.stop()
            await neurons.close()
            store.close()

    earned = run(work, setup.node.url)
    assert earned == {"served": price, "claimable": price, "claimed": 0, "held": 0}


class KilledAfterSubmitting(NodeClient):
    """The node client of a gateway killed right after it sent a transaction: nothing after
    the submission runs (the wait for its block is where the kill lands)."""

    async def wait_for_transaction(
        self, tx_hash: bytes, timeout_seconds: float = 30.0, poll_seconds: float = 0.05
    ) -> dict[str, Any]:
        raise asyncio.CancelledError


async def wait_for_channel(client: NodeClient, channel_id: bytes) -> None:
    for _ in range(600):
        with contextlib.suppress(NodeApiError):
            await client.get_channel(channel_id)
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"channel 0x{channel_id.hex()} never opened")


def test_a_gateway_killed_while_opening_a_channel_uses_it_after_its_restart(
    setup: Setup, tmp_path: Path
) -> None:
    """The channel's record is written before its opening is sent: the restarted gateway
    finds the channel on chain and pays with it instead of forgetting its deposit."""
    payer, price = make_keypair("killed-opener"), PRICE.amount

    async def work(client: NodeClient) -> tuple[bytes, list[ChannelRecord]]:
        await send(client, OWNER, Transfer(recipient=Address(payer.public_key), amount=AGR))
        store = GatewayStore(tmp_path / "gateway.db")
        async with KilledAfterSubmitting(setup.node.url) as dying:
            killed = await start_manager(dying, store, payer)
            with pytest.raises(asyncio.CancelledError):
                await killed.issue(MINER.public_key, setup.netuid, price)
        [written] = store.list_channels(payer.address)
        await wait_for_channel(client, written.channel_id)  # the opening reaches its block
        restarted = await start_manager(client, store, payer)
        ticket = await restarted.issue(MINER.public_key, setup.netuid, price)
        records = store.list_channels(payer.address)
        store.close()
        return ticket.channel_id, records

    channel_id, records = run(work, setup.node.url)
    opened = [(r.channel_id, r.closed, r.deposit) for r in records]
    assert opened == [(channel_id, False, 10 * price)]


def test_a_refused_opening_leaves_its_record_closed(setup: Setup, tmp_path: Path) -> None:
    """A payer that cannot fund the deposit: the record written ahead is closed at once."""
    payer, price = make_keypair("unfunded-opener"), PRICE.amount

    async def work(client: NodeClient) -> list[ChannelRecord]:
        store = GatewayStore(tmp_path / "gateway.db")
        manager = await start_manager(client, store, payer)
        with pytest.raises(InsufficientFunds):
            await manager.issue(MINER.public_key, setup.netuid, price)
        records = store.list_channels(payer.address)
        store.close()
        return records

    assert [r.closed for r in run(work, setup.node.url)] == [True]


def test_a_gateway_restarted_while_its_opening_waits_for_a_block_keeps_the_channel(
    tmp_path: Path,
) -> None:
    """Blocks every two seconds: the gateway is killed right after sending an opening and
    started again before the block holds it. Its start waits for the opening instead of
    closing the record, and the next call pays on that channel."""
    payer, price = make_keypair("restarted-before-the-block"), PRICE.amount
    processes = NodeProcesses(tmp_path / "logs")

    async def work(client: NodeClient) -> tuple[bool, bytes, list[ChannelRecord]]:
        create = CreateSubnet(task_kind="embedding", task_config="{}", owner_hotkey=NO_HOTKEY)
        await send(client, OWNER, create)
        await send(client, OWNER, Register(netuid=1, hotkey=Address(MINER.public_key)))
        await send(client, OWNER, Transfer(recipient=Address(payer.public_key), amount=AGR))
        head = (await client.get_head())["height"]
        while (await client.get_head())["height"] == head:  # just after a block: 2 s to go
            await asyncio.sleep(0.02)
        store = GatewayStore(tmp_path / "gateway.db")
        async with KilledAfterSubmitting(client.base_url) as dying:
            killed = await start_manager(dying, store, payer)
            with pytest.raises(asyncio.CancelledError):
                await killed.issue(MINER.public_key, 1, price)
        account = await client.get_account(payer.address)
        pending_at_restart = account["nonce"] < account["next_nonce"]
        restarted = await start_manager(client, store, payer)
        ticket = await restarted.issue(MINER.public_key, 1, price)
        records = store.list_channels(payer.address)
        store.close()
        return pending_at_restart, ticket.channel_id, records

    try:
        node = processes.run(tmp_path / "node", block_time_ms=2000)
        pending_at_restart, channel_id, records = run(work, node.url)
    finally:
        processes.stop_all()
    assert pending_at_restart
    assert [(r.channel_id, r.closed, r.deposit) for r in records] == [
        (channel_id, False, 10 * price)
    ]
