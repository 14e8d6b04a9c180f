"""The ledger state machine: pure, deterministic, integer-only. This package is the spec.

Files, bottom layer first (imports go down, never up, and never inside a function):
- ``errors.py``: the error hierarchy with stable codes; ``address.py``: ``agr1...``
  checksummed addresses of ed25519 public keys; ``codec.py``: the canonical byte encoding
  and the JSON form of every field type; ``params.py``: the chain's parameters.
- ``state.py``: the state (typed tables), its write journal and its lattice-hash commitment.
- ``kinds.py``: what every transaction kind shares (``Transaction``, ``BlockContext``,
  ``TransactionKind``), below the domain modules.
- ``consensus/``: Yuma and the stateless rules around it (pure functions of plain values);
  ``federation.py``: the fixed-point models of federated subnets and their integer aggregate.
- The domain modules, one shape each (``domains.Domain``): ``accounts.py`` accounts, fees,
  transfers; ``staking.py``, ``subnets.py``, ``weights.py`` (with ``weight_commits.py``, the
  commits table both subnets and weights touch), ``channels.py`` payment channels and their
  vouchers, ``services.py`` the service registry (agents selling work), its endpoint proofs
  and expiry, ``data.py`` data commitments, federated rounds, model lineage and royalties,
  ``emission.py`` emission and epochs, ``voting_power.py`` verified contribution
  (what epochs paid for work) and vote locks, ``governance.py`` proposals, tracks, votes,
  timelocked enactment and treasury spends.
- ``domains.py``: the list of domain modules, their shape, the index of their kinds, and the
  checklist for adding a domain.
- ``transactions.py``: the envelope's canonical encoding, signing, ``validate_basic``;
  ``blocks.py``: headers, block hashes, the transactions Merkle root.
- ``genesis.py``, ``invariants.py``: the state at height 0, and the invariants.
- ``transition.py``: ``state_transition(state, block)``, the one entry point, whose body is
  the protocol's checklist; ``apply_block`` (a follower) and ``build_block`` (the sequencer)
  both run it.

Rules: no I/O, no clock, no randomness, no floats. Time and seeds arrive in the block.
"""
