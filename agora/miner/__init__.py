"""The miner process: serve one subnet task over the neuron protocol.

Files:
- ``miner.py``: ``MinerConfig`` and ``run_miner``: join the subnet, load the task's backend,
  serve validators (by stake) and paying callers (by voucher); honest or cheating behaviours
  for devnets and tests.
- ``payments.py``: the miner's payment gate: prices, the voucher check before the work, and
  claims on chain.
"""
