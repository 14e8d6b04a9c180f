"""``agora devnet``: a whole network on one machine, from a fresh chain, in one command.

It starts a node (local sequencer, or an Inbox on a local anvil with ``--sequencer
ethereum``), creates a subnet per task (the built-in ones, or any installed kinds named with
``--tasks``) with short epochs, funds a wallet per
participant, and starts every miner and validator as its own ``agora miner run`` /
``agora validator run`` process: the same commands an operator runs by hand. A cheating miner
per subnet (random answers by default) shows validators at work. Everything writes under one
data directory (logs included), but the model cache: SmolLM2's weights are de-quantized once,
by the devnet itself before any generation process starts, into the cache every devnet and
process on the machine shares (``~/.cache/agora``). While it loads, the devnet prints one line
per step and per process ready ("ready 7/14: embedding-miner-1"), so a person sees how far
along it is.

Every child is stopped on Ctrl-C or SIGTERM, and dies with the devnet if it is killed
(Linux's parent-death signal), so none is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agora.client.client import NodeClient
from agora.client.participant import submit_and_wait
from agora.client.transactions import make_transaction
from agora.errors import AgoraError
from agora.node.devchain import DEV_ACCOUNT_BALANCE, compute_dev_seed
from agora.process import run_until_stopped, wait_for_stop
from agora.protocol.accounts import Transfer
from agora.protocol.address import Address
from agora.protocol.data import StartFederation
from agora.protocol.federation import encode_vector
from agora.protocol.params import BASE_UNITS_PER_AGR
from agora.protocol.subnets import NO_HOTKEY, CreateSubnet, SetHyperparameter
from agora.tasks import federated
from agora.tasks.generation_model import (
    get_converted_model_dir,
    get_default_cache_dir,
    is_model_converted,
)
from agora.wallet.keys import Keypair
from agora.wallet.keystore import KDF_PRESETS, Keystore

TASKS = ("embedding", "classification", "generation")  # the default; any installed kind runs
# A federated subnet (--tasks federated): its contributors train one model on shards of digits
# they keep (one of them flips its labels), scored by the improvement they bring.
FEDERATED = "federated"
FEDERATED_WINDOW_BLOCKS = 4
FEDERATION_START_TIMEOUT_S = 300.0
WALLET_PASSWORD = "agora-devnet"  # throwaway wallets, readable by every devnet process
PARTICIPANT_FUNDS = 10_000 * BASE_UNITS_PER_AGR
VALIDATOR_STAKE = 5_000 * BASE_UNITS_PER_AGR
START_TIMEOUT_S = 600.0
STOP_TIMEOUT_S = 15.0
PROGRESS_EVERY_S = 20.0  # a "still loading" line when no process got ready for this long
_NODE_URL = re.compile(r"API\s+(http://[0-9.]+:[0-9]+)/v1")
_GATEWAY_URL = re.compile(r"OpenAI API at\s+(http://[0-9.]+:[0-9]+/v1)")
MINER_PRICE = "0.001/request"  # what honest miners charge paying callers (the gateway)
DEVELOPER = "developer"  # the wallet the devnet's gateway pays from
AGENT = "search-agent"  # the wallet of the devnet's agent: it sells search, buys embeddings
_AGENT_STARTED = re.compile(r'\{"service_id":[^\n]*\}')


class DevnetError(AgoraError):
    """The devnet could not start: a process exited or did not come up in time."""

    code = 3550


@dataclass(slots=True, kw_only=True)
class DevnetConfig:
    data_dir: Path
    cache_dir: Path | None = None  # the shared model cache; None: get_default_cache_dir()
    miners: int = 2
    generation_miners: int = 1  # each holds a 135M-parameter model in memory
    validators: int = 1  # each loads its task's reference model: two or more for consensus
    cheaters: tuple[str, ...] = ("random",)
    block_time_ms: int = 1000
    tempo: int = 10  # weights committed in one epoch count at the end of the next
    host: str = "127.0.0.1"
    node_port: int = 0
    gateway_port: int = 0
    gateway: bool = True
    agent: bool = True  # the semantic-search agent (with the embedding subnet)
    tasks: tuple[str, ...] = TASKS
    sequencer: str = "local"
    say: Callable[[str], None] = field(default=print)


@dataclass(slots=True)
class Child:
    name: str
    role: str  # node, anvil, miner, validator
    process: subprocess.Popen[bytes]
    log: Path
    netuid: int = 0
    behaviour: str = ""
    hotkey: str = ""


class Processes:
    """The devnet's children, each with its own log file; stopped by pid, all of them."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: list[Child] = []

    def start(self, name: str, role: str, argv: list[str], env: dict[str, str]) -> Child:
        log = self.log_dir / f"{name}.log"
        with log.open("wb") as handle:
            process = subprocess.Popen(
                argv,
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                preexec_fn=_die_with_parent,
                # Their own session: a Ctrl-C reaches the devnet alone, which then stops the
                # participants before the chain (``stop_all``).
                start_new_session=True,
            )
        child = Child(name, role, process, log)
        self.children.append(child)
        return child

    def find_dead(self) -> Child | None:
        return next((c for c in self.children if c.process.poll() is not None), None)

    def stop_all(self) -> None:
        """The participants first, then the chain (node, anvil): a miner or an agent that
        stops claims what it earned, and needs the node for that."""
        chain = [c for c in self.children if c.role in ("node", "anvil")]
        self._stop([c for c in self.children if c not in chain])
        self._stop(chain)

    def _stop(self, children: list[Child]) -> None:
        for child in reversed(children):
            if child.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for child in children:
            remaining = max(0.1, deadline - time.monotonic())
            try:
                child.process.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()


