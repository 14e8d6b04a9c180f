"""The node: follows a sequencer (or another node), applies blocks, stores state, serves the API.

Files:
- ``node.py``: ``Node`` and ``NodeConfig``: the state, the admission of transactions, block
  production from a sequencer's batches or re-execution of a leader's blocks.
- ``store.py``: the durable store (SQLite, WAL): one database transaction per block.
- ``worker.py``: the writer thread (every commit; group commit of pending transactions) and
  the builder thread (large blocks), which keep heavy work off the event loop.
- ``mempool.py``: admission checks (``validate_basic``, nonce, fee) and pending transactions.
- ``api.py``: the HTTP API under ``/v1``: thin handlers, one error envelope, metrics, health.
- ``openapi.py``: the OpenAPI description of that API, served at ``/v1/openapi.json``.
- ``wire.py``: conversions between protocol values and the API's JSON, in one place.
- ``errors.py``: the API's errors, codes 3000-3099.
- ``devchain.py``: dev chains: well-known funded accounts and the faucet.
- ``runner.py``: ``run_node``, the node process: store, API, block source, stop on a signal.
  A follower's leader and any extra routes are handed in by the command that runs it.
"""
