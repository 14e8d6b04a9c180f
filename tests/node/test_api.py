"""The node's HTTP API as a client sees it: real node processes, real HTTP on loopback.

Happy paths (submit in JSON and raw form, inclusion, blocks, head, chain, genesis, OpenAPI,
metrics, health, the block stream, the faucet) and bad input: every refusal is a 4xx with
its stable code, and the node's state (head, state root, accounts, pending pool) is the same
before and after it.
"""

from __future__ import annotations

import json
import re
import signal
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from node_helpers import (
    MIN_FEE,
    DevKey,
    NodeProcess,
    NodeProcesses,
    get_dev_keys,
    get_metrics,
    hex_of,
    make_key,
    sign_transfer,
    to_json_form,
    wait_no_pending,
)

from agora.node.api import create_app
from agora.node.devchain import (
    DEV_ACCOUNT_BALANCE,
    FAUCET_ACCOUNT,
    FAUCET_GRANT,
    create_dev_genesis,
)
from agora.node.node import Node, NodeConfig
from agora.node.store import Store
from agora.protocol.transactions import compute_transaction_hash

KEYS = get_dev_keys()
SMALL_BLOCK = 10


@pytest.fixture(scope="module")
def processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcesses]:
    started = NodeProcesses(tmp_path_factory.mktemp("logs"))
    yield started
    started.stop_all()


@pytest.fixture(scope="module")
def node(processes: NodeProcesses, tmp_path_factory: pytest.TempPathFactory) -> NodeProcess:
    """A dev node that seals a block as soon as a transaction waits."""
    return processes.run(tmp_path_factory.mktemp("dev"))


@pytest.fixture(scope="module")
def timed_node(processes: NodeProcesses, tmp_path_factory: pytest.TempPathFactory) -> NodeProcess:
    """A dev node that seals a block every second."""
    return processes.run(tmp_path_factory.mktemp("timed"), block_time_ms=1000)


@pytest.fixture(scope="module")
def idle_node(processes: NodeProcesses, tmp_path_factory: pytest.TempPathFactory) -> NodeProcess:
    """A dev node whose first block is an hour away: what it accepts stays pending."""
    return processes.run(tmp_path_factory.mktemp("idle"), block_time_ms=3_600_000)


@pytest.fixture(scope="module")
def genesis_node(processes: NodeProcesses, tmp_path_factory: pytest.TempPathFactory) -> NodeProcess:
    """A node started from a genesis file (no --dev, so no faucet), with small blocks."""
    directory = tmp_path_factory.mktemp("genesis")
    genesis = directory / "genesis.json"
    document = create_dev_genesis(len(KEYS), 1_763_700_000, {"max_block_transactions": SMALL_BLOCK})
    genesis.write_text(json.dumps(document))
    return processes.run(directory / "data", dev=False, genesis=genesis)


def submit_one(node: NodeProcess, sender: DevKey, recipient: str, amount: int) -> str:
    nonce = node.account(sender.address)["next_nonce"]
    (tx_hash,) = node.submit([sign_transfer(sender, recipient, amount, nonce)])
    return tx_hash


# --- happy paths ---------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["json", "raw"])
def test_a_signed_transfer_is_included_and_moves_funds(node: NodeProcess, form: str) -> None:
    sender, recipient = KEYS[0], make_key(f"recipient-{form}")
    before = node.account(sender.address)
    raw = sign_transfer(sender, recipient.address, 12_345, before["next_nonce"])
    item = to_json_form(raw) if form == "json" else {"raw": hex_of(raw)}

    response = node.post("/v1/transactions", {"transaction": item})

    assert response.status == 202, response.body
    (tx_hash,) = response.json()["hashes"]
    assert tx_hash == hex_of(compute_transaction_hash(raw))
    status = node.wait_included(tx_hash)
    assert status["receipt"] == {
        "hash": tx_hash,
        "success": True,
        "code": 0,
        "message": "",
        "fee_paid": MIN_FEE,
        "sender": sender.address,
    }
    after = node.account(sender.address)
    assert after["balance"] == before["balance"] - 12_345 - MIN_FEE
    assert after["nonce"] == after["next_nonce"] == before["nonce"] + 1
    assert node.account(recipient.address)["balance"] == 12_345


