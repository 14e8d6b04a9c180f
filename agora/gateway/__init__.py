"""The developer gateway: the OpenAI API on the developer's own machine, served by the
network's miners, paid per request through payment channels from the developer's wallet.

Files:
- ``config.py``: ``GatewayConfig``, the settings the CLI builds;
- ``errors.py``: the gateway's errors (codes 3600-3649), each with its HTTP status and OpenAI
  error type and code;
- ``catalog.py``: the models for sale, read from the chain (subnets, miners, prices);
- ``routing.py``: which miner answers (incentive, measured latency, load, rest after failure);
- ``channels.py``: the payer's side of payment channels: open, top up, extend, close, and a
  voucher per call;
- ``verification.py``: comparing miners' answers per task (spot samples, majorities);
- ``service.py``: ``Gateway.serve``, one request from model to paid, verified answer and
  receipt; the daily spend limit;
- ``store.py``: receipts and channels in SQLite;
- ``openai_wire.py``: the OpenAI JSON (requests, responses, streams, errors);
- ``openapi.py``: the OpenAPI 3.1 description of the gateway's routes, Agora's extensions
  (receipts, channels, predictions of trained federated models) included;
- ``server.py``: the HTTP routes and ``run_gateway``.

Prices, vouchers, payment errors and the miner's side of payments are ``agora.payments``.
"""
