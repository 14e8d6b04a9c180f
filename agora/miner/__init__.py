"""The miner process: serve one subnet task over the neuron protocol.

Files:
- ``miner.py``: ``MinerConfig`` and ``run_miner``: join the subnet, load the task's backend,
  serve validators (by stake) and paying callers (by voucher, through ``agora.payments``'
  gate); honest or cheating behaviours for devnets and tests.
- ``federated.py``: a data contributor's part in a federated subnet's rounds: its data
  commitment, then each round's update committed and revealed on chain.
"""
