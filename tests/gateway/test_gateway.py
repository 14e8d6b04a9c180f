"""The developer gateway end to end: real node, real miners with real models, the official
``openai`` client, real payment channels, and the accounts at the end.

One network runs for the whole module (each model is loaded once): a dev node in its own
process (a block as soon as a transaction waits); an embedding subnet with three honest miners
and one that answers noise, all selling at 0.001 AGR a request, and a validator that weights
the honest ones; a generation subnet with one SmolLM2 miner; and ``agora gateway`` paying from
a developer's wallet, with small deposits and short channels so that top-ups, claims before
expiry and closes all happen. In order:
- the OpenAI API through the official client: models, embeddings (one, a batch, base64), a
  chat completion and a streamed one, bad requests and an unknown model;
- verification: spot and redundant answers agree with a miner called directly; a cheating
  miner pinned as the primary is caught by the spot check and outvoted by redundancy;
- receipts over the API and from ``agora gateway receipts``; a second gateway's daily limit;
- attacks at a miner's gate: replayed, another channel's, below the price, forged;
- the accounts: the miners claim before expiry exactly what the receipts say, the gateway
  closes its channels and gets back deposit minus claims, the developer paid the receipts
  plus transaction fees, the fee shares reached the validator and the treasury;
- failover: a miner killed mid-request; the request is answered elsewhere, charged once;
- after everything stops, the node's store passes the supply invariant.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import openai
import pytest
from node_helpers import NodeProcess, NodeProcesses, http, wait_for
from typer.testing import CliRunner

from agora.client.client import NodeClient
from agora.client.participant import submit_and_wait
from agora.gateway.store import GatewayStore
from agora.neuron.client import NeuronClient
from agora.neuron.errors import RemoteError
from agora.node.devchain import DEV_CHAIN_ID, compute_dev_seed
from agora.payments.books import EXPIRY_MARGIN_BLOCKS
from agora.payments.vouchers import make_payment
from agora.protocol.accounts import Transfer
from agora.protocol.address import Address
from agora.protocol.channels import (
    ClaimChannel,
    OpenChannel,
    Voucher,
    compute_channel_id,
    compute_claim_split,
    sign_voucher,
)
from agora.protocol.invariants import check_invariants
from agora.protocol.params import BASE_UNITS_PER_AGR, Params
from agora.protocol.staking import AddStake
from agora.protocol.subnets import (
    NO_HOTKEY,
    CreateSubnet,
    Register,
    SetHyperparameter,
    is_epoch_block,
)
from agora.protocol.transactions import decode_transaction
from agora.protocol.weights import SetWeights
from agora.wallet.keys import Keypair
from agora.wallet.keystore import KDF_PRESETS, Keystore

pytestmark = pytest.mark.slow

T = TypeVar("T")
AGR = BASE_UNITS_PER_AGR
PRICE = 1_000_000  # 0.001 AGR a request
PASSWORD = "agora-gateway-test"
EMBEDDING_MODEL = "all-MiniLM-L6-v2"
CHAT_MODEL = "SmolLM2-135M-Instruct"
HONEST = ("embed-0", "embed-1", "embed-2")
CHEAT = "embed-cheat"
CHAT = "chat-0"
NO_CREDIT = "embed-1"
MINERS = (*HONEST, CHEAT, CHAT)
OWNER = Keypair(compute_dev_seed("dev0"))
FUNDER = Keypair(compute_dev_seed("dev1"))
VALIDATOR_COLDKEY = Keypair(compute_dev_seed("dev3"))
ATTACKER = Keypair(compute_dev_seed("dev4"))
FILLER = Keypair(compute_dev_seed("dev7"))
VALIDATOR = Keypair(hashlib.sha256(b"agora-gateway-test:validator").digest())
SINK = Address(hashlib.sha256(b"agora-gateway-test:sink").digest())
MIN_FEE = Params().min_fee
READY_TIMEOUT_S = 600.0
CHANNEL_BLOCKS = 120
FROZEN_TEMPO = 50_000  # no epoch on the embedding subnet until the accounting test wants one


# --- plumbing ------------------------------------------------------------------------------------


def on_chain(url: str, work: Callable[[NodeClient], Awaitable[T]]) -> T:
    async def main() -> T:
        async with NodeClient(url) as client:
            return await work(client)

    return asyncio.run(main())


async def send(client: NodeClient, key: Keypair, body: Any) -> dict[str, Any]:
    return await submit_and_wait(client, key, body, type(body).__name__)


async def advance(client: NodeClient, blocks: int) -> None:
    for _ in range(max(0, blocks)):
        await send(client, FILLER, Transfer(recipient=SINK, amount=1))


def gateway_command() -> list[str]:
    """`agora gateway`, or the command's own module until the CLI wires it in."""
    from agora.cli.main import app

    wired = any(group.name == "gateway" for group in app.registered_groups)
    module = ["-m", "agora"] if wired else ["-m", "agora.cli.gateway"]
    return [sys.executable, *module, "gateway"]


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(60)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode


