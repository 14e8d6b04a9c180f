"""The miner process: serve one subnet task over the neuron protocol."""
