"""Kinds of AI work: for each, a challenge from a seed, a miner's handler, an integer score."""
