"""The miner process: serve one subnet task over the neuron protocol.

- ``miner.py``: ``MinerConfig`` and ``run_miner``: register, load the task's backend, serve
  staked callers free and paying callers through ``agora.payments``' gate.
"""
