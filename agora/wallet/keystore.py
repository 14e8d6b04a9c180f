"""Where keys live on disk, and how a coldkey is kept safe there.

A coldkey holds funds, so its seed is only ever written encrypted: argon2id turns the
password into a key (salt and cost stored in the file, so the cost can be raised later
without breaking old files) and XSalsa20-Poly1305 (``nacl.secret.SecretBox``) seals the seed.
A hotkey signs for unattended miner and validator processes that cannot type a password, so
its seed is stored in the clear and protected by file permissions (0600) only.

Layout under a root directory the caller chooses::

    <root>/<wallet>/coldkey              encrypted seed (JSON)
    <root>/<wallet>/coldkeypub.json      the coldkey's address, readable without a password
    <root>/<wallet>/hotkeys/<name>.json  hotkey seed, plus the address of the coldkey owning it

Every directory is created 0700 and every file 0600, written to a temporary file, synced
and renamed into place, so a crash never leaves half a key. An existing key is never
replaced unless the caller says ``overwrite=True``.

The first half of this module converts keyfiles to and from bytes and does no I/O; the
second half (``Keystore``) reads and writes them.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nacl.exceptions import CryptoError
from nacl.pwhash import argon2id
from nacl.secret import SecretBox

from agora.errors import AgoraError
from agora.protocol.address import decode_address
from agora.wallet.errors import (
    CorruptKeyfile,
    InvalidKdfParams,
    InvalidName,
    InvalidPassword,
    KeyExists,
    KeyNotFound,
    UnsupportedKeyfileVersion,
    WalletNotFound,
    WrongPassword,
)
from agora.wallet.keys import SEED_SIZE, Keypair

FORMAT_VERSION = 1
KDF_NAME = "argon2id"
CIPHER_NAME = "xsalsa20-poly1305"

COLDKEY_FILE = "coldkey"
COLDKEY_PUB_FILE = "coldkeypub.json"
HOTKEYS_DIR = "hotkeys"
HOTKEY_SUFFIX = ".json"

_NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")

# Bounds on the cost a keyfile may ask for: above them a hostile file could make the program
# allocate terabytes; 4 GiB and 64 passes leave room to raise the cost for years.
MAX_OPSLIMIT = 64
MAX_MEMLIMIT = 4 * 1024**3


@dataclass(frozen=True, slots=True, kw_only=True)
class KdfParams:
    """Argon2id cost: passes over memory (``opslimit``) and memory in bytes (``memlimit``).

    The default is libsodium's MODERATE (about 0.6 s and 256 MiB): a coldkey holds funds,
    and it is unlocked only for the occasional transaction.
    """

    opslimit: int = argon2id.OPSLIMIT_MODERATE
    memlimit: int = argon2id.MEMLIMIT_MODERATE

    def __post_init__(self) -> None:
        validate_kdf_params(self.opslimit, self.memlimit)


def validate_kdf_params(opslimit: int, memlimit: int) -> None:
    if not (_is_int(opslimit) and argon2id.OPSLIMIT_MIN <= opslimit <= MAX_OPSLIMIT):
        raise InvalidKdfParams(
            f"argon2id opslimit must be an integer in [{argon2id.OPSLIMIT_MIN}, {MAX_OPSLIMIT}]"
        )
    if not (_is_int(memlimit) and argon2id.MEMLIMIT_MIN <= memlimit <= MAX_MEMLIMIT):
        raise InvalidKdfParams(
            f"argon2id memlimit must be an integer in [{argon2id.MEMLIMIT_MIN}, {MAX_MEMLIMIT}]"
        )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


KDF_PRESETS: dict[str, KdfParams] = {
    "sensitive": KdfParams(
        opslimit=argon2id.OPSLIMIT_SENSITIVE, memlimit=argon2id.MEMLIMIT_SENSITIVE
    ),
    "moderate": KdfParams(),
    "interactive": KdfParams(
        opslimit=argon2id.OPSLIMIT_INTERACTIVE, memlimit=argon2id.MEMLIMIT_INTERACTIVE
    ),
    # Only for throwaway wallets (tests, a local devnet): a password guess costs microseconds.
    "minimum": KdfParams(opslimit=argon2id.OPSLIMIT_MIN, memlimit=argon2id.MEMLIMIT_MIN),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class HotkeyInfo:
    """A hotkey's public facts: no seed."""

    wallet: str
    name: str
    address: str
    coldkey_address: str


