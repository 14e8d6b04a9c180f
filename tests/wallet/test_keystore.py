"""The wallet keeps keys safe on disk and gives back keys that sign correctly.

Every test writes real files under ``tmp_path`` with the cheapest argon2id cost, so the
suite stays fast; one test checks that a file written with a dearer cost still opens.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from nacl.pwhash import argon2id
from nacl.signing import VerifyKey

from agora.protocol.address import decode_address
from agora.wallet import errors
from agora.wallet.errors import (
    CorruptKeyfile,
    InvalidKdfParams,
    InvalidName,
    InvalidPassword,
    InvalidSeed,
    KeyExists,
    KeyNotFound,
    UnsupportedKeyfileVersion,
    WalletError,
    WalletNotFound,
    WrongPassword,
)
from agora.wallet.keys import Keypair, is_valid_signature, parse_seed_hex
from agora.wallet.keystore import KdfParams, Keystore, write_private_file

CHEAP = KdfParams(opslimit=argon2id.OPSLIMIT_MIN, memlimit=argon2id.MEMLIMIT_MIN)
PASSWORD = "correct horse battery staple"
SEED = bytes(range(32))


@pytest.fixture
def keystore(tmp_path: Path) -> Keystore:
    return Keystore(tmp_path / "wallets")


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def rewrite_json(path: Path, change: dict[str, object], section: str | None = None) -> None:
    document = json.loads(path.read_bytes())
    (document[section] if section else document).update(change)
    path.write_text(json.dumps(document))


# --- keys ----------------------------------------------------------------------------


def test_keypair_from_seed_is_deterministic_and_its_signature_verifies() -> None:
    keypair = Keypair(SEED)
    assert Keypair(SEED).address == keypair.address
    assert decode_address(keypair.address) == keypair.public_key
    signature = keypair.sign(b"weights for subnet 1")
    assert len(signature) == 64
    VerifyKey(keypair.public_key).verify(b"weights for subnet 1", signature)
    assert is_valid_signature(keypair.public_key, b"weights for subnet 1", signature)
    assert not is_valid_signature(keypair.public_key, b"weights for subnet 2", signature)


def test_keypair_repr_never_shows_the_seed() -> None:
    assert SEED.hex() not in repr(Keypair(SEED))


def test_generated_keypairs_differ() -> None:
    assert Keypair.generate().address != Keypair.generate().address


@pytest.mark.parametrize("seed", [b"", bytes(31), bytes(33)])
def test_keypair_rejects_a_seed_of_the_wrong_size(seed: bytes) -> None:
    with pytest.raises(InvalidSeed):
        Keypair(seed)


def test_parse_seed_hex_accepts_0x_and_rejects_garbage() -> None:
    assert parse_seed_hex("0x" + SEED.hex().upper()) == SEED
    for text in ["zz" * 32, SEED.hex()[:-2], SEED.hex() + "00", ""]:
        with pytest.raises(InvalidSeed):
            parse_seed_hex(text)


# --- coldkeys ------------------------------------------------------------------------


def test_create_wallet_then_load_coldkey_gives_a_key_that_signs(keystore: Keystore) -> None:
    created = keystore.create_wallet("alice", PASSWORD, kdf=CHEAP)
    loaded = keystore.load_coldkey("alice", PASSWORD)
    assert loaded.address == created.address
    signature = loaded.sign(b"stake 10 AGR")
    VerifyKey(decode_address(created.address)).verify(b"stake 10 AGR", signature)


def test_coldkey_is_encrypted_at_rest_with_its_parameters_in_the_file(
    keystore: Keystore,
) -> None:
    keystore.import_coldkey("alice", SEED, PASSWORD, kdf=CHEAP)
    raw = (keystore.root / "alice" / "coldkey").read_bytes()
    assert SEED.hex() not in raw.decode()
    document = json.loads(raw)
    assert document["version"] == 1
    assert document["address"] == Keypair(SEED).address
    crypto = document["crypto"]
    assert (crypto["kdf"], crypto["cipher"]) == ("argon2id", "xsalsa20-poly1305")
    assert (crypto["opslimit"], crypto["memlimit"]) == (CHEAP.opslimit, CHEAP.memlimit)


def test_two_encryptions_of_one_seed_use_fresh_salt_and_nonce(tmp_path: Path) -> None:
    first, second = Keystore(tmp_path / "a"), Keystore(tmp_path / "b")
    first.import_coldkey("w", SEED, PASSWORD, kdf=CHEAP)
    second.import_coldkey("w", SEED, PASSWORD, kdf=CHEAP)
    crypto_a = json.loads(first.export_coldkey_file("w"))["crypto"]
    crypto_b = json.loads(second.export_coldkey_file("w"))["crypto"]
    assert crypto_a["salt"] != crypto_b["salt"]
    assert crypto_a["nonce"] != crypto_b["nonce"]


def test_the_cost_is_read_from_the_file_so_it_can_change(keystore: Keystore) -> None:
    interactive = KdfParams(
        opslimit=argon2id.OPSLIMIT_INTERACTIVE, memlimit=argon2id.MEMLIMIT_INTERACTIVE
    )
    keystore.import_coldkey("old", SEED, PASSWORD, kdf=interactive)
    keystore.import_coldkey("new", SEED, PASSWORD, kdf=CHEAP)
    assert keystore.load_coldkey("old", PASSWORD).seed == SEED
    assert keystore.load_coldkey("new", PASSWORD).seed == SEED


def test_default_cost_is_at_least_moderate() -> None:
    assert KdfParams().opslimit >= argon2id.OPSLIMIT_MODERATE
    assert KdfParams().memlimit >= argon2id.MEMLIMIT_MODERATE


def test_wrong_password_raises_a_coded_error(keystore: Keystore) -> None:
    keystore.create_wallet("alice", PASSWORD, kdf=CHEAP)
    with pytest.raises(WrongPassword) as caught:
        keystore.load_coldkey("alice", "Correct horse battery staple")
    assert caught.value.code == 3105


def test_empty_password_is_refused_when_encrypting(keystore: Keystore) -> None:
    with pytest.raises(InvalidPassword):
        keystore.create_wallet("alice", "", kdf=CHEAP)
    assert not keystore.has_wallet("alice")


def test_password_is_unicode_normalized(keystore: Keystore) -> None:
    keystore.import_coldkey("alice", SEED, "caf\u00e9", kdf=CHEAP)
    assert keystore.load_coldkey("alice", "cafe\u0301").seed == SEED


@pytest.mark.parametrize(
    ("opslimit", "memlimit"),
    [(0, argon2id.MEMLIMIT_MIN), (1, 1024), (1000, argon2id.MEMLIMIT_MIN), (1, 2**50)],
)
def test_kdf_params_out_of_range_are_refused(opslimit: int, memlimit: int) -> None:
    with pytest.raises(InvalidKdfParams):
        KdfParams(opslimit=opslimit, memlimit=memlimit)


def test_coldkeypub_gives_the_address_without_a_password(keystore: Keystore) -> None:
    keypair = keystore.create_wallet("alice", PASSWORD, kdf=CHEAP)
    pub = json.loads((keystore.root / "alice" / "coldkeypub.json").read_bytes())
    assert pub["address"] == keypair.address
    assert keystore.get_wallet("alice").coldkey_address == keypair.address


def test_watch_only_wallet_has_an_address_but_no_secret(keystore: Keystore) -> None:
    keypair = keystore.create_wallet("alice", PASSWORD, kdf=CHEAP)
    (keystore.root / "alice" / "coldkey").unlink()
    info = keystore.get_wallet("alice")
    assert (info.coldkey_address, info.has_coldkey) == (keypair.address, False)
    with pytest.raises(KeyNotFound):
        keystore.load_coldkey("alice", PASSWORD)


# --- hotkeys -------------------------------------------------------------------------


def test_hotkey_records_its_coldkey_and_loads_without_a_password(keystore: Keystore) -> None:
    coldkey = keystore.create_wallet("alice", PASSWORD, kdf=CHEAP)
    created = keystore.create_hotkey("alice", "miner1")
    info = keystore.get_hotkey("alice", "miner1")
    assert (info.address, info.coldkey_address) == (created.address, coldkey.address)
    stored = json.loads((keystore.root / "alice" / "hotkeys" / "miner1.json").read_bytes())
    assert stored["coldkey_address"] == coldkey.address
    loaded = keystore.load_hotkey("alice", "miner1")
    VerifyKey(loaded.public_key).verify(b"request", loaded.sign(b"request"))
    assert loaded.address == created.address


def test_hotkey_needs_an_existing_wallet(keystore: Keystore) -> None:
    with pytest.raises(WalletNotFound):
        keystore.create_hotkey("nobody", "miner1")
    assert not keystore.root.exists()


def test_missing_hotkey_and_missing_wallet_are_told_apart(keystore: Keystore) -> None:
    keystore.create_wallet("alice", PASSWORD, kdf=CHEAP)
    with pytest.raises(KeyNotFound):
        keystore.load_hotkey("alice", "ghost")
    with pytest.raises(WalletNotFound):
        keystore.load_hotkey("bob", "miner1")
    with pytest.raises(WalletNotFound):
        keystore.load_coldkey("bob", PASSWORD)
    with pytest.raises(WalletNotFound):
        keystore.get_wallet("bob")


# --- overwrite -----------------------------------------------------------------------


def test_existing_coldkey_is_kept_unless_overwrite_is_asked(keystore: Keystore) -> None:
    first = keystore.create_wallet("alice", PASSWORD, kdf=CHEAP)
    with pytest.raises(KeyExists):
        keystore.create_wallet("alice", "other", kdf=CHEAP)
    with pytest.raises(KeyExists):
        keystore.import_coldkey("alice", SEED, "other", kdf=CHEAP)
    assert keystore.load_coldkey("alice", PASSWORD).address == first.address
    second = keystore.create_wallet("alice", "other", kdf=CHEAP, overwrite=True)
    assert second.address != first.address
    assert keystore.load_coldkey("alice", "other").address == second.address
    assert keystore.get_wallet("alice").coldkey_address == second.address


def test_existing_hotkey_is_kept_unless_overwrite_is_asked(keystore: Keystore) -> None:
    keystore.create_wallet("alice", PASSWORD, kdf=CHEAP)
    first = keystore.create_hotkey("alice", "miner1")
    with pytest.raises(KeyExists):
        keystore.create_hotkey("alice", "miner1")
    with pytest.raises(KeyExists):
        keystore.import_hotkey("alice", "miner1", SEED)
    assert keystore.load_hotkey("alice", "miner1").address == first.address
    keystore.import_hotkey("alice", "miner1", SEED, overwrite=True)
    assert keystore.load_hotkey("alice", "miner1").seed == SEED


def test_refused_write_changes_nothing_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "key.json"
    write_private_file(path, b"first", overwrite=False)
    with pytest.raises(KeyExists):
        write_private_file(path, b"second", overwrite=False)
    assert path.read_bytes() == b"first"
    write_private_file(path, b"third", overwrite=True)
    assert path.read_bytes() == b"third"
    assert [entry.name for entry in tmp_path.iterdir()] == ["key.json"]


# --- permissions ---------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_key_files_are_0600_and_directories_0700(tmp_path: Path, umask: int) -> None:
    keystore = Keystore(tmp_path / "home" / "wallets")
    previous = os.umask(umask)
    try:
        keystore.create_wallet("alice", PASSWORD, kdf=CHEAP)
        keystore.create_hotkey("alice", "miner1")
    finally:
        os.umask(previous)
    wallet = keystore.root / "alice"
    for directory in [tmp_path / "home", keystore.root, wallet, wallet / "hotkeys"]:
        assert mode_of(directory) == 0o700, directory
    for file in [wallet / "coldkey", wallet / "coldkeypub.json", wallet / "hotkeys/miner1.json"]:
        assert mode_of(file) == 0o600, file
    leftovers = [p.name for p in wallet.rglob("*") if p.name.startswith(".")]
    assert leftovers == []


# --- names ---------------------------------------------------------------------------

BAD_NAMES = ["", ".", "..", "../evil", "a/b", "/abs", "a b", "caf\u00e9", "x" * 65, "a\n", "a.json"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_invalid_wallet_names_are_refused(tmp_path: Path, name: str) -> None:
    keystore = Keystore(tmp_path / "wallets")
    with pytest.raises(InvalidName):
        keystore.create_wallet(name, PASSWORD, kdf=CHEAP)
    with pytest.raises(InvalidName):
        keystore.get_wallet(name)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", BAD_NAMES)
def test_invalid_hotkey_names_are_refused(keystore: Keystore, name: str) -> None:
    keystore.create_wallet("alice", PASSWORD, kdf=CHEAP)
    with pytest.raises(InvalidName):
        keystore.create_hotkey("alice", name)
    with pytest.raises(InvalidName):
        keystore.load_hotkey("alice", name)
    assert not (keystore.root / "alice" / "hotkeys").exists()
    assert sorted(p.name for p in keystore.root.parent.iterdir()) == ["wallets"]


def test_longest_valid_name_is_accepted(keystore: Keystore) -> None:
    name = "A-z_9" + "x" * 59
    keystore.create_wallet(name, PASSWORD, kdf=CHEAP)
    assert keystore.get_wallet(name).name == name


# --- corrupt keyfiles ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "section", "error"),
    [
        ({"version": 2}, None, UnsupportedKeyfileVersion),
        ({"version": "1"}, None, CorruptKeyfile),
        ({"kind": "hotkey"}, None, CorruptKeyfile),
        ({"address": "agr1notanaddress"}, None, CorruptKeyfile),
        ({"address": Keypair(bytes(32)).address}, None, CorruptKeyfile),
        ({"crypto": "none"}, None, CorruptKeyfile),
        ({"kdf": "scrypt"}, "crypto", CorruptKeyfile),
        ({"salt": "zz"}, "crypto", CorruptKeyfile),
        ({"nonce": "00" * 8}, "crypto", CorruptKeyfile),
        ({"ciphertext": "00" * 40}, "crypto", CorruptKeyfile),
        ({"ciphertext": "00" * 48}, "crypto", WrongPassword),
        ({"opslimit": True}, "crypto", CorruptKeyfile),
        ({"memlimit": 2**45}, "crypto", InvalidKdfParams),
    ],
)
def test_corrupt_coldkey_gives_a_coded_error(
    keystore: Keystore, change: dict[str, object], section: str | None, error: type[WalletError]
) -> None:
    keystore.import_coldkey("alice", SEED, PASSWORD, kdf=CHEAP)
    rewrite_json(keystore.root / "alice" / "coldkey", change, section)
    with pytest.raises(error):
        keystore.load_coldkey("alice", PASSWORD)


@pytest.mark.parametrize("content", [b"", b"not json", b"[1, 2]", b"\xff\xfe", b"{}"])
def test_coldkey_that_is_not_a_keyfile_is_corrupt(keystore: Keystore, content: bytes) -> None:
    keystore.create_wallet("alice", PASSWORD, kdf=CHEAP)
    (keystore.root / "alice" / "coldkey").write_bytes(content)
    with pytest.raises(CorruptKeyfile):
        keystore.load_coldkey("alice", PASSWORD)


def test_corrupt_hotkey_and_coldkeypub_give_coded_errors(keystore: Keystore) -> None:
    keystore.create_wallet("alice", PASSWORD, kdf=CHEAP)
    keystore.create_hotkey("alice", "miner1")
    hotkey_path = keystore.root / "alice" / "hotkeys" / "miner1.json"
    rewrite_json(hotkey_path, {"seed": SEED.hex()})
    with pytest.raises(CorruptKeyfile):
        keystore.load_hotkey("alice", "miner1")
    (keystore.root / "alice" / "coldkeypub.json").write_text("{")
    with pytest.raises(CorruptKeyfile):
        keystore.get_wallet("alice")


# --- list, export, import ------------------------------------------------------------


def test_list_wallets_with_their_hotkeys(keystore: Keystore) -> None:
    assert keystore.list_wallets() == []
    bob = keystore.create_wallet("bob", PASSWORD, kdf=CHEAP)
    alice = keystore.create_wallet("alice", PASSWORD, kdf=CHEAP)
    miner = keystore.create_hotkey("alice", "miner1")
    validator = keystore.create_hotkey("alice", "validator")
    (keystore.root / "not-a-wallet").mkdir()
    (keystore.root / "notes.txt").write_text("hello")
    wallets = keystore.list_wallets()
    assert [w.name for w in wallets] == ["alice", "bob"]
    assert [w.coldkey_address for w in wallets] == [alice.address, bob.address]
    assert [(h.name, h.address) for h in wallets[0].hotkeys] == [
        ("miner1", miner.address),
        ("validator", validator.address),
    ]
    assert all(h.coldkey_address == alice.address for h in wallets[0].hotkeys)
    assert wallets[1].hotkeys == ()


def test_exported_coldkey_file_imports_elsewhere_byte_for_byte(tmp_path: Path) -> None:
    source, target = Keystore(tmp_path / "a"), Keystore(tmp_path / "b")
    original = source.create_wallet("alice", PASSWORD, kdf=CHEAP)
    exported = source.export_coldkey_file("alice")
    imported = target.import_coldkey_file("backup", exported, PASSWORD)
    assert imported.address == original.address
    assert target.export_coldkey_file("backup") == exported
    assert target.load_coldkey("backup", PASSWORD).seed == original.seed
    assert target.get_wallet("backup").coldkey_address == original.address


def test_importing_a_coldkey_file_needs_its_password(tmp_path: Path) -> None:
    source, target = Keystore(tmp_path / "a"), Keystore(tmp_path / "b")
    source.create_wallet("alice", PASSWORD, kdf=CHEAP)
    with pytest.raises(WrongPassword):
        target.import_coldkey_file("alice", source.export_coldkey_file("alice"), "guess")
    assert not target.root.exists()


def test_import_coldkey_from_seed(keystore: Keystore) -> None:
    imported = keystore.import_coldkey("alice", SEED, PASSWORD, kdf=CHEAP)
    assert imported.address == Keypair(SEED).address
    assert keystore.load_coldkey("alice", PASSWORD).seed == SEED


def test_imported_hotkey_file_is_owned_by_the_new_wallet(keystore: Keystore) -> None:
    keystore.create_wallet("alice", PASSWORD, kdf=CHEAP)
    bob = keystore.create_wallet("bob", PASSWORD, kdf=CHEAP)
    hotkey = keystore.create_hotkey("alice", "miner1")
    exported = keystore.export_hotkey_file("alice", "miner1")
    keystore.import_hotkey_file("bob", "moved", exported)
    info = keystore.get_hotkey("bob", "moved")
    assert (info.address, info.coldkey_address) == (hotkey.address, bob.address)
    with pytest.raises(CorruptKeyfile):
        keystore.import_hotkey_file("bob", "broken", b"{}")


# --- error codes ---------------------------------------------------------------------


def test_wallet_error_codes_are_unique_in_range_and_documented() -> None:
    classes = [
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, WalletError)
    ]
    codes = [cls.code for cls in classes]
    assert len(set(codes)) == len(codes)
    assert all(3100 <= code <= 3199 for code in codes)
    assert all(cls.__doc__ and cls.__doc__.strip() for cls in classes)
