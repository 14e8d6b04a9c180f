"""Error codes are a public contract: unique, documented, and each one reachable.

``TRIGGERS`` maps every core code (1000-1999: encoding, signatures, accounts, blocks) to a
scenario that provokes it through the protocol's real entry points (a receipt in a sealed
block, or the exception a public function raises); a new core error must come with its
trigger here. Domain codes (2000 and up) are provoked by each domain's own tests; this module
checks that some test names each of them.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import pickle
import pkgutil
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from protocol_helpers import (
    CHAIN_ID,
    GENESIS_TIMESTAMP,
    MIN_FEE,
    make_genesis,
    make_genesis_state,
    make_keys,
    make_transfer,
    make_transfer_tx,
)

import agora.protocol
from agora.errors import AgoraError
from agora.protocol.accounts import ACCOUNT_RECORD, ACCOUNTS_TAG, MAX_AMOUNT, Account
from agora.protocol.address import decode_address, encode_address
from agora.protocol.blocks import Block
from agora.protocol.errors import (
    InvalidGenesis,
    ProtocolError,
    all_error_classes,
)
from agora.protocol.genesis import create_genesis_state
from agora.protocol.invariants import check_invariants
from agora.protocol.subnets import CreateSubnet
from agora.protocol.transactions import (
    MAGIC,
    Transaction,
    encode_transaction,
    encode_unsigned,
    sign_transaction,
)
from agora.protocol.transition import apply_block, build_block

# Codes no scenario can provoke, each with the reason;
# ``test_reserved_codes_are_really_never_raised`` keeps this list honest.
RESERVED: dict[int, str] = {ProtocolError.code: "the base class of the hierarchy"}
FIRST_DOMAIN_CODE = 2000
_TESTS_DIRECTORY = Path(__file__).resolve().parents[1]


def _all_error_classes() -> list[type[ProtocolError]]:
    """Every error class, once every protocol module is imported (the list grows on import)."""
    for module in pkgutil.walk_packages(agora.protocol.__path__, "agora.protocol."):
        importlib.import_module(module.name)
    return all_error_classes()


_KEYS = make_keys(3, seed=11)
_ALICE, _BOB, _CAROL = _KEYS


def _receipt_code(raw: bytes, balance: int | None = None) -> int:
    state = make_genesis_state(_KEYS, **({} if balance is None else {"balance": balance}))
    (receipt,) = build_block(state, GENESIS_TIMESTAMP + 12, [raw]).outcomes
    assert not receipt.success
    return receipt.code


def _raised_code(action: Callable[[], Any]) -> int:
    with pytest.raises(ProtocolError) as caught:
        action()
    assert caught.value.message
    return caught.value.code


def _transfer(**overrides: Any) -> bytes:
    arguments: dict[str, Any] = {
        "sender": _ALICE,
        "recipient": _BOB.address,
        "amount": 10,
        "nonce": 0,
    }
    arguments.update(overrides)
    return make_transfer(**arguments)


def _unknown_kind() -> int:
    unsigned = bytearray(encode_unsigned(make_transfer_tx(_ALICE, _BOB.address, 10, 0)))
    offset = len(MAGIC) + 4 + len(CHAIN_ID) + 32 + 16
    unsigned[offset : offset + 2] = (500).to_bytes(2, "big")
    return _receipt_code(bytes(unsigned) + _ALICE.sign(bytes(unsigned)))


def _oversize() -> int:
    raw = _transfer()
    return _receipt_code(raw + bytes(make_genesis_state([]).params.max_transaction_bytes))


def _typo_in_address() -> int:
    text = encode_address(_ALICE.address)
    typo = text[:10] + ("q" if text[10] != "q" else "p") + text[11:]
    return _raised_code(lambda: decode_address(typo))


def _bad_signature() -> int:
    raw = _transfer()
    return _receipt_code(raw[:-1] + bytes((raw[-1] ^ 1,)))


def _balance_overflow() -> int:
    state = make_genesis_state(_KEYS)
    full = ACCOUNT_RECORD.encode(Account(balance=MAX_AMOUNT))
    stranger = make_keys(1, seed=12)[0].address
    state.load_row(ACCOUNTS_TAG, stranger, full)
    raw = _transfer(recipient=stranger, amount=1)
    (receipt,) = build_block(state, GENESIS_TIMESTAMP + 12, [raw]).outcomes
    return receipt.code


def _invalid_field() -> int:
    unsigned = Transaction(
        chain_id=CHAIN_ID,
        sender=_ALICE.address,
        nonce=0,
        fee=MIN_FEE,
        body=CreateSubnet(task_kind="Astrology!", task_config="", owner_hotkey=_BOB.address),
    )
    return _receipt_code(encode_transaction(sign_transaction(unsigned, _ALICE.sign)))


def _sealed_block() -> Block:
    sequencer = make_genesis_state(_KEYS)
    return build_block(sequencer, GENESIS_TIMESTAMP + 12, [_transfer()]).block


def _wrong_height() -> int:
    block = _sealed_block()
    header = dataclasses.replace(block.header, height=5)
    return _raised_code(
        lambda: apply_block(make_genesis_state(_KEYS), Block(header=header, transactions=()))
    )


def _state_root_mismatch() -> int:
    block = _sealed_block()
    header = dataclasses.replace(block.header, state_root=bytes(32))
    forged = Block(header=header, transactions=block.transactions)
    return _raised_code(lambda: apply_block(make_genesis_state(_KEYS), forged))


def _invariant_violated() -> int:
    state = make_genesis_state(_KEYS)
    stranger = make_keys(1, seed=13)[0].address
    state.load_row(ACCOUNTS_TAG, stranger, ACCOUNT_RECORD.encode(Account(balance=1)))
    return _raised_code(lambda: check_invariants(state))


TRIGGERS: dict[int, Callable[[], int]] = {
    1001: lambda: _receipt_code(b"not a transaction"),
    1002: _unknown_kind,
    1003: lambda: _receipt_code(_transfer(amount=0)),
    1004: _oversize,
    1005: _typo_in_address,
    1006: _invalid_field,
    1101: _bad_signature,
    1102: lambda: _receipt_code(_transfer(chain_id="another-chain")),
    1201: lambda: _receipt_code(_transfer(nonce=1)),
    1202: lambda: _receipt_code(_transfer(fee=MIN_FEE - 1)),
    1203: lambda: _receipt_code(_transfer(amount=10), balance=MIN_FEE + 9),
    1204: lambda: _receipt_code(_transfer(), balance=MIN_FEE - 1),
    1205: lambda: _receipt_code(_transfer(recipient=_ALICE.address)),
    1206: _balance_overflow,
    1301: _wrong_height,
    1302: _state_root_mismatch,
    1303: lambda: _raised_code(lambda: create_genesis_state({"balances": {}})),
    1304: _invariant_violated,
}


@pytest.mark.parametrize("code", sorted(TRIGGERS))
def test_trigger_provokes_its_code(code: int) -> None:
    assert TRIGGERS[code]() == code


def test_every_core_error_code_is_reachable() -> None:
    core = {cls.code for cls in _all_error_classes() if cls.code < FIRST_DOMAIN_CODE}
    missing = sorted(core - set(TRIGGERS) - set(RESERVED))
    assert missing == [], f"add a trigger to TRIGGERS for codes {missing}"
    assert set(TRIGGERS) | set(RESERVED) == core


def test_every_domain_error_is_named_by_some_test() -> None:
    sources = [
        path.read_text()
        for path in sorted(_TESTS_DIRECTORY.rglob("test_*.py"))
        if path.name != Path(__file__).name
    ]
    missing = [
        f"{cls.__name__} ({cls.code})"
        for cls in _all_error_classes()
        if cls.code >= FIRST_DOMAIN_CODE
        and not any(re.search(rf"\b({cls.__name__}|{cls.code})\b", source) for source in sources)
    ]
    assert not missing, f"no test names {len(missing)} domain errors: {', '.join(missing)}"


def test_reserved_codes_are_really_never_raised() -> None:
    reserved_names = {cls.__name__ for cls in _all_error_classes() if cls.code in RESERVED}
    raised = set()
    for path in Path(agora.protocol.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and node.exc is not None:
                target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                if isinstance(target, ast.Name):
                    raised.add(target.id)
    now_raised = sorted(reserved_names & raised)
    assert now_raised == [], f"{now_raised} are raised now: give them a trigger"


def test_codes_are_unique_documented_and_in_the_protocol_range() -> None:
    classes = _all_error_classes()
    codes = [cls.code for cls in classes]
    assert len(codes) == len(set(codes))
    for cls in classes:
        assert issubclass(cls, ProtocolError) and issubclass(cls, AgoraError)
        assert 1000 <= cls.code <= 2999, cls
        assert cls.__doc__ and cls.__doc__.strip(), f"{cls.__name__} needs a docstring"


@pytest.mark.parametrize("cls", _all_error_classes())
def test_errors_survive_pickling_with_code_and_message(cls: type[ProtocolError]) -> None:
    error = cls("what to do about it")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is cls
    assert (copy.code, copy.message, str(copy)) == (cls.code, error.message, str(error))


# --- genesis refusals ------------------------------------------------------------------

_ADDRESS = encode_address(_ALICE.address)


@pytest.mark.parametrize(
    ("genesis", "field"),
    [
        ([], "genesis"),
        ({}, "chain_id"),
        ({"chain_id": ""}, "chain_id"),
        ({"chain_id": "x" * 65}, "chain_id"),
        ({"chain_id": CHAIN_ID, "timestamp": -1}, "timestamp"),
        ({"chain_id": CHAIN_ID, "timestamp": True}, "timestamp"),
        ({"chain_id": CHAIN_ID, "params": {"min_fee": -1}}, "min_fee"),
        ({"chain_id": CHAIN_ID, "params": {"min_fee": "1"}}, "min_fee"),
        ({"chain_id": CHAIN_ID, "params": {"max_fee": 1}}, "max_fee"),
        ({"chain_id": CHAIN_ID, "params": []}, "params"),
        ({"chain_id": CHAIN_ID, "balances": []}, "balances"),
        ({"chain_id": CHAIN_ID, "balances": {"agr1xyz": 5}}, "agr1xyz"),
        ({"chain_id": CHAIN_ID, "balances": {_ADDRESS: 0}}, _ADDRESS),
        ({"chain_id": CHAIN_ID, "balances": {_ADDRESS: 1 << 64}}, _ADDRESS),
        ({"chain_id": CHAIN_ID, "balances": {_ADDRESS: 1, _ADDRESS.upper(): 2}}, "twice"),
    ],
)
def test_invalid_genesis_names_the_field(genesis: Any, field: str) -> None:
    with pytest.raises(InvalidGenesis) as caught:
        create_genesis_state(genesis)
    assert caught.value.code == InvalidGenesis.code
    assert field in caught.value.message


def test_genesis_supply_beyond_64_bits_is_refused() -> None:
    genesis = make_genesis(_KEYS, balance=MAX_AMOUNT // 2)
    with pytest.raises(InvalidGenesis, match="supply"):
        create_genesis_state(genesis)


def test_genesis_with_the_same_address_in_two_cases_is_refused() -> None:
    # Upper- and lower-case forms decode to one key; counting both would inflate the supply.
    genesis = make_genesis([_ALICE])
    genesis["balances"][_ADDRESS.upper()] = 5
    with pytest.raises(InvalidGenesis, match="twice"):
        create_genesis_state(genesis)
