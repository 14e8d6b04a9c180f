"""The explorer in Debian's Chromium, driven by Playwright, on a node with a running incentive
flow: a subnet of staked validators setting weights, miners, epochs every few blocks.

Every page renders (screenshots under ``.artifacts/explorer``), its links answer, tables sort,
charts draw their data points, a search finds a hotkey, the live block stream adds rows, and
no request leaves for another host (every request is intercepted; any other host fails the
test). Bad input gets a clear page with its status; markup in a transaction or an endpoint
renders as text.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlparse

import pytest
from node_helpers import NodeProcess, NodeProcesses, get_dev_keys, http, wait_for

from agora.client.client import NodeClient
from agora.client.participant import submit_and_wait
from agora.protocol.address import Address
from agora.protocol.params import BASE_UNITS_PER_AGR
from agora.protocol.staking import AddStake
from agora.protocol.subnets import NO_HOTKEY, CreateSubnet, Register, Serve, SetHyperparameter
from agora.protocol.weights import SetWeights
from agora.wallet.keys import Keypair

playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-quic",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / ".artifacts" / "explorer"
KEYS = [Keypair(bytes.fromhex(key.seed_hex)) for key in get_dev_keys(6)]
OWNER, VALIDATOR_A, VALIDATOR_B = KEYS[:3]
MINERS = KEYS[3:6]
INJECTED = "<script>window.pwned=1</script><b id=injected>bold</b>"
AGR = BASE_UNITS_PER_AGR

pytestmark = pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="needs /usr/bin/chromium")


async def start_flow(url: str) -> dict[str, Any]:
    """A subnet (tempo 3) with two staked validators weighting three miners."""
    async with NodeClient(url) as client:
        config = '{"note": "' + INJECTED.replace('"', '\\"') + '"}'
        create = CreateSubnet(task_kind="embedding", task_config=config, owner_hotkey=NO_HOTKEY)
        created = await submit_and_wait(client, OWNER, create, "creating a subnet")
        (subnet,) = await client.list_subnets()
        netuid = subnet["netuid"]
        for name, value in (("tempo", 3), ("weights_rate_limit", 0), ("commit_reveal", 0)):
            body = SetHyperparameter(netuid=netuid, name=name, value=value)
            await submit_and_wait(client, OWNER, body, f"setting {name}")
        for key in (VALIDATOR_A, VALIDATOR_B, *MINERS):
            register = Register(netuid=netuid, hotkey=Address(key.public_key))
            await submit_and_wait(client, key, register, "registering")
        for key, amount in ((VALIDATOR_A, 300), (VALIDATOR_B, 100)):
            stake = AddStake(hotkey=Address(key.public_key), amount=amount * AGR)
            await submit_and_wait(client, key, stake, "staking")
        serve = Serve(netuid=netuid, endpoint="http://127.0.0.1:1/" + INJECTED)
        await submit_and_wait(client, MINERS[0], serve, "serving")
        for _ in range(600):  # permits come with the next epoch (tempo 3, 100 ms blocks)
            graph = await client.get_metagraph(netuid)
            if all(n["validator_permit"] for n in graph["neurons"][:2]):
                break
            await asyncio.sleep(0.1)
        for key, values in (
            (VALIDATOR_A, (60_000, 30_000, 10_000)),
            (VALIDATOR_B, (50_000, 40_000, 5_000)),
        ):
            weights = SetWeights(netuid=netuid, uids=(2, 3, 4), values=values, version_key=0)
            await submit_and_wait(client, key, weights, "setting weights")
        return {"netuid": netuid, "create_hash": created["hash"] if "hash" in created else None}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    processes = NodeProcesses(tmp_path_factory.mktemp("logs"))
    try:
        yield processes.run(tmp_path_factory.mktemp("explorer"), block_time_ms=100)
    finally:
        processes.stop_all()


@pytest.fixture(scope="module")
def flow(node: NodeProcess) -> dict[str, Any]:
    # Playwright's sync API runs an event loop in this thread: the flow runs in another.
    with ThreadPoolExecutor(1) as pool:
        found = pool.submit(asyncio.run, start_flow(node.url)).result()
    netuid = found["netuid"]

    def paid_epochs() -> bool:
        answer = node.get_json(f"/v1/explorer/subnets/{netuid}")
        return len(answer["epochs"]) >= 4 and any(n["emission"] for n in answer["neurons"])

    wait_for(paid_epochs, 60, "four indexed epochs that paid")
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any, node: NodeProcess) -> Iterator[Any]:
    """A page whose every request is checked: any host but the node's fails the test."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    origin = urlparse(node.url).netloc
    foreign: list[str] = []
    errors: list[str] = []

    def guard(route: Any) -> None:
        if urlparse(route.request.url).netloc == origin:
            route.continue_()
        else:
            foreign.append(route.request.url)
            route.abort()

    context.route("**/*", guard)
    opened = context.new_page()
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    context.close()
    assert foreign == [], f"requests to other hosts: {foreign}"
    assert errors == [], f"script errors: {errors}"


