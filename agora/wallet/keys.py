"""Ed25519 keypairs: the one kind of key Agora uses, for coldkeys and hotkeys alike.

A keypair is built from a 32-byte seed, which is all a keyfile needs to store. The address
(``agr1...``) is derived from the public key, so a keyfile's stated address can always be
checked against its seed.
"""

from __future__ import annotations

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from agora.protocol.address import PUBLIC_KEY_SIZE, encode_address
from agora.wallet.errors import InvalidSeed

SEED_SIZE = 32
SIGNATURE_SIZE = 64


class Keypair:
    """An ed25519 signing key with its public key and address; its repr never shows the seed."""

    __slots__ = ("_signing_key", "public_key", "address")

    def __init__(self, seed: bytes) -> None:
        if not isinstance(seed, bytes) or len(seed) != SEED_SIZE:
            raise InvalidSeed(f"a seed is {SEED_SIZE} bytes")
        self._signing_key = SigningKey(seed)
        self.public_key: bytes = bytes(self._signing_key.verify_key)
        self.address: str = encode_address(self.public_key)

    @classmethod
    def generate(cls) -> Keypair:
        """A new keypair from the operating system's random generator."""
        return cls(bytes(SigningKey.generate()))

    @classmethod
    def from_seed_hex(cls, text: str) -> Keypair:
        return cls(parse_seed_hex(text))

    @property
    def seed(self) -> bytes:
        return bytes(self._signing_key)

    def sign(self, message: bytes) -> bytes:
        """The 64-byte detached signature of ``message``."""
        return self._signing_key.sign(message).signature

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Keypair) and other.public_key == self.public_key

    def __hash__(self) -> int:
        return hash(self.public_key)

    def __repr__(self) -> str:
        return f"Keypair(address={self.address!r})"


def parse_seed_hex(text: str) -> bytes:
    """Read a seed written as 64 hex characters (an ``0x`` prefix is allowed)."""
    cleaned = text.strip().lower().removeprefix("0x")
    try:
        seed = bytes.fromhex(cleaned)
    except ValueError:
        raise InvalidSeed("the seed is not hexadecimal: expected 64 hex characters") from None
    if len(seed) != SEED_SIZE:
        raise InvalidSeed(
            f"the seed is {len(seed)} bytes, expected {SEED_SIZE} (64 hex characters)"
        )
    return seed


def is_valid_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is ``public_key``'s ed25519 signature of ``message``."""
    if len(public_key) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        VerifyKey(public_key).verify(message, signature)
    except BadSignatureError:
        return False
    return True
