"""The governance pages on a real governed chain, served by the node's app with the explorer:
a proposal's tally, timeline and timelock, and its description's markup rendered as text."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
from aiohttp import web
from governance_helpers import NO, YES, Governed, text

from agora.node.api import create_app
from agora.node.node import Node, NodeConfig
from agora.node.store import Store
from agora.protocol.params import BASE_UNITS_PER_AGR
from agora.protocol.transition import apply_block
from agora.web.server import install

AGR = BASE_UNITS_PER_AGR
MARKUP = "<script>window.pwned=1</script><b id=injected>bold</b>"


async def fetch(data_dir: Path, paths: list[str]) -> list[tuple[int, str]]:
    store = Store(data_dir / "node.db")
    node = Node(NodeConfig(data_dir=data_dir), store, store.load_state())
    app = create_app(node)
    install(app, node)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    answers = []
    try:
        async with aiohttp.ClientSession() as session:
            for path in paths:
                async with session.get(url + path) as response:
                    answers.append((response.status, await response.text()))
    finally:
        await runner.cleanup()
        node.close()
        store.close()
    return answers


def test_a_proposal_page_shows_tally_timeline_and_escaped_text(tmp_path: Path) -> None:
    gov = Governed([300 * AGR, 200 * AGR, 100 * AGR])
    alice, bob, carol = gov.voters
    proposal = gov.propose(alice, text(MARKUP))
    gov.votes(proposal.id, (alice, YES), (bob, YES), (carol, NO))
    gov.close(proposal.id)
    store = Store(tmp_path / "node.db")
    state = store.initialize(gov.genesis)
    for block in gov.chain.blocks:
        store.commit_block(apply_block(state, block))
    store.close()
    assert state.state_root == gov.state.state_root
    answers = asyncio.run(
        fetch(
            tmp_path, ["/governance", f"/governance/{proposal.id}", "/governance/999", "/treasury"]
        )
    )
    (listed, _), (status, page), (missing, _), (treasury, _) = answers
    assert (listed, status, missing, treasury) == (200, 200, 404, 200)
    assert "Tally (voting power)" in page and "voting_ends_at" in page and "closed_at" in page
    assert MARKUP not in page and "&lt;script&gt;window.pwned=1&lt;/script&gt;" in page
    assert page.count('class="point"') == 4  # a bar per choice