@dataclass(frozen=True, slots=True, kw_only=True)
class WalletInfo:
    """A wallet's public facts; ``has_coldkey`` is False for a watch-only wallet."""

    name: str
    coldkey_address: str
    has_coldkey: bool
    hotkeys: tuple[HotkeyInfo, ...]


# --- keyfile formats: bytes in, bytes out --------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _SealedSeed:
    address: str
    kdf: KdfParams
    salt: bytes
    nonce: bytes
    ciphertext: bytes


def validate_name(name: str, what: str) -> None:
    """Raise InvalidName unless ``name`` is safe to use as a file name."""
    if not isinstance(name, str) or not _NAME_PATTERN.fullmatch(name):
        raise InvalidName(
            f"{what} name {name!r} is invalid: use 1 to 64 letters, digits, '_' or '-'"
        )


def encrypt_coldkey(keypair: Keypair, password: str, kdf: KdfParams) -> bytes:
    """The coldkey keyfile for ``keypair``: its seed sealed under ``password``."""
    if not password:
        raise InvalidPassword("the coldkey password must not be empty")
    salt = secrets.token_bytes(argon2id.SALTBYTES)
    nonce = secrets.token_bytes(SecretBox.NONCE_SIZE)
    box = SecretBox(_derive_key(password, salt, kdf))
    ciphertext = box.encrypt(keypair.seed, nonce).ciphertext
    document = {
        "version": FORMAT_VERSION,
        "kind": "coldkey",
        "address": keypair.address,
        "crypto": {
            "kdf": KDF_NAME,
            "opslimit": kdf.opslimit,
            "memlimit": kdf.memlimit,
            "salt": salt.hex(),
            "cipher": CIPHER_NAME,
            "nonce": nonce.hex(),
            "ciphertext": ciphertext.hex(),
        },
    }
    return _dump(document)


def decrypt_coldkey(data: bytes, password: str, source: str = "coldkey keyfile") -> Keypair:
    """The keypair sealed in a coldkey keyfile; WrongPassword if it does not open."""
    sealed = _read_sealed_seed(data, source)
    box = SecretBox(_derive_key(password, sealed.salt, sealed.kdf))
    try:
        seed = box.decrypt(sealed.ciphertext, sealed.nonce)
    except CryptoError:
        raise WrongPassword(f"wrong password for {source} (or the file was altered)") from None
    keypair = Keypair(seed)
    if keypair.address != sealed.address:
        raise CorruptKeyfile(f"{source}: the sealed seed does not match the stated address")
    return keypair


def read_coldkey_address(data: bytes, source: str = "coldkey keyfile") -> str:
    """The address a coldkey keyfile states, checking its format but not its password."""
    return _read_sealed_seed(data, source).address


def encode_hotkey(keypair: Keypair, coldkey_address: str) -> bytes:
    document = {
        "version": FORMAT_VERSION,
        "kind": "hotkey",
        "address": keypair.address,
        "coldkey_address": coldkey_address,
        "seed": keypair.seed.hex(),
    }
    return _dump(document)


def decode_hotkey(data: bytes, source: str = "hotkey keyfile") -> tuple[Keypair, str]:
    """The hotkey's keypair and the address of the coldkey that owns it."""
    document = _parse_document(data, "hotkey", source)
    address = _address_field(document, "address", source)
    coldkey_address = _address_field(document, "coldkey_address", source)
    keypair = Keypair(_hex_field(document, "seed", SEED_SIZE, source))
    if keypair.address != address:
        raise CorruptKeyfile(f"{source}: the seed does not match the stated address")
    return keypair, coldkey_address


def encode_coldkey_pub(address: str) -> bytes:
    return _dump({"version": FORMAT_VERSION, "kind": "coldkeypub", "address": address})


def decode_coldkey_pub(data: bytes, source: str = COLDKEY_PUB_FILE) -> str:
    document = _parse_document(data, "coldkeypub", source)
    return _address_field(document, "address", source)


