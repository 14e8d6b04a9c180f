"""Typed async client for the node API.

Files:
- ``client.py``: ``NodeClient``, one method per route; errors come back as ``NodeApiError``
  with the server's stable code.
- ``transactions.py``: build, sign and send a transaction from a key.
- ``participant.py``: what a miner or validator does on chain before it works: register,
  fund its hotkey, stake, publish its endpoint; each step waits for its receipt.
"""

from agora.client.client import NodeApiError, NodeClient

__all__ = ["NodeApiError", "NodeClient"]