def visit(page: Any, node: NodeProcess, path: str, name: str, status: int = 200) -> Any:
    response = page.goto(node.url + path)
    assert response.status == status, (path, response.status, page.content()[:2000])
    assert page.locator("h1").count() == 1
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    return response


def internal_links(page: Any, node: NodeProcess) -> set[str]:
    hrefs = page.eval_on_selector_all("a[href]", "links => links.map(a => a.getAttribute('href'))")
    return {urljoin(node.url + "/", href) for href in hrefs if href.startswith("/")}


def pages_of(node: NodeProcess, flow: dict[str, Any]) -> dict[str, str]:
    netuid = flow["netuid"]
    graph = node.get_json(f"/v1/explorer/subnets/{netuid}")
    epoch = graph["epochs"][0]["epoch"]
    txs = node.get_json("/v1/explorer/transactions")["transactions"]
    miner = graph["neurons"][2]
    return {
        "overview": "/",
        "blocks": "/blocks",
        "block": "/blocks/3",
        "transactions": "/transactions",
        "transaction": f"/transactions/{txs[-1]['hash']}",
        "account": f"/accounts/{miner['coldkey']}",
        "subnets": "/subnets",
        "subnet": f"/subnets/{netuid}",
        "validators": f"/subnets/{netuid}/validators",
        "neuron": f"/subnets/{netuid}/uids/2",
        "why": f"/subnets/{netuid}/epochs/{epoch}/uids/2",
        "channels": "/channels",
        "governance": "/governance",
        "treasury": "/treasury",
        "services": "/services",
        "lineage": "/lineage",
    }


def test_every_page_renders_and_its_links_answer(
    page: Any, node: NodeProcess, flow: dict[str, Any]
) -> None:
    links: set[str] = set()
    for name, path in pages_of(node, flow).items():
        visit(page, node, path, name)
        links |= internal_links(page, node)
        twin = page.locator("footer a")
        assert twin.count() == 1, f"{path} has no JSON twin link"
        answer = http("GET", urljoin(node.url, twin.get_attribute("href")))
        assert answer.status == 200 and answer.json() is not None
    assert len(links) > 30
    for href in sorted(links):
        answer = http("GET", href)
        assert answer.status == 200, (href, answer.status)


def test_the_metagraph_sorts_by_a_column(
    page: Any, node: NodeProcess, flow: dict[str, Any]
) -> None:
    visit(page, node, f"/subnets/{flow['netuid']}", "subnet-sorted")
    headers = page.locator("#metagraph thead th")
    names = [headers.nth(i).inner_text().strip() for i in range(headers.count())]
    column = names.index("stake")

    def stakes() -> list[int]:
        cells = page.locator(f"#metagraph tbody tr td:nth-child({column + 1})")
        return [int(cells.nth(i).inner_text()) for i in range(cells.count())]

    headers.nth(column).click()
    assert stakes() == sorted(stakes()) and len(set(stakes())) > 1
    headers.nth(column).click()
    assert stakes() == sorted(stakes(), reverse=True)


