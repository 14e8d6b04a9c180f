"""Keys, the encrypted keystore, and signing: how a person or a process holds its keys.

- ``keys.py``: ``Keypair``, an ed25519 key built from a 32-byte seed, with its ``agr1...``
  address; ``is_valid_signature`` to check a signature.
- ``keystore.py``: keyfile formats (the coldkey encrypted with argon2id and
  XSalsa20-Poly1305, the hotkey stored in the clear with mode 0600) and ``Keystore``, the
  wallets under one root directory: create, import, export, list, load.
- ``errors.py``: ``WalletError`` and its subclasses, codes 3100-3199.

The ``agora wallet`` commands are a thin shell over ``Keystore`` in ``agora/cli/wallet.py``.
"""