def _derive_key(password: str, salt: bytes, kdf: KdfParams) -> bytes:
    # NFKC so that the same password typed on two keyboards or systems gives the same bytes.
    password_bytes = unicodedata.normalize("NFKC", password).encode()
    return argon2id.kdf(
        SecretBox.KEY_SIZE, password_bytes, salt, opslimit=kdf.opslimit, memlimit=kdf.memlimit
    )


def _read_sealed_seed(data: bytes, source: str) -> _SealedSeed:
    document = _parse_document(data, "coldkey", source)
    crypto = _field(document, "crypto", dict, source)
    if crypto.get("kdf") != KDF_NAME or crypto.get("cipher") != CIPHER_NAME:
        raise CorruptKeyfile(f"{source}: expected {KDF_NAME} with {CIPHER_NAME}")
    opslimit = _field(crypto, "opslimit", int, source)
    memlimit = _field(crypto, "memlimit", int, source)
    return _SealedSeed(
        address=_address_field(document, "address", source),
        kdf=KdfParams(opslimit=opslimit, memlimit=memlimit),
        salt=_hex_field(crypto, "salt", argon2id.SALTBYTES, source),
        nonce=_hex_field(crypto, "nonce", SecretBox.NONCE_SIZE, source),
        ciphertext=_hex_field(crypto, "ciphertext", SEED_SIZE + SecretBox.MACBYTES, source),
    )


def _dump(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, indent=2) + "\n").encode()


def _parse_document(data: bytes, kind: str, source: str) -> dict[str, Any]:
    try:
        document = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise CorruptKeyfile(f"{source} is not valid JSON") from None
    if not isinstance(document, dict):
        raise CorruptKeyfile(f"{source} is not a JSON object")
    version = document.get("version")
    if _is_int(version) and version != FORMAT_VERSION:
        raise UnsupportedKeyfileVersion(
            f"{source} has format version {version}; this program reads version "
            f"{FORMAT_VERSION}: upgrade agora"
        )
    if version != FORMAT_VERSION:
        raise CorruptKeyfile(f"{source} has no valid 'version' field")
    if document.get("kind") != kind:
        raise CorruptKeyfile(f"{source} holds a {document.get('kind')!r}, expected a {kind!r}")
    return document


def _field(document: dict[str, Any], name: str, kind: type, source: str) -> Any:
    value = document.get(name)
    valid = _is_int(value) if kind is int else isinstance(value, kind)
    if not valid:
        raise CorruptKeyfile(f"{source}: field {name!r} is missing or not a {kind.__name__}")
    return value


def _hex_field(document: dict[str, Any], name: str, size: int, source: str) -> bytes:
    text = _field(document, name, str, source)
    try:
        value = bytes.fromhex(text)
    except ValueError:
        raise CorruptKeyfile(f"{source}: field {name!r} is not hexadecimal") from None
    if len(value) != size:
        raise CorruptKeyfile(f"{source}: field {name!r} is {len(value)} bytes, expected {size}")
    return value


def _address_field(document: dict[str, Any], name: str, source: str) -> str:
    text: str = _field(document, name, str, source)
    try:
        decode_address(text)
    except AgoraError as error:
        raise CorruptKeyfile(f"{source}: field {name!r}: {error.message}") from None
    return text


