"""End to end: ``agora devnet --tasks federated``: contributor processes holding their own
shards (one flipping its labels), two validators, rounds recorded on chain; the devnet prints
each round's held-out accuracy beside each contributor's share, the poisoner's at 0%; a
miner serves the trained model, following each new one."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROUNDS = 4
TIMEOUT_S = 400.0
_ROUND = re.compile(r"federated round (\d+): accuracy ([0-9.]+)\s+(.*)")


@pytest.mark.slow
def test_a_federated_devnet_trains_and_pays_only_honest_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "devnet"
    output = tmp_path / "devnet-output.log"
    command = [sys.executable, "-m", "agora", "devnet", "--data-dir", str(data_dir)]
    command += ["--port", "0", "--block-time-ms", "500", "--tempo", "6"]
    command += ["--tasks", "federated", "--validators", "2", "--no-gateway"]
    with output.open("wb") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            text = output.read_text(errors="replace")
            rounds = [m for m in _ROUND.finditer(text) if int(m.group(1)) >= ROUNDS]
            if rounds:
                break
            assert process.poll() is None, text[-4000:]
            assert time.monotonic() < deadline, f"no round {ROUNDS} yet:\n{text[-4000:]}"
            time.sleep(1.0)
        accuracy, shares = float(rounds[0].group(2)), rounds[0].group(3)
        assert accuracy > 0.8, text[-2000:]
        assert "poisoner 0%" in shares, shares
        url = re.search(r"node\s+(http://127\.0\.0\.1:\d+)", text)
        assert url is not None
        with urllib.request.urlopen(f"{url.group(1)}/v1/lineage", timeout=10) as answer:
            lineage = json.loads(answer.read())
        assert len(lineage["rounds"]) >= ROUNDS
        assert len(lineage["data_commitments"]) == 4  # the model's server holds no data
        # The server follows training: it serves (and declared on chain) a trained model.
        while True:
            with urllib.request.urlopen(f"{url.group(1)}/v1/lineage", timeout=10) as answer:
                lineage = json.loads(answer.read())
            trained = {r["model_hash"] for r in lineage["rounds"]}
            if any(s["model_hash"] in trained for s in lineage["served"]):
                break
            assert time.monotonic() < deadline, lineage["served"]
            time.sleep(1.0)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    assert "Stopped." in output.read_text(errors="replace")
