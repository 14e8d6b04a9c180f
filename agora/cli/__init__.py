"""The ``agora`` command: a thin shell that parses options, makes one call, prints the result.

Files:
- ``main.py``: the entry point; one sub-command group per area.
- ``common.py``: JSON or human output (``--json``), one-line coded errors, no tracebacks.
- ``wallet.py``: ``agora wallet`` (create, list, show, import, export keys).
- ``chain.py``: ``balance``, ``transfer``, ``tx``, ``block``, ``faucet``; the ``--node``
  option and the client every chain command shares.
- ``incentive.py``: ``agora subnet``, ``neuron``, ``stake``, ``weights`` and ``simulate``.
- ``channels.py``: ``agora channel``: open, top up, voucher, claim, close, show, list.
- ``node.py``: ``agora node run`` and ``agora node follow`` (it assembles the node process:
  the sequencer or the leader to follow), ``agora inbox deploy``.
- ``participants.py``: ``agora miner run``, ``agora validator run``, ``agora devnet``.
- ``gateway.py``: ``agora gateway`` and its ``receipts`` and ``channels``.
- ``governance.py``: ``agora gov`` (propose from a JSON file, vote, show, list, params) and
  ``agora treasury show``.
- ``services.py``: ``agora service`` (serve, search-agent, register, renew, list, show, call)
  and ``agora mcp``.
- ``lineage.py``: ``agora lineage show`` (a model, or an account) and ``agora lineage export``
  (W3C PROV-JSON and OpenLineage run events).
"""
