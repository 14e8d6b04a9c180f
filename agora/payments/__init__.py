"""Paying for work per request: prices, vouchers and payment errors, shared by every seller
(the miner) and every buyer (the gateway).

The pure half (no I/O, integers only):
- ``prices.py``: ``Price`` (base units per request, item or thousand tokens), its text and
  its place in a published endpoint (``parse_endpoint``), and the cost of a request;
- ``vouchers.py``: the voucher on the wire, under a request's ``"payment"`` key, and the hold
  that stands for it when the buyer pays only answers it accepts (its verdict comes later);
- ``books.py``: the seller's books: what it knows of each channel, the checks on a voucher
  and the credit rule that keeps it paid for every request that succeeded and for none that
  failed, and the holds it does on credit until their verdict;
- ``errors.py``: the refusals, codes 3520-3539, with their data as attributes, and
  ``decode_payment_error`` for a buyer to read a refusal back as its class.

The I/O half:
- ``head.py``: ``HeadCache``, the chain's head through the node API, read at most so often;
- ``gate.py``: ``PaymentGate``, the seller's gate: channels read from the node, vouchers
  admitted through the books, kept on disk before the answer, claims sent on chain;
- ``store.py``: ``VoucherStore``, the best settled voucher of each channel in SQLite
  (fsynced), so a restarted seller claims what a killed one earned.

The buyer's side of channels (opening, topping up, one voucher per call) is
``agora.gateway.channels``.
"""
