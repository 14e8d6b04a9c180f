"""Where transactions get their order.

Files:
- ``base.py``: the ``Sequencer`` interface, ``OrderedBatch``, and the ``PendingPool`` a
  sequencer persists accepted transactions into.
- ``local.py``: the embedded sequencer (the node orders and seals blocks itself).
- ``ethereum/``: the Inbox contract sequencer: Ethereum orders, every node derives.
"""