# --- files ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Keystore:
    """The wallets under one root directory; nothing is created until a key is written."""

    root: Path

    def create_wallet(
        self, wallet: str, password: str, *, kdf: KdfParams | None = None, overwrite: bool = False
    ) -> Keypair:
        """A new wallet with a freshly generated coldkey encrypted under ``password``."""
        return self.import_coldkey(
            wallet, Keypair.generate().seed, password, kdf=kdf, overwrite=overwrite
        )

    def import_coldkey(
        self,
        wallet: str,
        seed: bytes,
        password: str,
        *,
        kdf: KdfParams | None = None,
        overwrite: bool = False,
    ) -> Keypair:
        """Store the coldkey with ``seed`` in ``wallet``, encrypted under ``password``."""
        keypair = Keypair(seed)
        keyfile = encrypt_coldkey(keypair, password, kdf or KdfParams())
        self._store_coldkey(wallet, keyfile, keypair.address, overwrite)
        return keypair

    def import_coldkey_file(
        self, wallet: str, keyfile: bytes, password: str, *, overwrite: bool = False
    ) -> Keypair:
        """Store an exported coldkey keyfile as is, once ``password`` proves it opens."""
        keypair = decrypt_coldkey(keyfile, password, "imported coldkey keyfile")
        self._store_coldkey(wallet, keyfile, keypair.address, overwrite)
        return keypair

    def create_hotkey(self, wallet: str, hotkey: str, *, overwrite: bool = False) -> Keypair:
        """A new hotkey in ``wallet``, owned by its coldkey."""
        return self.import_hotkey(wallet, hotkey, Keypair.generate().seed, overwrite=overwrite)

    def import_hotkey(
        self, wallet: str, hotkey: str, seed: bytes, *, overwrite: bool = False
    ) -> Keypair:
        """Store the hotkey with ``seed`` in ``wallet``, recording the wallet's coldkey."""
        keypair = Keypair(seed)
        coldkey_address = self.get_coldkey_address(wallet)
        path = self._hotkey_path(wallet, hotkey)
        _make_private_dir(path.parent, parents=False)
        write_private_file(path, encode_hotkey(keypair, coldkey_address), overwrite=overwrite)
        return keypair

    def import_hotkey_file(
        self, wallet: str, hotkey: str, keyfile: bytes, *, overwrite: bool = False
    ) -> Keypair:
        """Store an exported hotkey keyfile's key; its owner becomes this wallet's coldkey."""
        keypair, _ = decode_hotkey(keyfile, "imported hotkey keyfile")
        return self.import_hotkey(wallet, hotkey, keypair.seed, overwrite=overwrite)

    def load_coldkey(self, wallet: str, password: str) -> Keypair:
        """The wallet's coldkey, decrypted with ``password``."""
        path = self._coldkey_path(wallet)
        return decrypt_coldkey(self._read_key(wallet, path, "coldkey"), password, str(path))

    def load_hotkey(self, wallet: str, hotkey: str) -> Keypair:
        """A hotkey of the wallet; no password, so unattended processes can sign."""
        path = self._hotkey_path(wallet, hotkey)
        keypair, _ = decode_hotkey(self._read_key(wallet, path, f"hotkey {hotkey!r}"), str(path))
        return keypair

    def export_coldkey_file(self, wallet: str) -> bytes:
        """The encrypted coldkey keyfile, byte for byte, for a backup or another machine."""
        path = self._coldkey_path(wallet)
        keyfile = self._read_key(wallet, path, "coldkey")
        read_coldkey_address(keyfile, str(path))
        return keyfile

    def export_hotkey_file(self, wallet: str, hotkey: str) -> bytes:
        """The hotkey keyfile, byte for byte; it holds the seed unencrypted."""
        path = self._hotkey_path(wallet, hotkey)
        keyfile = self._read_key(wallet, path, f"hotkey {hotkey!r}")
        decode_hotkey(keyfile, str(path))
        return keyfile

    def get_coldkey_address(self, wallet: str) -> str:
        """The coldkey's address, read without a password."""
        pub_path = self._wallet_dir(wallet) / COLDKEY_PUB_FILE
        if pub_path.exists():
            return decode_coldkey_pub(pub_path.read_bytes(), str(pub_path))
        path = self._coldkey_path(wallet)
        if path.exists():
            return read_coldkey_address(path.read_bytes(), str(path))
        raise WalletNotFound(f"no wallet {wallet!r} in {self.root}: create it with `wallet create`")

    def get_hotkey(self, wallet: str, hotkey: str) -> HotkeyInfo:
        path = self._hotkey_path(wallet, hotkey)
        data = self._read_key(wallet, path, f"hotkey {hotkey!r}")
        keypair, coldkey_address = decode_hotkey(data, str(path))
        return HotkeyInfo(
            wallet=wallet, name=hotkey, address=keypair.address, coldkey_address=coldkey_address
        )

    def get_wallet(self, wallet: str) -> WalletInfo:
        coldkey_address = self.get_coldkey_address(wallet)
        hotkeys_dir = self._wallet_dir(wallet) / HOTKEYS_DIR
        names = sorted(_names_in(hotkeys_dir, HOTKEY_SUFFIX)) if hotkeys_dir.is_dir() else []
        return WalletInfo(
            name=wallet,
            coldkey_address=coldkey_address,
            has_coldkey=self._coldkey_path(wallet).exists(),
            hotkeys=tuple(self.get_hotkey(wallet, name) for name in names),
        )

    def list_wallets(self) -> list[WalletInfo]:
        """Every wallet under the root, by name; directories that hold no wallet are skipped."""
        if not self.root.is_dir():
            return []
        names = sorted(_names_in(self.root, ""))
        return [self.get_wallet(name) for name in names if self.has_wallet(name)]

    def has_wallet(self, wallet: str) -> bool:
        """Whether ``wallet`` exists, with its coldkey or only its public address."""
        directory = self._wallet_dir(wallet)
        return (directory / COLDKEY_PUB_FILE).exists() or (directory / COLDKEY_FILE).exists()

    def _store_coldkey(self, wallet: str, keyfile: bytes, address: str, overwrite: bool) -> None:
        directory = self._wallet_dir(wallet)
        if not overwrite and self.has_wallet(wallet):
            raise KeyExists(
                f"wallet {wallet!r} already exists: pass --overwrite to replace its coldkey"
            )
        _make_private_dir(self.root, parents=True)  # an existing root left open is closed
        _make_private_dir(directory, parents=False)
        write_private_file(directory / COLDKEY_FILE, keyfile, overwrite=overwrite)
        write_private_file(
            directory / COLDKEY_PUB_FILE, encode_coldkey_pub(address), overwrite=True
        )

    def _read_key(self, wallet: str, path: Path, what: str) -> bytes:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            if not self.has_wallet(wallet):
                raise WalletNotFound(f"no wallet {wallet!r} in {self.root}") from None
            raise KeyNotFound(f"wallet {wallet!r} has no {what} ({path})") from None

    def _wallet_dir(self, wallet: str) -> Path:
        validate_name(wallet, "wallet")
        return self.root / wallet

    def _coldkey_path(self, wallet: str) -> Path:
        return self._wallet_dir(wallet) / COLDKEY_FILE

    def _hotkey_path(self, wallet: str, hotkey: str) -> Path:
        validate_name(hotkey, "hotkey")
        return self._wallet_dir(wallet) / HOTKEYS_DIR / f"{hotkey}{HOTKEY_SUFFIX}"


