"""The Ethereum sequencer: an Inbox contract on any EVM chain orders Agora's transactions.

Anyone posts a batch of signed Agora transactions to the Inbox, which only logs it; Agora
block h is derived from the logs of EVM block ``genesis_block + h``. Ordering,
availability and finality are the EVM chain's; execution is Agora's.

Files:
- ``derive.py``: pure derivation, from the Inbox logs of one EVM block to one
  ``OrderedBatch``, and the batch payload format (version byte, length-prefixed items).
- ``rpc.py``: a small async JSON-RPC client (aiohttp) with retries on outages.
- ``inbox.py``: deploying the Inbox (``deploy_inbox``) and posting payloads to it
  (``InboxPoster``: signing, nonces, fees).
- ``sequencer.py``: ``EthereumSequencer`` and its ``EthereumConfig``: reads confirmed
  blocks, posts submitted transactions, re-posts those not included in time.
- ``anvil.py``: finding and starting a local anvil (Foundry's EVM node) for devnets and tests.
- ``artifacts/Inbox.json``: the Inbox's ABI and bytecode, compiled from
  ``contracts/Inbox.vy`` (``python tests/sequencer/test_ethereum_inbox.py --write-artifact``
  rebuilds it; a test checks that it matches the source).

Error codes (``SequencerError`` is 3200): 3201 MalformedPayload, 3202 InvalidRpcLog,
3203 RpcError, 3204 RpcUnavailable, 3205 PostFailed, 3206 InvalidEthereumConfig,
3207 TransactionTooLargeForBatch, 3208 ReadOnlySequencer, 3209 InboxNotFound.
"""
