"""Every decoder that takes bytes or text from outside answers with a coded error, never a crash.

Hypothesis, seeded (``derandomize``) and bounded, feeds each decoder random input and
mutations of valid input (a byte flipped, cut short, extended): transactions, block headers,
stored transaction lists, Inbox payloads and JSON-RPC logs, vouchers (JSON), neuron headers
(nonce, signature, addresses), the x402 payment header, service records, and whole blocks
through ``build_block`` (which must never raise on ordered bytes: it refuses them instead).
The only exceptions allowed are ``AgoraError`` subclasses with their stable codes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from node_helpers import get_dev_keys, make_key, sign_transfer

from agora.agents.wire import decode_payment_header
from agora.errors import AgoraError
from agora.neuron.auth import AddressCache, parse_nonce, parse_signature
from agora.node.devchain import DEV_CHAIN_ID, create_dev_genesis
from agora.node.store import decode_transactions
from agora.node.wire import transaction_from_json
from agora.payments.vouchers import parse_payment, parse_verdict
from agora.protocol.address import decode_address
from agora.protocol.blocks import decode_header
from agora.protocol.genesis import create_genesis_state
from agora.protocol.transactions import decode_transaction
from agora.protocol.transition import build_block
from agora.sequencer.ethereum.derive import decode_log, parse_payload

EXAMPLES = 300
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)
KEYS = get_dev_keys()
VALID_TX = sign_transfer(KEYS[0], make_key("fuzz-sink").address, 5, 0)


def mutations(valid: bytes) -> st.SearchStrategy[bytes]:
    """Random bytes, and ``valid`` with a byte changed, cut short, or extended."""
    flip = st.tuples(st.integers(0, len(valid) - 1), st.integers(1, 255)).map(
        lambda change: (
            valid[: change[0]] + bytes([valid[change[0]] ^ change[1]]) + valid[change[0] + 1 :]
        )
    )
    cut = st.integers(0, len(valid) - 1).map(lambda end: valid[:end])
    extend = st.binary(min_size=1, max_size=64).map(lambda tail: valid + tail)
    return st.one_of(st.binary(max_size=512), flip, cut, extend)


def assert_coded(decode: Callable[[Any], Any], value: Any) -> None:
    try:
        decode(value)
    except AgoraError as error:
        assert isinstance(error.code, int) and error.code > 0, error
        assert error.message


@FUZZ
@given(mutations(VALID_TX))
def test_transactions(raw: bytes) -> None:
    assert_coded(decode_transaction, raw)


def _valid_header() -> bytes:
    from agora.protocol.blocks import encode_header

    state = create_genesis_state(create_dev_genesis(2, 0))
    return encode_header(build_block(state, 1, [VALID_TX]).block.header)


@FUZZ
@given(mutations(_valid_header()))
def test_block_headers(raw: bytes) -> None:
    assert_coded(decode_header, raw)


@FUZZ
@given(st.binary(max_size=512))
def test_stored_transaction_lists(raw: bytes) -> None:
    assert_coded(decode_transactions, raw)


@FUZZ
@given(st.lists(mutations(VALID_TX), max_size=6))
def test_blocks_built_from_any_ordered_bytes_never_fail(raws: list[bytes]) -> None:
    state = create_genesis_state(create_dev_genesis(2, 0))
    applied = build_block(state, 1, raws)  # no exception at all: bad items are refused
    assert len(applied.outcomes) == len(raws)
    assert all(r.sender is not None for r in applied.receipts)


@FUZZ
@given(st.one_of(st.binary(max_size=512), st.binary(max_size=64).map(lambda b: b"\x01" + b)))
def test_inbox_payloads(payload: bytes) -> None:
    assert_coded(parse_payload, payload)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@FUZZ
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "topics": json_values,
            "data": st.one_of(json_values, st.binary(max_size=100).map(lambda b: "0x" + b.hex())),
            "blockNumber": st.one_of(json_values, st.integers(0, 99).map(hex)),
            "logIndex": st.one_of(json_values, st.integers(0, 9).map(hex)),
            "blockHash": json_values,
            "removed": json_values,
        },
    )
)
def test_json_rpc_logs(log: dict[str, Any]) -> None:
    assert_coded(decode_log, log)


@FUZZ
@given(
    st.one_of(
        json_values,
        st.fixed_dictionaries({"voucher": json_values}),
        st.fixed_dictionaries(
            {
                "voucher": st.fixed_dictionaries(
                    {},
                    optional={
                        "channel_id": st.one_of(json_values, st.just("0x" + "ab" * 32)),
                        "amount": json_values,
                        "signature": json_values,
                    },
                )
            }
        ),
    )
)
def test_vouchers(payment: Any) -> None:
    assert_coded(parse_payment, payment)


holds = st.fixed_dictionaries(
    {},
    optional={
        "channel_id": st.one_of(json_values, st.just("0x" + "ab" * 32)),
        "cumulative": json_values,
    },
)


@FUZZ
@given(
    st.one_of(
        json_values,
        st.fixed_dictionaries({"hold": st.one_of(json_values, holds)}),
        st.fixed_dictionaries(
            {
                "accept": st.one_of(json_values, st.lists(json_values, max_size=3)),
                "reject": st.one_of(json_values, st.lists(holds, max_size=3)),
            }
        ),
    )
)
def test_holds_and_verdicts(value: Any) -> None:
    assert_coded(parse_payment, value)
    assert_coded(parse_verdict, value)


@FUZZ
@given(st.one_of(st.none(), st.text(max_size=140)))
def test_neuron_headers(text: str | None) -> None:
    assert_coded(parse_nonce, text)
    assert_coded(parse_signature, text)
    assert_coded(lambda value: AddressCache().decode(value, "Agora-Caller"), text)
    if text is not None:
        assert_coded(decode_address, text)


@FUZZ
@given(st.text(max_size=300))
def test_payment_headers(header: str) -> None:
    assert_coded(lambda value: decode_payment_header(value, DEV_CHAIN_ID), header)


@FUZZ
@given(json_values)
def test_transactions_in_json_form(value: Any) -> None:
    assert_coded(transaction_from_json, value)


@pytest.mark.parametrize("raw", [VALID_TX])
def test_the_valid_inputs_decode(raw: bytes) -> None:
    assert decode_transaction(raw).nonce == 0
    assert parse_payload(b"\x01" + len(raw).to_bytes(4, "big") + raw) == (raw,)
