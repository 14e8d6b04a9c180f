"""The ledger state machine: pure, deterministic, integer-only. This package is the spec.

Files:
- ``transition.py``: ``state_transition(state, block)``, the one entry point, and
  ``build_block`` for the sequencer.
- ``state.py``: the state (typed tables), its write journal and its lattice-hash commitment.
- ``transactions.py``: the envelope, canonical encoding, signing, ``validate_basic``.
- ``blocks.py``: headers, block hashes, the transactions Merkle root.
- ``codec.py``: the canonical byte encoding and the JSON form of every field type.
- ``address.py``: ``agr1...`` checksummed addresses of ed25519 public keys.
- ``params.py``, ``genesis.py``, ``invariants.py``, ``errors.py``: parameters, genesis,
  invariants and the error hierarchy with stable codes.
- ``domains.py``: the list of domain modules; ``accounts.py`` is accounts, fees, transfers;
  ``subnets.py``, ``staking.py``, ``weights.py``, ``emission.py`` the incentive layer
  (``consensus/`` holds Yuma); ``channels.py`` payment channels and their vouchers;
  ``federation.py`` the fixed-point models of federated subnets and their integer aggregate;
  ``services.py`` the service registry (agents selling work), its endpoint proofs and expiry.

Rules: no I/O, no clock, no randomness, no floats. Time and seeds arrive in the block.
"""