def test_the_neuron_charts_draw_their_points(
    page: Any, node: NodeProcess, flow: dict[str, Any]
) -> None:
    visit(page, node, f"/subnets/{flow['netuid']}/uids/2", "neuron-chart")
    assert page.locator("#scores-chart circle.point").count() >= 4 * 4
    assert page.locator("#emission-chart circle.point").count() >= 4
    assert page.locator("#emission-chart polyline").count() == 1


def test_the_why_page_equals_the_ledger(page: Any, node: NodeProcess, flow: dict[str, Any]) -> None:
    netuid = flow["netuid"]
    for epoch in node.get_json(f"/v1/explorer/subnets/{netuid}")["epochs"][:3]:
        path = f"/subnets/{netuid}/epochs/{epoch['epoch']}/uids/2"
        visit(page, node, path, f"why-{epoch['epoch']}")
        assert "bit for bit" in page.locator("#verdict").inner_text()
        assert page.locator("#weights tbody tr").count() == 2  # both validators weighted uid 2
        answer = node.get_json("/v1/explorer" + path)
        assert (
            answer["matches"] and answer["ledger"]["emission"] == answer["recomputed"]["emission"]
        )


def test_search_finds_a_hotkey(page: Any, node: NodeProcess, flow: dict[str, Any]) -> None:
    hotkey = node.get_json(f"/v1/explorer/subnets/{flow['netuid']}")["neurons"][3]["hotkey"]
    visit(page, node, "/", "search-start")
    page.fill("form.search input[name=q]", hotkey)
    page.click("form.search button")
    page.wait_for_url(re.compile(r"/search\?q="))
    result = page.locator("#results a", has_text="uid 3")
    assert result.count() == 1
    result.click()
    page.wait_for_url(re.compile(rf"/subnets/{flow['netuid']}/uids/3$"))
    page.screenshot(path=str(ARTIFACTS / "search-result.png"), full_page=True)


def test_the_overview_streams_new_blocks(
    page: Any, node: NodeProcess, flow: dict[str, Any]
) -> None:
    visit(page, node, "/", "overview-live")
    first = int(page.locator("#head-height").inner_text())
    # The page has no row for a block after it loaded until the stream delivers one.
    for _ in range(300):
        if int(page.locator("#head-height").inner_text()) > first + 2:
            break
        page.wait_for_timeout(100)
    assert int(page.locator("#head-height").inner_text()) > first + 2
    newest = int(page.locator("#live tbody tr td a").first.inner_text())
    assert newest > first
    assert page.locator("#supply-chart circle.point").count() > 10


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/blocks/99999999", 404, 3801),
        ("/blocks/0x" + "ab" * 32, 404, 3801),
        ("/blocks/0xnothex", 400, 3802),
        ("/blocks/-1", 400, 3802),
        ("/transactions/0x" + "cd" * 32, 404, 3801),
        ("/accounts/agr1notanaddress", 400, 3802),
        ("/subnets/1/uids/999", 404, 3801),
        ("/subnets/77", 404, None),
        ("/subnets/1/epochs/99999/uids/0", 404, 3801),
        ("/subnets/1/epochs/1/uids/9999", 404, 3801),
        ("/search?q=%3Cscript%3E", 400, 3802),
    ],
)
def test_bad_input_gets_a_clear_page(
    page: Any, node: NodeProcess, flow: dict[str, Any], path: str, status: int, code: int | None
) -> None:
    name = "bad-" + re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-")[:40]
    visit(page, node, path, name, status)
    text = page.locator("main").inner_text()
    assert "Traceback" not in page.content()
    if code is not None:
        assert str(code) in text


def test_markup_in_ledger_text_renders_as_text(
    page: Any, node: NodeProcess, flow: dict[str, Any]
) -> None:
    for path, name in ((f"/subnets/{flow['netuid']}", "injected-subnet"), ("/transactions", None)):
        visit(page, node, path, name or "injected-list")
    visit(page, node, f"/subnets/{flow['netuid']}", "injected-subnet")
    assert INJECTED in page.locator("main").inner_text()
    assert page.locator("#injected").count() == 0
    assert page.evaluate("window.pwned") is None
