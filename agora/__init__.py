"""Agora: an open network for AI work, paid by a ledger in proportion to measured quality.

The layers, lowest first. A package imports only from layers below its own, never from a
package beside it (what two of them share moves down a layer), and nothing imports upwards;
``tests/test_layers.py`` checks every import, at module level and inside functions.

 0. ``errors.py``     the root of every error (``AgoraError``: a stable code, a message).
    ``process.py``    how a long-running process stops: SIGINT/SIGTERM set an event.
 1. ``protocol/``     the ledger state machine: pure, deterministic, integer-only. The spec.
 2. ``wallet/``       keys, the encrypted keystore, signing.
    ``amounts.py``    AGR as people write it (``0.5``) and base units, both ways, exactly.
    ``lineage.py``    walks the ledger's lineage records (data, rounds, models, servers)
                      and exports them as W3C PROV-JSON and OpenLineage run events.
 3. ``sequencer/``    where transactions get their order: local, or an Ethereum Inbox.
 4. ``node/``         the node: store, mempool, block production or following, HTTP API.
 5. ``client/``       ``NodeClient``, the node API from Python; building and sending
                      transactions; a participant's first steps on a subnet.
 6. ``neuron/``       the signed request protocol between participants (server and client).
 7. ``tasks/``        kinds of AI work: challenge, serve, score.
 8. ``payments/``     prices, vouchers, cost estimates and payment errors, shared by every
                      seller and buyer.
 9. ``miner/``        the miner process.
    ``validator/``    the validator process.
    ``gateway/``      the developer's OpenAI-compatible API, paid through channels.
    ``agents/``       the service decorator, the buyer's client, the MCP and A2A bridges.
    ``web/``          the explorer and its index. The node serves it, but the node does not
                      import it: the command that runs a node (``cli/``) hands the explorer's
                      routes to ``node.runner.run_node``, as it hands a follower its leader.
10. ``devnet.py``     ``agora devnet``: a whole network on one machine.
    ``simulate.py``   ``agora simulate``: Yuma epochs from a JSON scenario, through the
                      protocol's own consensus code; governance scenarios (stakes,
                      earnings, proposals, votes) through the ledger itself. Its JSON is the
                      node's wire form.
11. ``cli/``          the ``agora`` command (``__main__.py``: ``python -m agora``).

Where the order names a package that is not here yet, it is its place when it comes.
"""