def write_private_file(path: Path, data: bytes, *, overwrite: bool) -> None:
    """Write ``data`` to ``path`` with mode 0600, atomically: all of it or nothing."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as file:
            os.fchmod(file.fileno(), 0o600)
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        _publish(temporary, path, overwrite)
    finally:
        temporary.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _publish(temporary: Path, path: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(temporary, path)
        return
    try:
        # A hard link fails if the target exists, so two writers cannot both win.
        os.link(temporary, path)
    except FileExistsError:
        raise KeyExists(f"{path} already exists: pass --overwrite to replace it") from None
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        if path.exists():
            raise KeyExists(f"{path} already exists: pass --overwrite to replace it") from None
        os.replace(temporary, path)


def _fsync_dir(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _make_private_dir(directory: Path, *, parents: bool) -> None:
    """Create ``directory`` 0700 (and missing parents if asked), and make sure it is 0700."""
    if parents:
        missing = [p for p in reversed(directory.parents) if not p.exists()]
        for parent in missing:
            _mkdir_private(parent)
    _mkdir_private(directory)
    os.chmod(directory, 0o700)


def _mkdir_private(directory: Path) -> None:
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        return
    os.chmod(directory, 0o700)


def _names_in(directory: Path, suffix: str) -> list[str]:
    """Valid names of the entries in ``directory`` ending in ``suffix``; others are ignored."""
    names = []
    for entry in directory.iterdir():
        if not entry.name.endswith(suffix):
            continue
        name = entry.name.removesuffix(suffix) if suffix else entry.name
        if _NAME_PATTERN.fullmatch(name):
            names.append(name)
    return names
