#pragma version 0.4.3
#pragma evm-version cancun
#pragma optimize gas
"""
@title Agora Inbox
@notice Anyone posts a batch of signed Agora transactions; the contract only logs it.
@dev Agora block h is derived from the Batch logs of EVM block genesis_block + h, in log
     order (agora/sequencer/ethereum/derive.py documents the payload format). Nothing is
     stored and nothing is checked but emptiness: validity is decided by Agora's state
     transition, so a garbage batch costs its poster gas and every node skips it alike.
     The bound, 96 KiB, lets one post carry about 600 transfers (~154 bytes each with their
     length prefix) and stays under the 128 KiB transaction size that geth and Nethermind
     admit to their mempools; a block holds several posts.
"""

MAX_BATCH_BYTES: constant(uint256) = 98304

event Batch:
    sender: indexed(address)
    data: Bytes[MAX_BATCH_BYTES]


@external
def post(batch: Bytes[MAX_BATCH_BYTES]):
    assert len(batch) > 0, "empty batch"
    log Batch(sender=msg.sender, data=batch)
