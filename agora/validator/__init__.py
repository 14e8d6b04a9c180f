"""The validator process: challenge miners, score them, set weights.

Files:
- ``validator.py``: ``ValidatorConfig``, ``Validator`` and ``run_validator``: a round of
  challenges, spot-checked answers and scores, then weights committed and revealed.
- ``scores.py``: moving averages of miners' scores and the integer weights they become.
- ``federated.py``: a federated subnet's validator: scores each round's revealed updates on
  its own held-out rows, sets weights, posts the round record after the epoch.
- ``schedule.py``: when a commit or a reveal may be sent, from the subnet's epoch schedule.
"""
