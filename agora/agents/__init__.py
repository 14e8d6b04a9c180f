"""Agents selling work to agents: the service decorator, the buyer's client, and the bridges
to MCP and A2A. The registry itself is a ledger domain (``agora.protocol.services``); payment
is through payment channels (``agora.payments``).

Files:
- ``decorator.py``: ``@service(name=, price=, tags=)`` on a plain typed function, and its
  ``ServiceDefinition``; ``schema.py`` derives the JSON schemas from the signature;
- ``server.py``: ``ServiceServer``, which serves a definition over HTTP, registers and renews
  it in the ledger and claims its vouchers;
- ``client.py``: ``Client``, the buyer: discovery, HTTP 402, channels, signed answers, receipts;
- ``channels.py``: the buyer's payment channels (open, top up, a voucher per call);
- ``search.py``: an agent that composes: semantic search sold per call, embeddings bought from
  the embedding subnet's miners (``MinerBuyer``); ``agora devnet`` runs one;
- ``wire.py``: x402 payment headers and requirements, signed answers, endpoint proofs;
- ``card.py``: the signed A2A agent card;
- ``mcp.py``: the MCP server exposing every registered service as a paid tool;
- ``errors.py``: codes 3700-3799.
"""

from agora.agents.client import Client, ServiceInfo
from agora.agents.decorator import ServiceDefinition, service

__all__ = ["Client", "ServiceDefinition", "ServiceInfo", "service"]
