"""The explorer: every block, transaction, payout and reward of the ledger, in a browser.

The node serves it (``agora node run`` hands ``server.install`` to ``run_node``), with no
request to any other host: pages are HTML written on the server, charts are SVG, and the one
script (table sorting, the live block stream) and style sheet live in ``static/``.

- ``errors.py``: the explorer's errors (codes 3800-3849).
- ``index.py``: the SQLite index beside the node's store, built by replaying the blocks from
  genesis: transactions and receipts, the addresses they name, per-block supply and treasury,
  and each epoch's inputs and per-neuron outputs.
- ``why.py``: an epoch recomputed from its stored inputs by the protocol's reference Yuma,
  compared with what the ledger paid.
- ``html.py``: escaping, the layout, tables, SVG charts.
- ``server.py``: the pages, their JSON twins under ``/v1/explorer``, and ``install``.
- ``openapi.py``: the OpenAPI description of the twins (``/v1/explorer/openapi.json``).
"""