def _die_with_parent() -> None:
    """In the child: SIGTERM when the devnet process dies, however it dies (Linux)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def tail(path: Path, lines: int = 15) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@dataclass(slots=True)
class Devnet:
    config: DevnetConfig
    processes: Processes
    node_url: str = ""
    gateway_url: str = ""
    agent: dict[str, str] = field(default_factory=dict)  # service_id, url, name
    subnets: dict[str, int] = field(default_factory=dict)  # task -> netuid
    extra: dict[str, Any] = field(default_factory=dict)
    paying: set[int] = field(default_factory=set)  # subnets that have paid a miner

    @property
    def data_dir(self) -> Path:
        return self.config.data_dir


def prepare_data_dir(data_dir: Path) -> None:
    """A fresh chain each time; the model cache survives."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for name in ("node", "wallets", "validators", "logs", "anvil"):
        shutil.rmtree(data_dir / name, ignore_errors=True)
    (data_dir / "logs").mkdir()


def _agora(*args: str) -> list[str]:
    return [sys.executable, "-m", "agora", *args]


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment every devnet process runs with (and is restarted with)."""
    env = dict(os.environ)
    env.update(
        {
            "AGORA_WALLET_PASSWORD": WALLET_PASSWORD,
            "PYTHONUNBUFFERED": "1",
            # Many model processes share few cores: one thread each avoids oversubscription.
            "OMP_NUM_THREADS": env.get("OMP_NUM_THREADS", "1"),
            "TOKENIZERS_PARALLELISM": "false",
        }
    )
    env.update(extra or {})
    return env


async def start_node(devnet: Devnet) -> None:
    config = devnet.config
    argv = _agora(
        "node",
        "run",
        "--dev",
        "--dev-accounts",
        "4",
        "--data-dir",
        str(devnet.data_dir / "node"),
        "--host",
        config.host,
        "--port",
        str(config.node_port),
        "--block-time-ms",
        str(config.block_time_ms),
    )
    env = child_env()
    if config.sequencer == "ethereum":
        argv += await _start_ethereum(devnet, env)
    child = devnet.processes.start("node", "node", argv, env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            raise DevnetError(f"the node exited:\n{tail(child.log)}")
        match = _NODE_URL.search(child.log.read_text(errors="replace"))
        if match:
            devnet.node_url = match.group(1)
            return
        await asyncio.sleep(0.1)
    raise DevnetError(f"the node did not start within 60 s:\n{tail(child.log)}")


async def _start_ethereum(devnet: Devnet, env: dict[str, str]) -> list[str]:
    """anvil with interval mining, an Inbox deployed on it: the node's sequencer arguments."""
    from agora.sequencer.ethereum.anvil import find_anvil, launch_anvil
    from agora.sequencer.ethereum.inbox import deploy_inbox

    binary = find_anvil()
    if binary is None:
        raise DevnetError("anvil is not installed: npm install @foundry-rs/anvil-linux-amd64")
    block_time = max(0.1, devnet.config.block_time_ms / 1000)
    directory = devnet.data_dir / "anvil"
    directory.mkdir(parents=True, exist_ok=True)
    process, anvil = launch_anvil(
        [binary, "--block-time", str(block_time)], directory, preexec_fn=_die_with_parent
    )
    devnet.processes.children.append(Child("anvil", "anvil", process, directory / "anvil.log"))
    deployment = await deploy_inbox(anvil.url, anvil.private_keys[0])
    env["AGORA_EVM_KEY"] = anvil.private_keys[1]
    devnet.extra.update(rpc=anvil.url, inbox=deployment.address)
    return [
        "--sequencer",
        "ethereum",
        "--rpc",
        anvil.url,
        "--inbox",
        deployment.address,
        "--genesis-block",
        str(deployment.block_number),
        "--confirmations",
        "0",
    ]