def test_a_transaction_is_pending_until_its_block_then_included(timed_node: NodeProcess) -> None:
    sender, recipient = KEYS[0], make_key("pending-recipient")
    height = timed_node.get_json("/v1/head")["height"]
    # Just after a block is sealed, the next one is a whole block interval away.
    timed_node.wait_height(height + 1)
    tx_hash = submit_one(timed_node, sender, recipient.address, 7)

    assert timed_node.get_json(f"/v1/transactions/{tx_hash}") == {
        "status": "pending",
        "hash": tx_hash,
    }
    assert timed_node.account(sender.address)["next_nonce"] == 1
    assert timed_node.account(recipient.address)["balance"] == 0

    status = timed_node.wait_included(tx_hash, timeout=10)
    assert status["status"] == "included" and status["receipt"]["success"]
    assert status["height"] > height + 1 and status["position"] == 0
    assert timed_node.account(recipient.address)["balance"] == 7


def test_blocks_by_height_and_hash_head_and_pages(node: NodeProcess) -> None:
    tx_hash = submit_one(node, KEYS[1], make_key("blocks").address, 99)
    height = node.wait_included(tx_hash)["height"]

    block = node.get_json(f"/v1/blocks/{height}")
    header = block["header"]
    assert header["height"] == height
    assert tx_hash in block["transaction_hashes"]
    assert [r["hash"] for r in block["receipts"]] == block["transaction_hashes"]
    assert len(block["transactions"]) == len(block["transaction_hashes"])
    assert node.get_json(f"/v1/blocks/{header['hash']}") == block
    parent = node.get_json(f"/v1/blocks/{height - 1}")["header"]
    assert header["parent_hash"] == parent["hash"]

    head = node.get_json("/v1/head")
    assert head == node.get_json(f"/v1/blocks/{head['height']}")["header"]
    page = node.get_json(f"/v1/blocks?from={height - 1}&limit=2")["blocks"]
    assert [b["header"] for b in page] == [parent, header]
    assert "receipts" not in page[0]

    missing = node.get(f"/v1/blocks/{head['height'] + 100}")
    assert (missing.status, missing.error_code) == (404, 3004)
    unknown_hash = node.get(f"/v1/blocks/{hex_of(bytes(32))}")
    assert (unknown_hash.status, unknown_hash.error_code) == (404, 3004)


def test_chain_and_genesis_describe_the_dev_chain(node: NodeProcess) -> None:
    chain = node.get_json("/v1/chain")
    assert chain["chain_id"] == "agora-dev"
    assert chain["params"]["min_fee"] == MIN_FEE
    assert chain["faucet"] is True
    assert chain["height"] >= 0
    genesis = node.get_json("/v1/genesis")
    assert genesis["chain_id"] == "agora-dev"
    assert genesis["balances"][KEYS[0].address] == DEV_ACCOUNT_BALANCE
    assert genesis["balances"][FAUCET_ACCOUNT.address] > 0
    genesis_block = node.get_json("/v1/blocks/0")
    assert genesis_block["header"]["timestamp"] == genesis["timestamp"]
    assert genesis_block["transactions"] == []