@dataclass
class Network:
    node: NodeProcess
    root: Path
    netuids: dict[str, int]
    processes: dict[str, Process] = field(default_factory=dict)
    hotkeys: dict[str, Keypair] = field(default_factory=dict)
    coldkeys: dict[str, Keypair] = field(default_factory=dict)
    uids: dict[str, int] = field(default_factory=dict)
    endpoints: dict[str, str] = field(default_factory=dict)
    gateway_url: str = ""
    gateway_data: Path = Path()
    start_height: int = 0
    before: dict[str, dict[str, int]] = field(default_factory=dict)
    attack_channels: dict[bytes, int] = field(default_factory=dict)

    @property
    def wallets(self) -> Path:
        return self.root / "wallets"

    def env(self) -> dict[str, str]:
        return os.environ | {
            "AGORA_WALLET_PASSWORD": PASSWORD,
            "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }

    def start(self, name: str, argv: list[str]) -> Process:
        log = self.root / f"{name}.log"
        with log.open("wb") as handle:
            popen = subprocess.Popen(
                argv,
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env(),
            )
        process = self.processes[name] = Process(name, popen, log)
        return process

    def start_gateway(self, name: str, wallet: str, data: Path, *extra: str) -> str:
        argv = [*gateway_command(), "--wallet", wallet, "--wallet-dir", str(self.wallets)]
        argv += ["--node", self.node.url, "--port", "0", "--data-dir", str(data), *extra]
        process = self.start(name, argv)

        def url() -> str | None:
            assert process.popen.poll() is None, process.output()
            found = re.search(r"OpenAI API at (http://127\.0\.0\.1:\d+/v1)", process.output())
            return None if found is None else found.group(1)

        return str(wait_for(url, 120, f"{name} to serve", poll=0.1))

    def client(self, url: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=url or self.gateway_url, api_key="unused", max_retries=0, timeout=300
        )

    def account(self, address: str) -> dict[str, int]:
        account = self.node.get_json(f"/v1/accounts/{address}")
        return {"balance": account["balance"], "nonce": account["nonce"]}

    def metagraph(self, netuid: int) -> dict[str, Any]:
        graph: dict[str, Any] = self.node.get_json(f"/v1/subnets/{netuid}/metagraph")
        return graph

    def receipts(self, url: str | None = None, **query: Any) -> list[dict[str, Any]]:
        text = "&".join(f"{key}={value}" for key, value in query.items())
        answer = http("GET", f"{url or self.gateway_url}/agora/receipts?{text}")
        assert answer.status == 200, answer.body
        data: list[dict[str, Any]] = answer.json()["data"]
        return data


def make_wallets(network: Network) -> None:
    keystore = Keystore(network.wallets)
    for name in (*MINERS, "developer", "frugal"):
        network.coldkeys[name] = keystore.create_wallet(name, PASSWORD, kdf=KDF_PRESETS["minimum"])
        if name in MINERS:
            network.hotkeys[name] = keystore.create_hotkey(name, "default")


async def build_chain(network: Network, client: NodeClient) -> None:
    """Subnets, funded wallets, a staked validator with its permit."""
    for task in ("embedding", "generation"):
        await send(
            client, OWNER, CreateSubnet(task_kind=task, task_config="{}", owner_hotkey=NO_HOTKEY)
        )
        subnets = (await client.request("GET", "/v1/subnets"))["subnets"]
        network.netuids[task] = max(s["netuid"] for s in subnets if s["task_kind"] == task)
    embedding = network.netuids["embedding"]
    for name, value in (("tempo", 3), ("commit_reveal", 0), ("weights_rate_limit", 0)):
        await send(client, OWNER, SetHyperparameter(netuid=embedding, name=name, value=value))
    for name, coldkey in network.coldkeys.items():
        amount = 100 * AGR if name in ("developer", "frugal") else 1_000 * AGR
        await send(client, FUNDER, Transfer(recipient=Address(coldkey.public_key), amount=amount))
    await send(
        client, VALIDATOR_COLDKEY, Register(netuid=embedding, hotkey=Address(VALIDATOR.public_key))
    )
    await send(
        client,
        VALIDATOR_COLDKEY,
        AddStake(hotkey=Address(VALIDATOR.public_key), amount=10_000 * AGR),
    )
    await send(
        client,
        VALIDATOR_COLDKEY,
        Transfer(recipient=Address(VALIDATOR.public_key), amount=10 * AGR),
    )
    await advance_past_epoch(client, embedding, 3)


async def advance_past_epoch(client: NodeClient, netuid: int, tempo: int) -> None:
    await advance(client, 1)
    while not is_epoch_block(netuid, tempo, (await client.get_head())["height"]):
        await advance(client, 1)


def start_miners(network: Network) -> None:
    for name in MINERS:
        task = "generation" if name == CHAT else "embedding"
        argv = [sys.executable, "-m", "agora", "miner", "run", "--node", network.node.url]
        argv += ["--netuid", str(network.netuids[task]), "--wallet", name, "--hotkey", "default"]
        argv += ["--wallet-dir", str(network.wallets), "--price", "0.001/request", "--yes"]
        argv += ["--data-dir", str(network.root / "miners")]
        if name == CHEAT:
            argv += ["--behaviour", "random"]
        if name == NO_CREDIT:
            argv += ["--credit", "0"]  # serves no verified call
        network.start(name, argv)


def wait_until_serving(network: Network) -> None:
    def serving() -> bool:
        for name in MINERS:
            process = network.processes[name]
            assert process.popen.poll() is None, f"{name}:\n{process.output()[-3000:]}"
        found = {}
        for netuid in network.netuids.values():
            for neuron in network.metagraph(netuid)["neurons"]:
                if neuron["endpoint"]:
                    found[neuron["hotkey"]] = neuron
        for name in MINERS:
            neuron = found.get(network.hotkeys[name].address)
            if neuron is None:
                return False
            network.uids[name] = neuron["uid"]
            network.endpoints[name] = neuron["endpoint"]
        return True

    wait_for(serving, READY_TIMEOUT_S, "every miner to publish its endpoint", poll=1.0)


async def weight_the_honest_miners(network: Network, client: NodeClient) -> None:
    """The validator weights the honest miners; one epoch gives them incentive, then the
    embedding subnet's epochs stop until the accounting test."""
    embedding = network.netuids["embedding"]
    uids = tuple(sorted(network.uids[name] for name in HONEST))
    body = SetWeights(netuid=embedding, uids=uids, values=(65_535,) * len(uids), version_key=0)
    await send(client, VALIDATOR, body)
    await advance_past_epoch(client, embedding, 3)
    await send(client, OWNER, SetHyperparameter(netuid=embedding, name="tempo", value=FROZEN_TEMPO))


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    root = tmp_path_factory.mktemp("gateway")
    processes = NodeProcesses(root / "node-logs")
    network = None
    try:
        node = processes.run(root / "node")
        network = Network(node=node, root=root, netuids={})
        make_wallets(network)
        on_chain(node.url, lambda client: build_chain(network, client))
        start_miners(network)
        wait_until_serving(network)
        on_chain(node.url, lambda client: weight_the_honest_miners(network, client))
        network.start_height = node.get_json("/v1/head")["height"]
        for name in ("developer", "frugal"):
            network.before[name] = network.account(network.coldkeys[name].address)
        for name in MINERS:
            network.before[name] = network.account(network.hotkeys[name].address)
        network.before["validator"] = network.account(VALIDATOR_COLDKEY.address)
        network.gateway_data = root / "gateway-data"
        network.gateway_url = network.start_gateway(
            "gateway",
            "developer",
            network.gateway_data,
            "--deposit",
            "0.005",
            "--channel-blocks",
            str(CHANNEL_BLOCKS),
        )
        yield network
    finally:
        if network is not None:
            for process in reversed(list(network.processes.values())):
                process.stop()
        processes.stop_all()


# --- the OpenAI API --------------------------------------------------------------------------


def direct_embeddings(network: Network, texts: list[str]) -> list[list[float]]:
    """The same texts from an honest miner, called by the staked validator (served free)."""
    url = network.endpoints["embed-0"].split("#", 1)[0]

    async def call() -> list[list[float]]:
        async with NeuronClient(VALIDATOR) as neurons:
            request = {"model": EMBEDDING_MODEL, "texts": texts}
            response = await neurons.call(
                url, network.hotkeys["embed-0"].public_key, "/task/embedding", request
            )
            vectors: list[list[float]] = response.body["embeddings"]
            return vectors

    return asyncio.run(call())


def cosine(a: Any, b: Any) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


TEXTS = [
    "The lighthouse keeper lit the lamp before the storm.",
    "Bees carry pollen from flower to flower.",
    "A train crossed the old stone bridge at dawn.",
    "The museum opened a new wing for ancient maps.",
]


def test_models_lists_the_networks_models_with_their_prices(network: Network) -> None:
    models = {model.id: model for model in network.client().models.list().data}
    assert {EMBEDDING_MODEL, CHAT_MODEL} <= set(models)
    embedding = models[EMBEDDING_MODEL].model_dump()["agora"]
    assert (embedding["task"], embedding["netuid"]) == ("embedding", network.netuids["embedding"])
    assert embedding["prices"] == {
        "per": "request",
        "none": PRICE,
        "spot": 2 * PRICE,
        "redundant": 3 * PRICE,
    }
    miners = {miner["hotkey"]: miner for miner in embedding["miners"]}
    for name in (*HONEST, CHEAT):
        miner = miners[network.hotkeys[name].address]
        assert miner["price"] == {"amount": PRICE, "per": "request", "text": "0.001/request"}
        assert (miner["incentive"] > 0) == (name != CHEAT)
    assert f"{CHAT_MODEL}@{network.netuids['generation']}" in models
    assert network.client().models.retrieve(CHAT_MODEL).id == CHAT_MODEL


def test_embeddings_one_a_batch_and_base64(network: Network) -> None:
    client = network.client()
    direct = direct_embeddings(network, TEXTS)
    one = client.embeddings.create(model=EMBEDDING_MODEL, input=TEXTS[0], encoding_format="float")
    assert len(one.data) == 1 and len(one.data[0].embedding) == 384
    assert cosine(one.data[0].embedding, direct[0]) > 0.999
    assert one.usage.prompt_tokens == one.usage.total_tokens > 10
    usage = one.usage.model_dump()["agora"]
    assert usage["cost"] == PRICE and usage["cost_agr"] == "0.001"
    assert usage["verification"] == "none" and len(usage["calls"]) == 1
    assert usage["calls"][0]["uid"] in [network.uids[name] for name in HONEST]

    batch = client.embeddings.create(model=EMBEDDING_MODEL, input=TEXTS, encoding_format="float")
    assert [item.index for item in batch.data] == [0, 1, 2, 3]
    for item, expected in zip(batch.data, direct, strict=True):
        assert cosine(item.embedding, expected) > 0.999
    # The client's default asks for base64 and decodes it; and base64 by hand.
    default = client.embeddings.create(model=EMBEDDING_MODEL, input=TEXTS)
    raw = client.embeddings.with_raw_response.create(
        model=EMBEDDING_MODEL, input=TEXTS, encoding_format="base64"
    ).parse()
    for index, expected in enumerate(direct):
        decoded = np.frombuffer(base64.b64decode(raw.data[index].embedding), dtype="<f4")
        assert cosine(decoded, expected) > 0.999
        assert np.allclose(default.data[index].embedding, decoded)


def test_chat_completion_and_a_streamed_one(network: Network) -> None:
    client = network.client()
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    answer = client.chat.completions.create(model=CHAT_MODEL, messages=messages, max_tokens=12)
    text = answer.choices[0].message.content
    assert "Paris" in text
    assert answer.choices[0].finish_reason in ("stop", "length")
    assert answer.usage.completion_tokens > 0 and answer.usage.prompt_tokens > 0
    assert answer.usage.model_dump()["agora"]["cost"] == PRICE

    chunks = list(
        client.chat.completions.create(
            model=CHAT_MODEL,
            messages=messages,
            max_tokens=12,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == answer.choices[
        0
    ].finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == answer.usage.total_tokens

    # The raw stream, exactly as OpenAI sends it.
    body = {
        "model": CHAT_MODEL,
        "messages": messages,
        "max_tokens": 4,
        "stream": True,
        "stop": "\n",
    }
    raw = http("POST", network.gateway_url + "/chat/completions", body, timeout=300)
    assert raw.status == 200 and raw.headers["Content-Type"].startswith("text/event-stream")
    events = raw.body.decode().split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    assert all(event.startswith("data: ") for event in events[:-1])


def test_bad_requests_and_unknown_models_get_openai_errors(network: Network) -> None:
    client = network.client()
    with pytest.raises(openai.NotFoundError) as unknown:
        client.embeddings.create(model="text-embedding-3-large", input="x")
    assert unknown.value.status_code == 404
    assert unknown.value.body["code"] == "model_not_found"
    assert unknown.value.body["type"] == "invalid_request_error"
    assert unknown.value.body["param"] == "model"
    for kwargs, param in [
        ({"model": EMBEDDING_MODEL, "input": []}, "input"),
        ({"model": EMBEDDING_MODEL, "input": [[1, 2, 3]]}, "input"),
        ({"model": EMBEDDING_MODEL, "input": "x", "dimensions": 1536}, "dimensions"),
        ({"model": EMBEDDING_MODEL, "input": "x", "extra_body": {"colour": "blue"}}, "colour"),
        ({"model": EMBEDDING_MODEL, "input": ["x"] * 300}, "input"),
    ]:
        with pytest.raises(openai.BadRequestError) as bad:
            client.embeddings.create(**kwargs)
        assert bad.value.body["param"] == param, bad.value.body
        assert bad.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=CHAT_MODEL, messages=[], max_tokens=5)
    assert bad.value.body["param"] == "messages"
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(
            model=CHAT_MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=5000
        )
    assert bad.value.body["param"] == "max_tokens"
    with pytest.raises(openai.BadRequestError) as bad:  # only greedy answers are checkable
        client.chat.completions.create(
            model=CHAT_MODEL,
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=5,
            temperature=0.7,
            extra_headers={"Agora-Verification": "spot"},
        )
    assert bad.value.body["param"] == "temperature"
    for raw, path in [(b"{not json", "/embeddings"), (b"[1]", "/chat/completions")]:
        answer = http("POST", network.gateway_url + path, data=raw)
        assert answer.status == 400 and answer.json()["error"]["type"] == "invalid_request_error"
    missing = http("GET", network.gateway_url + "/nothing/here")
    assert missing.status == 404 and missing.json()["error"]["code"] == "unknown_url"
    # Nothing was paid for any of it.
    assert all(r["status"] == "ok" for r in network.receipts())


# --- verification ----------------------------------------------------------------------------


def test_spot_and_redundant_answers_agree_and_cost_what_they_say(network: Network) -> None:
    client = network.client()
    direct = direct_embeddings(network, TEXTS)
    for level, calls in (("spot", 2), ("redundant", 3)):
        answer = client.embeddings.create(
            model=EMBEDDING_MODEL,
            input=TEXTS,
            encoding_format="float",
            extra_headers={"Agora-Verification": level},
        )
        usage = answer.usage.model_dump()["agora"]
        assert usage["verification"] == level
        answered = answered_calls(network, usage["calls"])
        assert len(answered) == calls and len({call["uid"] for call in answered}) == calls
        # The noise miner has no incentive: it is asked only when no other miner is left
        # (the one without credit refused), and is then outvoted, unpaid.
        assert usage["cost"] == PRICE * sum(call["status"] == "ok" for call in answered)
        assert usage["prices"]["per"] == "request"
        for item, expected in zip(answer.data, direct, strict=True):
            assert cosine(item.embedding, expected) > 0.999
    chat = client.chat.completions.create(
        model=CHAT_MODEL,
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=6,
        extra_body={"agora_verification": "none"},
    )
    assert chat.usage.model_dump()["agora"]["verification"] == "none"
    # One chat miner cannot check itself: refused before anything is paid.
    spent = sum(r["cost"] for r in network.receipts(limit=1000))
    with pytest.raises(openai.InternalServerError) as alone:
        client.chat.completions.create(
            model=CHAT_MODEL,
            messages=[{"role": "user", "content": "Say hello."}],
            max_tokens=6,
            extra_headers={"Agora-Verification": "spot"},
        )
    assert (alone.value.status_code, alone.value.body["code"]) == (503, "no_miner_available")
    assert sum(r["cost"] for r in network.receipts(limit=1000)) == spent


def answered_calls(network: Network, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The calls that reached a miner's work, each paid unless it is the noise miner's; the
    miner without credit refuses every verified call (3535)."""
    for call in calls:
        if call["status"] == "failed":
            assert call["uid"] == network.uids[NO_CREDIT] and "error[3535]" in call["error"]
        paid = ("rejected", 0) if call["uid"] == network.uids[CHEAT] else ("ok", PRICE)
        assert call["status"] == "failed" or (call["status"], call["cost"]) == paid, call
    return [call for call in calls if call["status"] != "failed"]


def test_a_cheating_miner_is_caught(network: Network) -> None:
    """Pinned as the primary, the noise miner loses its spot check to two honest miners, and
    is outvoted at the redundant level: the developer gets the honest answer either way, and
    pays only the honest answers (the noise miner's calls are rejected, unpaid)."""
    client = network.client()
    direct = direct_embeddings(network, TEXTS)
    cheat = network.uids[CHEAT]
    for level in ("spot", "redundant"):
        answer = client.embeddings.create(
            model=EMBEDDING_MODEL,
            input=TEXTS,
            encoding_format="float",
            extra_headers={"Agora-Verification": level, "Agora-Miner": str(cheat)},
        )
        for item, expected in zip(answer.data, direct, strict=True):
            assert cosine(item.embedding, expected) > 0.999
        usage = answer.usage.model_dump()["agora"]
        calls = answered_calls(network, usage["calls"])
        assert calls[0]["uid"] == cheat or level == "redundant"
        assert cheat in [call["uid"] for call in calls]
        assert usage["cost"] == PRICE * (len(calls) - 1)
        [receipt] = network.receipts(request_id=usage["request_id"])
        assert receipt["cost"] == usage["cost"] and receipt["calls"] == usage["calls"]
        if level == "spot":
            assert [call["role"] for call in calls] == [
                "primary",
                "spot",
                "tiebreak",
                "primary",
                "spot",
            ]
    # With no verification, the pinned cheat's noise is what one pays for: that is the risk.
    noise = client.embeddings.create(
        model=EMBEDDING_MODEL,
        input=TEXTS[:1],
        encoding_format="float",
        extra_headers={"Agora-Miner": str(cheat)},
    )
    assert cosine(noise.data[0].embedding, direct[0]) < 0.5


# --- receipts and limits -----------------------------------------------------------------------


def test_receipts_over_the_api_and_the_cli(network: Network) -> None:
    answer = network.client().embeddings.with_raw_response.create(
        model=EMBEDDING_MODEL, input="a receipt for this one"
    )
    request_id = answer.headers["Agora-Request-Id"]
    [receipt] = network.receipts(request_id=request_id)
    assert receipt["status"] == "ok" and receipt["cost"] == PRICE
    assert receipt["model"] == EMBEDDING_MODEL and receipt["verification"] == "none"
    [call] = receipt["calls"]
    assert call["status"] == "ok" and call["latency_ms"] >= 0 and call["miner"].startswith("agr1")
    everything = network.receipts(limit=1000)
    assert everything[0]["request_id"] == request_id  # newest first

    import typer

    from agora.cli.gateway import register

    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(
        app,
        [
            "gateway",
            "receipts",
            "--data-dir",
            str(network.gateway_data),
            "--limit",
            "1000",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [r["request_id"] for r in data["receipts"]] == [r["request_id"] for r in everything]
    assert data["spent_today"] == sum(r["cost"] for r in everything)
    human = CliRunner().invoke(
        app,
        ["gateway", "receipts", "--data-dir", str(network.gateway_data)],
        env={"COLUMNS": "250"},
    )
    assert human.exit_code == 0 and request_id in human.stdout


def test_the_daily_limit_refuses_with_a_clear_error(network: Network) -> None:
    url = network.start_gateway(
        "frugal-gateway",
        "frugal",
        network.root / "frugal-data",
        "--daily-limit",
        "0.0025",
        "--deposit",
        "0.01",
        "--channel-blocks",
        str(CHANNEL_BLOCKS),
    )
    client = network.client(url)
    for _ in range(2):
        client.embeddings.create(model=EMBEDDING_MODEL, input="within the limit")
    with pytest.raises(openai.APIStatusError) as refused:
        client.embeddings.create(model=EMBEDDING_MODEL, input="one too many")
    assert refused.value.status_code == 402
    assert refused.value.body["code"] == "daily_limit_exceeded"
    assert "daily limit of 0.0025 AGR" in refused.value.body["message"]
    assert sum(r["cost"] for r in network.receipts(url)) == 2 * PRICE
    network.processes["frugal-gateway"].stop()


# --- attacks at a miner's gate -------------------------------------------------------------------


def test_attacks_at_a_miners_gate_are_refused_and_settle_nothing(network: Network) -> None:
    target, other = "embed-1", "embed-2"
    embedding = network.netuids["embedding"]

    async def attack(client: NodeClient) -> dict[str, bytes]:
        channels = {}
        for name in (target, other):
            nonce = (await client.get_account(ATTACKER.address))["next_nonce"]
            head = (await client.get_head())["height"]
            body = OpenChannel(
                payee=Address(network.hotkeys[name].public_key),
                netuid=embedding,
                deposit=AGR // 100,
                expiry=head + CHANNEL_BLOCKS,
            )
            await send(client, ATTACKER, body)
            channels[name] = compute_channel_id(Address(ATTACKER.public_key), nonce)
        url = network.endpoints[target].split("#", 1)[0]
        callee = network.hotkeys[target].public_key

        def voucher(channel: bytes, amount: int, key: Keypair = ATTACKER) -> dict[str, Any]:
            return make_payment(sign_voucher(DEV_CHAIN_ID, channel, amount, key.sign))

        async with NeuronClient(ATTACKER) as neurons:

            async def call(payment: dict[str, Any]) -> dict[str, Any]:
                body = {"model": EMBEDDING_MODEL, "texts": ["paid for once"], "payment": payment}
                response = await neurons.call(url, callee, "/task/embedding", body)
                return response.body

            async def refused(payment: dict[str, Any], code: int, status: int = 402) -> None:
                with pytest.raises(RemoteError) as error:
                    await call(payment)
                assert (error.value.code, error.value.status) == (code, status), error.value.message

            await call(voucher(channels[target], PRICE))  # the one honest purchase
            await refused(voucher(channels[target], PRICE), 3530)  # replayed
            await refused(voucher(channels[other], 2 * PRICE), 3524)  # another miner's channel
            await refused(voucher(channels[target], 2 * PRICE - 1), 3529)  # below the price
            await refused(voucher(channels[target], 2 * PRICE, key=OWNER), 3528)  # forged
            signed = sign_voucher(DEV_CHAIN_ID, channels[other], 2 * PRICE, ATTACKER.sign)
            moved = Voucher(
                channel_id=channels[target], cumulative=2 * PRICE, signature=signed.signature
            )
            await refused(make_payment(moved), 3528)  # relabelled from another channel
            await refused({}, 3522, status=400)  # malformed
        return channels

    channels = on_chain(network.node.url, attack)
    network.attack_channels = {channels[target]: PRICE, channels[other]: 0}


# --- the accounts ------------------------------------------------------------------------------


def claims_in_blocks(network: Network, start: int) -> list[tuple[bytes, int, bytes]]:
    """(channel id, cumulative, payee hotkey) of every successful claim since ``start``."""
    head = network.node.get_json("/v1/head")["height"]
    claims = []
    for height in range(start, head + 1):
        block = network.node.get_json(f"/v1/blocks/{height}")
        for raw, receipt in zip(block["transactions"], block["receipts"], strict=True):
            tx = decode_transaction(bytes.fromhex(raw.removeprefix("0x")))
            if receipt["success"] and isinstance(tx.body, ClaimChannel):
                voucher = tx.body.voucher
                claims.append((voucher.channel_id, voucher.cumulative, bytes(tx.sender)))
    return claims


@dataclass
class Split:
    payees: dict[bytes, int] = field(default_factory=dict)
    validators: int = 0
    treasury: int = 0


def split_claims(claims: list[tuple[bytes, int, bytes]]) -> Split:
    """Each claim's increment split as the protocol splits it, summed."""
    params = Params()
    last: dict[bytes, int] = {}
    split = Split()
    for channel, cumulative, payee in claims:
        amount = cumulative - last.get(channel, 0)
        last[channel] = cumulative
        to_payee, to_validators, to_treasury = compute_claim_split(
            amount, params.channel_fee_u16, params.channel_fee_validators_u16
        )
        split.payees[payee] = split.payees.get(payee, 0) + to_payee
        split.validators += to_validators
        split.treasury += to_treasury
    return split


def read_gateway_books(paths: list[Path]) -> tuple[dict[bytes, int], dict[str, int], int]:
    """From the gateways' own stores: committed per channel, paid per miner, total spent."""
    committed: dict[bytes, int] = {}
    paid: dict[str, int] = {}
    total = 0
    for path in paths:
        store = GatewayStore(path)
        try:
            for record in store.list_channels():
                committed[record.channel_id] = record.committed
            for receipt in store.list_receipts(limit=100_000):
                total += receipt.cost
                for call in receipt.calls:
                    paid[call["miner"]] = paid.get(call["miner"], 0) + call["cost"]
        finally:
            store.close()
    return committed, paid, total


async def payers_channels(client: NodeClient, payers: list[Keypair]) -> list[dict[str, Any]]:
    channels = []
    for payer in payers:
        channels += await client.list_channels(payer=payer.address)
    return channels


def test_the_accounts_add_up(network: Network) -> None:
    url = network.node.url
    developer_db = network.gateway_data / "gateway.db"
    committed, paid, _ = read_gateway_books(
        [developer_db, network.root / "frugal-data" / "gateway.db"]
    )
    committed.update(network.attack_channels)
    payers = [network.coldkeys["developer"], network.coldkeys["frugal"], ATTACKER]
    channels = on_chain(url, lambda c: payers_channels(c, payers))
    per_payee: dict[str, int] = {}
    for channel in channels:
        per_payee[channel["payee"]] = (
            per_payee.get(channel["payee"], 0) + committed[bytes.fromhex(channel["id"][2:])]
        )
    attacker_paid = {network.hotkeys["embed-1"].address: PRICE}
    for miner in set(per_payee) | set(paid):
        expected = paid.get(miner, 0) + attacker_paid.get(miner, 0)
        assert per_payee.get(miner, 0) == expected, miner  # the channels match the receipts

    # The chain moves on, into each channel's last blocks: its miner claims, by itself.
    for channel in sorted(channels, key=lambda c: c["expiry"]):
        wait_for_claim(network, channel, committed[bytes.fromhex(channel["id"][2:])])

    # Past expiry: the gateway closes its channels and takes back deposit minus claims.
    latest = max(c["expiry"] for c in channels)
    on_chain(url, lambda c: advance(c, latest - network.node.get_json("/v1/head")["height"] + 1))

    def all_closed() -> list[dict[str, Any]] | None:
        records = http("GET", network.gateway_url + "/agora/channels").json()["data"]
        return records if all(r["closed"] for r in records) else None

    records = wait_for(all_closed, 60, "the gateway to close its expired channels", poll=0.5)
    for record in records:
        info = network.node.get_json(f"/v1/channels/{record['channel_id']}")
        assert info["closed"] and record["refund"] == info["deposit"] - info["claimed"]

    # The developer paid exactly its receipts, plus one fee per transaction it sent.
    _, _, spent = read_gateway_books([developer_db])
    developer = network.account(network.coldkeys["developer"].address)
    before = network.before["developer"]
    fees = (developer["nonce"] - before["nonce"]) * MIN_FEE
    assert before["balance"] - developer["balance"] == spent + fees

    # Each claim split: the miners' hotkeys got their share, less the fees of their claims ...
    claims = claims_in_blocks(network, network.start_height)
    split = split_claims(claims)
    for name in HONEST:
        hotkey = network.hotkeys[name]
        now, then = network.account(hotkey.address), network.before[name]
        fees = (now["nonce"] - then["nonce"]) * MIN_FEE
        assert now["balance"] - then["balance"] == split.payees[hotkey.public_key] - fees

    # ... the treasury its share, and the validators theirs at the subnet's next epoch.
    embedding = network.netuids["embedding"]
    netuids = {bytes.fromhex(c["id"][2:]): c["netuid"] for c in channels}
    validators_share = split_claims([c for c in claims if netuids[c[0]] == embedding]).validators
    assert validators_share > 0 and split.treasury > 0
    before_epoch = network.account(VALIDATOR_COLDKEY.address)["balance"]
    assert before_epoch == network.before["validator"]["balance"]  # no epoch since
    on_chain(url, lambda c: run_one_epoch(c, embedding))
    after_epoch = network.account(VALIDATOR_COLDKEY.address)["balance"]
    [validator] = [
        n for n in network.metagraph(embedding)["neurons"] if n["hotkey"] == VALIDATOR.address
    ]
    assert after_epoch - before_epoch == validator["emission"] + validators_share


def wait_for_claim(network: Network, channel: dict[str, Any], expected: int) -> None:
    """Advance into the channel's claim window; wait until its miner claimed ``expected``."""
    head = network.node.get_json("/v1/head")["height"]
    target = channel["expiry"] - 2 * EXPIRY_MARGIN_BLOCKS
    on_chain(network.node.url, lambda client: advance(client, target - head))

    def claimed() -> bool:
        info = network.node.get_json(f"/v1/channels/{channel['id']}")
        return bool(info["claimed"] == expected)

    wait_for(claimed, 60, f"the claim on {channel['id']}", poll=0.2)


async def run_one_epoch(client: NodeClient, netuid: int) -> None:
    await send(client, OWNER, SetHyperparameter(netuid=netuid, name="tempo", value=3))
    while not is_epoch_block(netuid, 3, (await client.get_head())["height"]):
        await advance(client, 1)
    await send(client, OWNER, SetHyperparameter(netuid=netuid, name="tempo", value=FROZEN_TEMPO))


# --- failover ------------------------------------------------------------------------------------


def test_a_miner_killed_mid_request_is_failed_over_and_charged_once(network: Network) -> None:
    victim = "embed-2"
    uid = network.uids[victim]
    texts = [f"{i} " + " ".join(TEXTS) * 4 for i in range(24)]  # seconds of work
    result: dict[str, Any] = {}

    def request() -> None:
        try:
            result["answer"] = network.client().embeddings.create(
                model=EMBEDDING_MODEL,
                input=texts,
                encoding_format="float",
                extra_headers={"Agora-Miner": str(uid)},
            )
        except Exception as error:  # reported by the assertion below
            result["error"] = error

    worker = threading.Thread(target=request)
    worker.start()

    def in_flight_at_victim() -> bool:
        models = http("GET", network.gateway_url + "/models").json()["data"]
        [model] = [m for m in models if m["id"] == EMBEDDING_MODEL]
        [miner] = [m for m in model["agora"]["miners"] if m["uid"] == uid]
        return bool(miner["in_flight"])

    wait_for(in_flight_at_victim, 120, "the request to reach the victim", poll=0.01)
    network.processes[victim].popen.send_signal(signal.SIGKILL)
    worker.join(timeout=300)
    assert "error" not in result, result.get("error")
    answer = result["answer"]
    assert len(answer.data) == 24
    usage = answer.usage.model_dump()["agora"]
    assert usage["cost"] == PRICE  # charged once
    failed, served = usage["calls"]
    assert (failed["uid"], failed["status"], failed["cost"]) == (uid, "failed", 0)
    assert (served["status"], served["cost"]) == ("ok", PRICE) and served["uid"] != uid
    [receipt] = network.receipts(request_id=usage["request_id"])
    assert receipt["cost"] == PRICE and receipt["calls"] == usage["calls"]


# --- at the end ----------------------------------------------------------------------------------


def test_the_supply_invariant_holds_after_everything_stops(network: Network) -> None:
    for process in reversed(list(network.processes.values())):
        process.stop()
    assert network.node.stop() == 0
    from agora.node.store import Store

    store = Store(network.node.data_dir / "node.db")
    try:
        check_invariants(store.load_state())
    finally:
        store.close()
