"""The validator process: challenge miners, score them, set weights."""