def test_openapi_describes_every_route_the_app_serves(node: NodeProcess, tmp_path: Path) -> None:
    store = Store(tmp_path / "node.db")
    state = store.initialize(create_dev_genesis(1, 0))
    app = create_app(Node(NodeConfig(data_dir=tmp_path), store, state))
    served = {
        (route.resource.canonical, route.method.lower())
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    store.close()

    response = node.get("/v1/openapi.json")
    assert response.status == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    described = {(path, method) for path, item in document["paths"].items() for method in item}
    assert described == served
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert operation["summary"] and operation["responses"], (path, method)


def test_metrics_are_prometheus_text(node: NodeProcess) -> None:
    submit_one(node, KEYS[2], make_key("metrics").address, 5)
    wait_no_pending(node)
    response = node.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    text = response.body.decode()
    typed: set[str] = set()
    label = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"'
    labels = rf"\{{{label}(?:,{label})*\}}"
    sample = re.compile(rf"^([a-zA-Z_:][a-zA-Z0-9_:]*)({labels})? (-?[0-9.eE+]+)$")
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
        elif not line.startswith("# "):
            match = sample.match(line)
            assert match is not None, line
            name = match.group(1)
            family = {name, name.removesuffix("_sum"), name.removesuffix("_count")}
            assert family & typed, f"{name} has no TYPE line before it"
    head = node.get_json("/v1/head")
    metrics = get_metrics(node)
    assert metrics["agora_head_height"] == head["height"]
    assert metrics['agora_transactions_total{outcome="success"}'] >= 1
    assert metrics["agora_pending_transactions"] == 0
    assert metrics['agora_http_requests_total{route="/v1/head",status="200"}'] >= 1
    assert 0 <= metrics["agora_up_seconds"] < 3600


def test_health_reports_ok_and_the_height(node: NodeProcess) -> None:
    response = node.get("/health")
    assert response.status == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["height"] == node.get_json("/v1/head")["height"]


def test_the_block_stream_delivers_an_event_for_a_new_block(node: NodeProcess) -> None:
    with urllib.request.urlopen(node.url + "/v1/stream/blocks", timeout=20) as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        tx_hash = submit_one(node, KEYS[3], make_key("stream").address, 11)
        event = read_block_event(stream)
    assert [r["hash"] for r in event["receipts"]] == [tx_hash]
    assert event["receipts"][0]["success"] is True
    stored = node.get_json(f"/v1/blocks/{event['header']['height']}")
    assert event["header"] == stored["header"]


def test_a_node_with_an_open_stream_stops_promptly(
    processes: NodeProcesses, tmp_path: Path
) -> None:
    streaming = processes.run(tmp_path / "node")
    with urllib.request.urlopen(streaming.url + "/v1/stream/blocks", timeout=20) as stream:
        started = time.monotonic()
        streaming.process.send_signal(signal.SIGTERM)
        assert streaming.process.wait(5) == 0
        assert time.monotonic() - started < 5
        assert stream.read() == b""  # the server ended the stream


def read_block_event(stream: Any) -> dict[str, Any]:
    """The next ``block`` event of a server-sent event stream."""
    name = None
    while line := stream.readline():
        text = line.decode().rstrip("\n")
        if text.startswith("event: "):
            name = text.removeprefix("event: ")
        elif text.startswith("data: ") and name == "block":
            event: dict[str, Any] = json.loads(text.removeprefix("data: "))
            return event
    raise AssertionError("the stream ended before a block event")


def test_the_faucet_funds_an_address(node: NodeProcess) -> None:
    recipient = make_key("faucet-recipient")
    faucet_before = node.account(FAUCET_ACCOUNT.address)["balance"]

    response = node.post("/v1/faucet", {"address": recipient.address})

    assert response.status == 202, response.body
    status = node.wait_included(response.json()["hash"])
    assert status["receipt"]["success"]
    assert node.account(recipient.address)["balance"] == FAUCET_GRANT
    assert node.account(FAUCET_ACCOUNT.address)["balance"] == faucet_before - FAUCET_GRANT - MIN_FEE
    smaller = node.post("/v1/faucet", {"address": recipient.address, "amount": 5})
    node.wait_included(smaller.json()["hash"])
    assert node.account(recipient.address)["balance"] == FAUCET_GRANT + 5


def test_a_node_without_dev_has_no_faucet(genesis_node: NodeProcess) -> None:
    response = genesis_node.post("/v1/faucet", {"address": make_key("nobody").address})
    assert (response.status, response.error_code) == (403, 3005)
    assert genesis_node.get_json("/v1/chain")["faucet"] is False
    assert genesis_node.account(make_key("nobody").address)["balance"] == 0


def test_a_batch_larger_than_a_block_is_included_over_several_blocks(
    genesis_node: NodeProcess,
) -> None:
    sender, recipient = KEYS[0], make_key("big-batch").address
    raws = [sign_transfer(sender, recipient, 1, nonce) for nonce in range(SMALL_BLOCK * 2 + 5)]

    hashes = genesis_node.submit(raws)

    heights = [genesis_node.wait_included(h, timeout=10)["height"] for h in hashes]
    assert heights == sorted(heights) and len(set(heights)) == 3
    for height in set(heights):
        assert len(genesis_node.get_json(f"/v1/blocks/{height}")["transactions"]) <= SMALL_BLOCK
    assert genesis_node.account(sender.address)["nonce"] == len(raws)
    assert genesis_node.account(recipient)["balance"] == len(raws)


# --- bad input -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    body: Any = None
    data: bytes | None = None


@dataclass(frozen=True, slots=True)
class BadInput:
    status: int
    code: int
    # Builds the request; may first move the chain (the replay case includes a transaction).
    prepare: Callable[[NodeProcess, DevKey], Request]


BOB = make_key("bob").address


def _next_nonce(node: NodeProcess, sender: DevKey) -> int:
    nonce: int = node.account(sender.address)["next_nonce"]
    return nonce


def _valid(node: NodeProcess, sender: DevKey, amount: int = 5) -> bytes:
    return sign_transfer(sender, BOB, amount, _next_nonce(node, sender))


def _submit_raw(raw: bytes) -> Request:
    return Request("POST", "/v1/transactions", {"transaction": {"raw": hex_of(raw)}})


def _submit_json(item: dict[str, Any]) -> Request:
    return Request("POST", "/v1/transactions", {"transaction": item})


def _with_field(raw: bytes, path: tuple[str, ...], value: Any) -> dict[str, Any]:
    item = to_json_form(raw)
    target = item
    for name in path[:-1]:
        target = target[name]
    target[path[-1]] = value
    return item


def _replayed(node: NodeProcess, sender: DevKey) -> Request:
    raw = _valid(node, sender)
    (tx_hash,) = node.submit([raw])
    node.wait_included(tx_hash)
    return _submit_raw(raw)


def _bad_signature(node: NodeProcess, sender: DevKey) -> Request:
    raw = _valid(node, sender)
    return _submit_raw(raw[:-1] + bytes([raw[-1] ^ 1]))


def _batch_with_one_bad(node: NodeProcess, sender: DevKey) -> Request:
    nonce = _next_nonce(node, sender)
    raws = [sign_transfer(sender, BOB, 5, nonce + offset) for offset in range(3)]
    raws[2] = raws[2][:-1] + bytes([raws[2][-1] ^ 1])
    return Request("POST", "/v1/transactions", {"transactions": [{"raw": hex_of(r)} for r in raws]})


def _oversized(node: NodeProcess, sender: DevKey) -> Request:
    padding = "00" * (1 << 20)
    return Request("POST", "/v1/transactions", {"transaction": {"raw": "0x" + padding}})


BAD_INPUTS = {
    "malformed json": BadInput(
        400, 3001, lambda n, s: Request("POST", "/v1/transactions", data=b'{"transaction": ')
    ),
    "not a submission": BadInput(
        400, 3001, lambda n, s: Request("POST", "/v1/transactions", body={"tx": 1})
    ),
    "nonce as a string": BadInput(
        400, 1001, lambda n, s: _submit_json(_with_field(_valid(n, s), ("nonce",), "0"))
    ),
    "undecodable bytes": BadInput(400, 1001, lambda n, s: _submit_raw(b"AGT1" + bytes(80))),
    "bad signature": BadInput(400, 1101, _bad_signature),
    "wrong chain id": BadInput(
        400,
        1102,
        lambda n, s: _submit_raw(
            sign_transfer(s, BOB, 5, _next_nonce(n, s), chain_id="agora-elsewhere")
        ),
    ),
    "replayed nonce": BadInput(400, 1201, _replayed),
    "future nonce": BadInput(
        400, 1201, lambda n, s: _submit_raw(sign_transfer(s, BOB, 5, _next_nonce(n, s) + 5))
    ),
    "zero amount": BadInput(400, 1003, lambda n, s: _submit_raw(_valid(n, s, amount=0))),
    "negative amount": BadInput(
        400, 1003, lambda n, s: _submit_json(_with_field(_valid(n, s), ("body", "amount"), -5))
    ),
    "amount of 2**64": BadInput(
        400,
        1003,
        lambda n, s: _submit_json(_with_field(_valid(n, s), ("body", "amount"), 2**64)),
    ),
    "fee below minimum": BadInput(
        400,
        1202,
        lambda n, s: _submit_raw(sign_transfer(s, BOB, 5, _next_nonce(n, s), fee=MIN_FEE - 1)),
    ),
    "unknown kind": BadInput(
        400, 1002, lambda n, s: _submit_json(_with_field(_valid(n, s), ("kind",), "teleport"))
    ),
    "oversized body": BadInput(413, 3013, _oversized),
    "bad recipient address": BadInput(
        400,
        1005,
        lambda n, s: _submit_json(_with_field(_valid(n, s), ("body", "recipient"), "agr1qqqqqq")),
    ),
    "bad account address": BadInput(
        400, 1005, lambda n, s: Request("GET", "/v1/accounts/agr1notanaddress")
    ),
    "bad faucet address": BadInput(
        400, 1005, lambda n, s: Request("POST", "/v1/faucet", {"address": "agr1nope"})
    ),
    "unknown route": BadInput(404, 3004, lambda n, s: Request("GET", "/v1/nothing-here")),
    "one bad transaction in a batch": BadInput(400, 1101, _batch_with_one_bad),
}


def observe(node: NodeProcess, sender: DevKey) -> dict[str, Any]:
    """Everything a refused request must leave as it was."""
    return {
        "head": node.get_json("/v1/head"),
        "sender": node.account(sender.address),
        "recipient": node.account(BOB),
        "pending": get_metrics(node)["agora_pending_transactions"],
    }


@pytest.mark.parametrize("case", list(BAD_INPUTS), ids=list(BAD_INPUTS))
def test_bad_input_is_refused_with_its_code_and_changes_nothing(
    node: NodeProcess, case: str
) -> None:
    bad, sender = BAD_INPUTS[case], KEYS[6]
    request = bad.prepare(node, sender)
    wait_no_pending(node)
    before = observe(node, sender)

    if request.method == "GET":
        response = node.get(request.path)
    else:
        response = node.post(request.path, request.body, data=request.data)

    assert response.status == bad.status, response.body
    error = response.json()["error"]
    assert error["code"] == bad.code, error
    assert error["name"] and error["message"]
    assert observe(node, sender) == before
    if request.body and "transactions" in request.body:
        for item in request.body["transactions"]:
            tx_hash = hex_of(compute_transaction_hash(bytes.fromhex(item["raw"][2:])))
            assert node.get(f"/v1/transactions/{tx_hash}").status == 404
    # A valid transaction submitted right after is accepted with the expected nonce.
    (tx_hash,) = node.submit([_valid(node, sender)])
    assert node.wait_included(tx_hash)["receipt"]["success"]


def test_a_refused_batch_leaves_nothing_pending_and_the_next_nonce_as_it_was(
    idle_node: NodeProcess,
) -> None:
    sender = KEYS[5]
    (waiting,) = idle_node.submit([sign_transfer(sender, BOB, 5, 0)])
    valid = sign_transfer(sender, BOB, 5, 1)
    bad = sign_transfer(sender, BOB, 5, 2, fee=MIN_FEE - 1)
    before = observe(idle_node, sender)
    assert before["sender"]["next_nonce"] == 1 and before["pending"] == 1

    response = idle_node.post(
        "/v1/transactions", {"transactions": [{"raw": hex_of(valid)}, {"raw": hex_of(bad)}]}
    )

    assert (response.status, response.error_code) == (400, 1202)
    assert response.json()["error"]["message"].startswith("transactions[1]")
    assert observe(idle_node, sender) == before
    refused = idle_node.get(f"/v1/transactions/{hex_of(compute_transaction_hash(valid))}")
    assert (refused.status, refused.error_code) == (404, 3004)
    assert idle_node.get_json(f"/v1/transactions/{waiting}")["status"] == "pending"
    # The same valid transaction, alone, is then accepted.
    assert idle_node.submit([valid]) == [hex_of(compute_transaction_hash(valid))]
    assert idle_node.account(sender.address)["next_nonce"] == 2
