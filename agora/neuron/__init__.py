"""The signed request protocol between participants: one server and one client for all.

Miners, validators and the gateway talk HTTP with JSON bodies; every request is signed by the
caller's hotkey and every answer by the callee's, so a validator holds proof of what a miner
answered, and a server serves callers by what the chain says about them (registration, stake).

- ``auth``: the bytes a request and a response sign, the header names, nonces (the client's
  clock, the server's window of nonces seen), and ``verify_response`` to re-check a stored
  answer later. No I/O.
- ``server``: ``NeuronServer``, the checks a request goes through in order (signature,
  callee, nonce, registration, rate by stake, a bounded line served by stake, timeouts).
- ``client``: ``NeuronClient``, signed calls over pooled keep-alive connections; answers not
  signed by the intended callee are refused.
- ``metagraph``: ``MetagraphView``, a subnet's metagraph read from the node API and refreshed
  in the background; what the server looks callers up in.
- ``errors``: every refusal and failure, codes 3400-3449.
"""