async def create_subnets(devnet: Devnet, client: NodeClient) -> None:
    """dev0 owns one subnet per task, with epochs every ``tempo`` blocks: every subnet in one
    request, then every setting in one request (two blocks, not one per transaction)."""
    owner = Keypair(compute_dev_seed("dev0"))
    config = devnet.config
    settings = {
        "tempo": config.tempo,
        "weights_rate_limit": max(1, config.tempo // 4),
        "reveal_period_epochs": 1,
    }
    creations = [
        CreateSubnet(task_kind=task, task_config="{}", owner_hotkey=NO_HOTKEY)
        for task in config.tasks
    ]
    await _submit_in_order(client, owner, creations, "creating the subnets")
    subnets = await client.list_subnets()
    changes = []
    for task in config.tasks:
        netuid = max(s["netuid"] for s in subnets if s["task_kind"] == task)
        devnet.subnets[task] = netuid
        chosen = dict(settings)
        if task == FEDERATED:  # weights once per round, set in the open
            chosen.update(commit_reveal=0, weights_rate_limit=0)
        changes += [SetHyperparameter(netuid=netuid, name=n, value=v) for n, v in chosen.items()]
    await _submit_in_order(client, owner, changes, "setting the subnets' hyperparameters")


async def _submit_in_order(client: NodeClient, key: Keypair, bodies: list[Any], what: str) -> None:
    """Transactions with consecutive nonces in one request; each must succeed."""
    chain = await client.get_chain()
    nonce = (await client.get_account(key.address))["next_nonce"]
    raws = [
        make_transaction(
            chain_id=chain["chain_id"],
            public_key=key.public_key,
            sign=key.sign,
            nonce=nonce + offset,
            fee=chain["params"]["min_fee"],
            body=body,
        )
        for offset, body in enumerate(bodies)
    ]
    for tx_hash in await client.submit(raws):
        receipt = (await client.wait_for_transaction(tx_hash, timeout_seconds=60))["receipt"]
        if not receipt["success"]:
            raise DevnetError(f"{what}: error[{receipt['code']}] {receipt['message']}")


async def fund_wallets(devnet: Devnet, client: NodeClient, names: list[str]) -> None:
    """A wallet (coldkey + hotkey ``default``) per participant, funded from dev1 in one batch."""
    keystore = Keystore(devnet.data_dir / "wallets")
    kdf = KDF_PRESETS["minimum"]
    funder = Keypair(compute_dev_seed("dev1"))
    chain = await client.get_chain()
    nonce = (await client.get_account(funder.address))["next_nonce"]
    if PARTICIPANT_FUNDS * len(names) > DEV_ACCOUNT_BALANCE:
        raise DevnetError("too many participants for the dev account's funds")
    raws = []
    for name in names:
        coldkey = keystore.create_wallet(name, WALLET_PASSWORD, kdf=kdf)
        keystore.create_hotkey(name, "default")
        raws.append(
            make_transaction(
                chain_id=chain["chain_id"],
                public_key=funder.public_key,
                sign=funder.sign,
                nonce=nonce,
                fee=chain["params"]["min_fee"],
                body=Transfer(recipient=Address(coldkey.public_key), amount=PARTICIPANT_FUNDS),
            )
        )
        nonce += 1
    hashes = await client.submit(raws)
    await client.wait_for_transaction(hashes[-1], timeout_seconds=120)


def plan_participants(config: DevnetConfig) -> list[tuple[str, str, str, str]]:
    """(name, role, task, behaviour) for every miner and validator."""
    plan = []
    for task in config.tasks:
        if task == FEDERATED:
            plan += [(f"{task}-contributor-{i}", "miner", task, "honest") for i in range(3)]
            plan.append((f"{task}-poisoner", "miner", task, "label_flip"))
            plan.append((f"{task}-server", "miner", task, "serve"))  # sells the trained model
            plan += [
                (f"{task}-validator-{i}", "validator", task, "honest")
                for i in range(config.validators)
            ]
            continue
        honest = config.generation_miners if task == "generation" else config.miners
        for i in range(honest):
            plan.append((f"{task}-miner-{i}", "miner", task, "honest"))
        for behaviour in config.cheaters:
            plan.append((f"{task}-{behaviour}", "miner", task, behaviour))
        for i in range(config.validators):
            plan.append((f"{task}-validator-{i}", "validator", task, "honest"))
    return plan


def get_cache_dir(config: DevnetConfig) -> Path:
    return config.cache_dir if config.cache_dir is not None else get_default_cache_dir()


async def prepare_models(devnet: Devnet, stop: asyncio.Event) -> None:
    """SmolLM2's GGUF file de-quantized once into the shared cache, in a process of its own,
    before any generation process starts: otherwise every one of them converts it at once."""
    if "generation" not in devnet.config.tasks:
        return
    cache = get_cache_dir(devnet.config)
    say = devnet.config.say
    if is_model_converted(cache):
        say(f"  model      SmolLM2-135M-Instruct, cached in {get_converted_model_dir(cache)}")
        return
    say(f"  model      converting SmolLM2-135M-Instruct once into {cache} (about 30 s) ...")
    started = time.monotonic()
    argv = [sys.executable, "-m", "agora.tasks.generation_model", str(cache)]
    child = devnet.processes.start("model-conversion", "setup", argv, child_env())
    while child.process.poll() is None and not stop.is_set():
        await asyncio.sleep(0.2)
    if stop.is_set():
        return
    devnet.processes.children.remove(child)
    if child.process.returncode != 0:
        raise DevnetError(f"the model conversion failed:\n{tail(child.log)}")
    say(f"  model      converted in {time.monotonic() - started:.0f} s")


def start_participants(devnet: Devnet, plan: list[tuple[str, str, str, str]]) -> None:
    wallets = str(devnet.data_dir / "wallets")
    cache = str(get_cache_dir(devnet.config))
    for name, role, task, behaviour in plan:
        netuid = str(devnet.subnets[task])
        common = ["--node", devnet.node_url, "--netuid", netuid, "--wallet", name]
        common += ["--hotkey", "default", "--wallet-dir", wallets, "--cache-dir", cache, "--yes"]
        if role == "miner" and behaviour == "serve":
            argv = _agora("miner", "run", *common, "--serve-model", "--price", MINER_PRICE)
            argv += ["--data-dir", str(devnet.data_dir / "miners")]
        elif role == "miner" and task == FEDERATED:
            argv = _agora(
                "miner", "run", *common, "--data", str(write_contributor_data(devnet, name))
            )
        elif role == "miner":
            argv = _agora("miner", "run", *common, "--behaviour", behaviour)
            if behaviour == "honest":
                argv += ["--price", MINER_PRICE, "--data-dir", str(devnet.data_dir / "miners")]
        else:
            argv = _agora(
                "validator",
                "run",
                *common,
                "--stake",
                str(VALIDATOR_STAKE // BASE_UNITS_PER_AGR),
                "--data-dir",
                str(devnet.data_dir / "validators"),
                "--round-interval",
                "3",
            )
        child = devnet.processes.start(name, role, argv, child_env())
        child.netuid, child.behaviour = int(netuid), behaviour
        keystore = Keystore(devnet.data_dir / "wallets")
        child.hotkey = keystore.get_hotkey(name, "default").address


def write_contributor_data(devnet: Devnet, name: str) -> Path:
    """The contributor's own rows: a Dirichlet(0.5) shard of digits (the poisoner's labels
    flipped), written in the documented CSV format."""
    contributors = sorted(
        n
        for n, role, task, behaviour in plan_participants(devnet.config)
        if task == FEDERATED and role == "miner" and behaviour != "serve"
    )
    shards = federated.split_dirichlet(
        federated.load_pools().contributors, len(contributors), 0.5, 0
    )
    shard = shards[contributors.index(name)]
    if name.endswith("poisoner"):
        shard = federated.Dataset(shard.features, federated.CLASSES - 1 - shard.labels)
    directory = devnet.data_dir / "federated"
    directory.mkdir(exist_ok=True)
    path = directory / f"{name}.csv"
    federated.save_data_file(path, shard)
    return path


async def start_federation(devnet: Devnet, client: NodeClient) -> None:
    """Once every contributor has committed to its data, the owner starts the first round."""
    netuid = devnet.subnets[FEDERATED]
    contributors = [
        c
        for c in devnet.processes.children
        if c.netuid == netuid and c.role == "miner" and c.behaviour != "serve"
    ]
    deadline = time.monotonic() + FEDERATION_START_TIMEOUT_S
    while True:
        lineage = await client.get_lineage()
        if sum(c["netuid"] == netuid for c in lineage["data_commitments"]) >= len(contributors):
            break
        dead = devnet.processes.find_dead()
        if dead is not None:
            raise DevnetError(f"{dead.name} exited before committing to its data; see {dead.log}")
        if time.monotonic() > deadline:
            raise DevnetError("the federated contributors did not all commit to their data")
        await asyncio.sleep(0.5)
    body = StartFederation(
        netuid=netuid,
        model=encode_vector(federated.make_initial_model()),
        commit_blocks=FEDERATED_WINDOW_BLOCKS,
        reveal_blocks=FEDERATED_WINDOW_BLOCKS,
    )
    await submit_and_wait(
        client, Keypair(compute_dev_seed("dev0")), body, "starting the federation"
    )


async def report_rounds(devnet: Devnet, client: NodeClient, seen: set[tuple[int, int]]) -> None:
    """One line per recorded federated round: the model's accuracy on held-out test rows, and
    each contributor's share of the round's credit."""
    if FEDERATED not in devnet.subnets:
        return
    netuid = devnet.subnets[FEDERATED]
    names = {
        c.hotkey: c.name.split("-", 1)[-1] for c in devnet.processes.children if c.role == "miner"
    }
    for record in (await client.get_lineage())["rounds"]:
        key = (record["netuid"], record["round"])
        if record["netuid"] != netuid or key in seen:
            continue
        seen.add(key)
        current = await client.get_federation(netuid)
        accuracy = ""
        if current["model_hash"] == record["model_hash"]:
            model = (await client.get_federated_model(record["model_hash"]))["parameters"]
            test = federated.load_pools().test
            accuracy = f"accuracy {federated.compute_accuracy(model, test):.3f}  "
        total = sum(c["credit_u16"] for c in record["contributions"]) or 1
        shares = ", ".join(
            f"{names.get(c['hotkey'], c['hotkey'][-8:])} {100 * c['credit_u16'] / total:.0f}%"
            for c in record["contributions"]
        )
        block, number = record["recorded_at"], record["round"]
        devnet.config.say(f"block {block:>5}  federated round {number}: {accuracy}{shares}")


async def wait_until_serving(devnet: Devnet, client: NodeClient) -> None:
    """Until every miner's endpoint and every validator's stake is on chain: one line per
    process as it becomes ready, and who is still loading when nothing moved for a while."""
    participants = [c for c in devnet.processes.children if c.role in ("miner", "validator")]
    started = time.monotonic()
    deadline = started + START_TIMEOUT_S
    done: list[Child] = []
    quiet_since = started
    while True:
        dead = devnet.processes.find_dead()
        if dead is not None:
            raise DevnetError(f"{dead.name} exited:\n{tail(dead.log)}")
        ready = await _ready_hotkeys(devnet, client)
        now = time.monotonic()
        for child in participants:
            if child.hotkey in ready and child not in done:
                done.append(child)
                quiet_since = now
                count = f"{len(done)}/{len(participants)}"
                devnet.config.say(f"  ready {count}: {child.name}  ({now - started:.0f} s)")
        waiting = [c.name for c in participants if c not in done]
        if not waiting:
            return
        if now - quiet_since >= PROGRESS_EVERY_S:
            quiet_since = now
            more = f" and {len(waiting) - 4} more" if len(waiting) > 4 else ""
            devnet.config.say(f"  loading {', '.join(waiting[:4])}{more}  ({now - started:.0f} s)")
        if now > deadline:
            raise DevnetError(f"not ready after {START_TIMEOUT_S:.0f} s: {', '.join(waiting)}")
        await asyncio.sleep(0.5)


async def _ready_hotkeys(devnet: Devnet, client: NodeClient) -> set[str]:
    """Miners that published an endpoint; validators that hold their stake."""
    ready = set()
    for netuid in devnet.subnets.values():
        graph = await client.get_metagraph(netuid)
        for neuron in graph["neurons"]:
            if neuron["endpoint"] or neuron["stake"] >= VALIDATOR_STAKE:
                ready.add(neuron["hotkey"])
    return ready


async def start_gateway(devnet: Devnet) -> None:
    """The developer's OpenAI-compatible gateway, paying miners from the developer wallet."""
    argv = _agora(
        "gateway",
        "--wallet",
        DEVELOPER,
        "--wallet-dir",
        str(devnet.data_dir / "wallets"),
        "--node",
        devnet.node_url,
        "--port",
        str(devnet.config.gateway_port),
        "--data-dir",
        str(devnet.data_dir / "gateway"),
    )
    child = devnet.processes.start("gateway", "gateway", argv, child_env())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            raise DevnetError(f"the gateway exited:\n{tail(child.log)}")
        match = _GATEWAY_URL.search(child.log.read_text(errors="replace"))
        if match:
            devnet.gateway_url = match.group(1)
            return
        await asyncio.sleep(0.1)
    raise DevnetError(f"the gateway did not start within 60 s:\n{tail(child.log)}")


def has_agent(config: DevnetConfig) -> bool:
    return config.agent and "embedding" in config.tasks


async def start_agent(devnet: Devnet) -> None:
    """The semantic-search agent: listed on the embedding subnet, selling search per call and
    buying each embedding from the subnet's miners (``agora service search-agent``)."""
    argv = _agora(
        "service",
        "search-agent",
        "--wallet",
        AGENT,
        "--hotkey",
        "default",
        "--wallet-dir",
        str(devnet.data_dir / "wallets"),
        "--node",
        devnet.node_url,
        "--netuid",
        str(devnet.subnets["embedding"]),
        "--json",
    )
    child = devnet.processes.start(AGENT, "agent", argv, child_env())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            raise DevnetError(f"the agent exited:\n{tail(child.log)}")
        match = _AGENT_STARTED.search(child.log.read_text(errors="replace"))
        if match:
            devnet.agent = json.loads(match.group(0))
            return
        await asyncio.sleep(0.1)
    raise DevnetError(f"the agent did not start within 60 s:\n{tail(child.log)}")


def describe(devnet: Devnet, epochs: dict[int, int]) -> str:
    """What runs and how to use it; ``epochs``: each subnet's epoch index now (netuid ->)."""
    url = devnet.node_url
    lines = [
        "",
        "Agora devnet is running.",
        f"  node API   {url}/v1   (OpenAPI: {url}/v1/openapi.json, metrics: {url}/metrics)",
        f"  explorer   {url}/   (every block, transfer and reward, each reward explained)",
    ]
    if devnet.gateway_url:
        lines.append(
            f"  gateway    {devnet.gateway_url}   (OpenAI-compatible, pays miners per request)"
        )
    if devnet.agent:
        lines.append(
            f"  agent      {devnet.agent['url']}   ({devnet.agent['name']} "
            f"{devnet.agent['service_id']}: sells search, buys embeddings from the miners)"
        )
    if devnet.extra:
        lines.append(f"  ethereum   {devnet.extra['rpc']}  Inbox {devnet.extra['inbox']}")
    for task, netuid in devnet.subnets.items():
        members = [c for c in devnet.processes.children if c.netuid == netuid]
        miners = [c for c in members if c.role == "miner"]
        validators = [c for c in members if c.role == "validator"]
        cheaters = [c.behaviour for c in miners if c.behaviour != "honest"]
        lines.append(
            f"  subnet {netuid}   {task}: {len(miners)} miners"
            + (f" (cheating: {', '.join(cheaters)})" if cheaters else "")
            + f", {len(validators)} validators, at epoch {epochs[netuid]}"
        )
    lines += [
        f"  logs       {devnet.data_dir / 'logs'}",
        f"  wallets    {devnet.data_dir / 'wallets'}  (password: {WALLET_PASSWORD})",
        "",
        "Try:",
        f"  agora subnet list --node {url}",
        f"  agora subnet show {next(iter(devnet.subnets.values()), 1)} --node {url}",
        f"  tail -f {devnet.data_dir / 'logs'}/*validator-0.log",
    ]
    if devnet.gateway_url:
        lines += [
            f"  curl {devnet.gateway_url}/models",
            f"  curl {devnet.gateway_url}/embeddings -H 'Content-Type: application/json' "
            """-d '{"model": "all-MiniLM-L6-v2", "input": "hello"}'""",
            f"  OPENAI_BASE_URL={devnet.gateway_url} OPENAI_API_KEY=unused python your_app.py",
        ]
    if devnet.agent:
        wallets = devnet.data_dir / "wallets"
        payer = DEVELOPER if devnet.config.gateway else AGENT
        lines += [
            f"  agora service list --node {url}",
            '  agora service call --tag search --args \'{"query": "how are miners paid?"}\' '
            f"--wallet {payer} --wallet-dir {wallets} --node {url}",
            f"  agora mcp --wallet {payer} --wallet-dir {wallets} --node {url}   "
            "(every service as an MCP tool)",
        ]
    if FEDERATED in devnet.subnets:
        lines += [
            f"  curl {url}/v1/federations/{devnet.subnets[FEDERATED]}   (the current round)",
            f"  agora lineage export --out {devnet.data_dir / 'lineage'} --node {url}",
            f"  agora lineage show <model hash or agr1... account> --node {url}",
        ]
        if devnet.gateway_url:
            lines += [
                f'  curl {devnet.gateway_url}/agora/predictions -d \'{{"model": '
                f'"{federated.MODEL_NAME}", "input": [[0, 3, ...64 pixels]]}}\'   '
                "(the trained model; pays its data contributors)",
            ]
    lines += governance_hint(
        devnet.data_dir,
        url,
        [c.name for c in devnet.processes.children if c.role == "validator"],
        [c.name for c in devnet.processes.children if c.role == "miner"],
    )
    lines += [
        "",
        "Incentive per subnet is printed at every epoch. Ctrl-C stops everything.",
    ]
    return "\n".join(lines)


def governance_hint(
    data_dir: Path, url: str, validators: list[str], miners: list[str]
) -> list[str]:
    """How to propose and vote: a validator's wallet votes with its stake, a miner's with
    what its work earned; proposals here vote for 60 blocks (the dev chain's tracks)."""
    if not validators:
        return []
    wallets = f"--wallet-dir {data_dir / 'wallets'} --node {url}"
    proposal = data_dir / "proposal.json"
    lines = [
        "",
        "Govern (AGORA_WALLET_PASSWORD=" + WALLET_PASSWORD + "; every wallet above can vote):",
        f"""  echo '{{"kind": "param_change", "changes": {{"min_fee": 2000}}}}' > {proposal}""",
        f"  agora gov propose {proposal} --wallet {validators[0]} {wallets}",
        f"  agora gov vote 0 yes --wallet {validators[0]} {wallets}",
    ]
    if miners:
        lines.append(f"  agora gov vote 0 no --wallet {miners[0]} {wallets}")
    lines += [f"  agora gov show 0 --node {url}", f"  agora treasury show --node {url}"]
    return lines


async def report_epochs(devnet: Devnet, client: NodeClient, seen: dict[int, int]) -> None:
    """One line per subnet whenever its epoch advances: who earns, honest or not. Epochs that
    ran before the devnet was running are not shown (``seen`` starts with them), and an epoch
    that paid no miner says why rather than showing every miner at 0%."""
    names = {c.hotkey: c for c in devnet.processes.children}
    for task, netuid in devnet.subnets.items():
        graph = await client.get_metagraph(netuid)
        epoch = graph["subnet"]["epoch_index"]
        if seen.get(netuid, epoch) == epoch:
            seen[netuid] = epoch
            continue
        seen[netuid] = epoch
        total = sum(n["incentive"] for n in graph["neurons"])
        parts = []
        for neuron in graph["neurons"]:
            child = names.get(neuron["hotkey"])
            if child is None or child.role != "miner":
                continue
            label = child.name.removeprefix(f"{task}-")  # a kind may hold "-" itself
            parts.append(f"{label} {100 * neuron['incentive'] / (total or 1):.0f}%")
        if total > 0:
            devnet.paying.add(netuid)
            shares = ", ".join(parts)
        elif netuid in devnet.paying:
            shares = "no miner paid (no validator's weights rate any miner)"
        elif graph["subnet"]["hyperparameters"]["commit_reveal"]:
            shares = "no weights in effect yet (committed weights count an epoch later)"
        else:
            shares = "no weights in effect yet"
        devnet.config.say(f"block {graph['block']:>5}  {task:<14} epoch {epoch}: {shares}")


async def current_epochs(devnet: Devnet, client: NodeClient) -> dict[int, int]:
    """Each subnet's epoch index now: where the devnet's epoch lines start."""
    return {
        netuid: (await client.get_metagraph(netuid))["subnet"]["epoch_index"]
        for netuid in devnet.subnets.values()
    }


async def run_devnet(config: DevnetConfig, stop: asyncio.Event) -> None:
    """Start everything, report until ``stop`` is set, then stop every process."""
    prepare_data_dir(config.data_dir)
    devnet = Devnet(config, Processes(config.data_dir / "logs"))
    say = config.say
    try:
        say(f"Starting a fresh Agora devnet in {config.data_dir}")
        await start_node(devnet)
        say(f"  node       {devnet.node_url}")
        async with NodeClient(devnet.node_url) as client:
            await create_subnets(devnet, client)
            say("  subnets    " + ", ".join(f"{t} = {n}" for t, n in devnet.subnets.items()))
            plan = plan_participants(config)
            names = [name for name, *_ in plan] + ([DEVELOPER] if config.gateway else [])
            names += [AGENT] if has_agent(config) else []
            await fund_wallets(devnet, client, names)
            say(f"  wallets    {len(names)} funded")
            await prepare_models(devnet, stop)
            if stop.is_set():
                return
            start_participants(devnet, plan)
            say(f"Starting {len(plan)} miner and validator processes, each loading its model ...")
            await run_until_stopped(stop, wait_until_serving(devnet, client))
            if stop.is_set():
                return
            if config.gateway:
                await start_gateway(devnet)
            if has_agent(config):
                await start_agent(devnet)
            if FEDERATED in devnet.subnets:
                await start_federation(devnet, client)
            seen = await current_epochs(devnet, client)
            say(describe(devnet, seen))
            rounds: set[tuple[int, int]] = set()
            while not stop.is_set():
                dead = devnet.processes.find_dead()
                if dead is not None:
                    say(f"warning: {dead.name} exited ({dead.process.returncode}); log: {dead.log}")
                    devnet.processes.children.remove(dead)
                with contextlib.suppress(AgoraError):
                    await report_epochs(devnet, client, seen)
                    await report_rounds(devnet, client, rounds)
                await wait_for_stop(stop, 1.0)
    finally:
        say("Stopping every devnet process ...")
        await asyncio.to_thread(devnet.processes.stop_all)
        say("Stopped.")
