"""Every JSON twin the explorer serves is described in its OpenAPI document, and each page's
path is one of the explorer's routes (none shadows a node route)."""

from __future__ import annotations

from pathlib import Path

from agora.node.api import create_app
from agora.node.devchain import create_dev_genesis
from agora.node.node import Node, NodeConfig
from agora.node.store import Store
from agora.web.openapi import OPENAPI
from agora.web.server import EXPLORER, ROUTES, install


def test_every_json_twin_is_described() -> None:
    twins = {route.path for route in ROUTES if route.path.startswith("/v1/")}
    assert twins == set(OPENAPI["paths"])


def test_the_explorer_adds_routes_beside_the_nodes(tmp_path: Path) -> None:
    store = Store(tmp_path / "node.db")
    node = Node(
        NodeConfig(data_dir=tmp_path), store, store.initialize(create_dev_genesis(2, 1_763_700_000))
    )
    app = create_app(node)
    before = {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource}
    install(app, node)
    after = [(r.method, r.resource.canonical) for r in app.router.routes() if r.resource]
    assert len(after) == len(set(after)), "a route is served twice"
    added = set(after) - before
    assert {path for _, path in added} >= {"/", "/v1/explorer/openapi.json"}
    assert not any(
        path.startswith("/v1/") and not path.startswith("/v1/explorer/") for _, path in added
    )
    assert (tmp_path / "explorer.db").exists()
    app[EXPLORER].index.close()
    app[EXPLORER].blocks.close()
    store.close()
