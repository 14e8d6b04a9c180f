"""A newcomer's first minutes: a fresh clone, the README's main command, the first payout.

    .venv/bin/python -m bench.newcomer [--source DIR] [--timeout 1500] [--make-args ...]

Clones the repository (``--source``, by default this checkout's committed ``HEAD``) into a
temporary folder and runs ``make run`` there, as the README says, with the devnet on free
ports (``DEVNET_ARGS="--port 0 --gateway-port 0"``) so it cannot collide with another on the
machine. From its output, timed as each line arrives:
- set-up: from the command to the devnet's first line (venv, pip, imports);
- loading: to "Agora devnet is running." (node, subnets, model conversion, every process
  ready);
- first rounds: to the first moment every subnet has printed an epoch that pays it: every
  honest miner holds a share and the honest miners together at least 95%.
The model cache starts empty (``AGORA_CACHE_DIR`` in the temporary folder, unless
``--warm-cache`` keeps the machine's own), as on a newcomer's machine. Then the same again on
the same clone (set-up done, the model cache warm). Everything it
starts is stopped: Ctrl-C to the command's process group, then SIGKILL to the group and to
any process still running from the clone; each run is bounded by ``--timeout``. The clone is
removed at the end. Nothing here asserts; the machine's load (other programs, a first pip
download) shows in the figures: say so when quoting them.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_EPOCH = re.compile(r"^block\s+\d+\s+(\S+)\s+epoch \d+: (.*)$")
_SHARE = re.compile(r"(\S+) (\d+)%")
STOP_TIMEOUT_S = 60.0


@dataclass(slots=True)
class Timeline:
    """Seconds from the command's start to each milestone (None: never reached)."""

    devnet_started: float | None = None
    running: float | None = None
    paid: float | None = None
    tasks: tuple[str, ...] = ()
    paid_tasks: set[str] = field(default_factory=set)
    lines: list[str] = field(default_factory=list)

    def read(self, line: str, seconds: float) -> None:
        self.lines.append(f"{seconds:7.1f}  {line}")
        if self.devnet_started is None and line.startswith("Starting a fresh Agora devnet"):
            self.devnet_started = seconds
        elif line.strip().startswith("subnets "):
            self.tasks = tuple(p.split(" = ")[0] for p in line.split(None, 1)[1].split(", "))
        elif line.startswith("Agora devnet is running."):
            self.running = seconds
        elif self.running is not None and self.paid is None:
            match = _EPOCH.match(line)
            if match and is_paying(match.group(2)):
                self.paid_tasks.add(match.group(1))
                if self.tasks and self.paid_tasks >= set(self.tasks):
                    self.paid = seconds


def is_paying(shares_text: str) -> bool:
    """Every honest miner ("miner-N") holds a share, the honest ones 95% or more together."""
    shares = {name: int(percent) for name, percent in _SHARE.findall(shares_text)}
    honest = [percent for name, percent in shares.items() if name.startswith("miner-")]
    return bool(honest) and min(honest) > 0 and sum(honest) >= 95


def run_once(clone: Path, make_args: list[str], env: dict[str, str], timeout_s: float) -> Timeline:
    """``make run`` in ``clone`` until every subnet paid (or the timeout), then stopped."""
    timeline = Timeline()
    began = time.monotonic()
    process = subprocess.Popen(
        ["make", "run", *make_args],
        cwd=clone,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # its own process group: stopped as one
        env=env,
    )
    assert process.stdout is not None
    output = process.stdout

    def read() -> None:
        for line in output:
            timeline.read(line.rstrip("\n"), time.monotonic() - began)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        while timeline.paid is None and process.poll() is None:
            if time.monotonic() - began > timeout_s:
                timeline.lines.append(f"timed out after {timeout_s:.0f} s")
                break
            time.sleep(0.2)
    finally:
        stop(process, clone)
        reader.join(timeout=5)
    return timeline


def stop(process: subprocess.Popen[str], clone: Path) -> None:
    """Ctrl-C to the group (the devnet stops its own children), then SIGKILL what is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    for pid in processes_from(clone):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def processes_from(clone: Path) -> list[int]:
    """Processes whose command line names the clone (the devnet's children have their own
    sessions, so a group signal does not reach them if the devnet itself was killed)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if str(clone) in (entry / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(entry.name))
    return found


def describe(label: str, timeline: Timeline) -> list[str]:
    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f} s"

    def between(start: float | None, end: float | None) -> str:
        return "-" if start is None or end is None else f"{end - start:.1f} s"

    return [
        f"{label}",
        f"  set-up (to the devnet's first line)     {seconds(timeline.devnet_started)}",
        f"  loading (to running)                    "
        f"{between(timeline.devnet_started, timeline.running)}",
        f"  first rounds (to every subnet paid)     {between(timeline.running, timeline.paid)}",
        f"  to running                              {seconds(timeline.running)}",
        f"  to every subnet paid                    {seconds(timeline.paid)}",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=ROOT, help="the repository to clone")
    parser.add_argument("--timeout", type=float, default=1500.0, help="seconds per run")
    parser.add_argument(
        "--make-args",
        nargs="*",
        default=["DEVNET_ARGS=--port 0 --gateway-port 0"],
        help="arguments after `make run`",
    )
    parser.add_argument("--log", type=Path, help="also write every timed line here")
    parser.add_argument(
        "--warm-cache", action="store_true", help="use the machine's model cache, not an empty one"
    )
    arguments = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="agora-newcomer-"))
    clone = folder / "agora"
    env = os.environ | {"COLUMNS": "200", "PYTHONUNBUFFERED": "1"}
    if not arguments.warm_cache:
        env["AGORA_CACHE_DIR"] = str(folder / "model-cache")
    results = []
    try:
        subprocess.run(["git", "clone", "--quiet", str(arguments.source), str(clone)], check=True)
        for label in ("(a) fresh clone", "(b) second run, same clone"):
            timeline = run_once(clone, arguments.make_args, env, arguments.timeout)
            results.append((label, timeline))
            print("\n".join(describe(label, timeline)), flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if arguments.log:
        text = "\n\n".join(f"{label}\n" + "\n".join(t.lines) for label, t in results)
        arguments.log.write_text(text + "\n")
    print(f"\nmachine: {os.cpu_count()} cores, shared with whatever else runs on it")
    for label, timeline in results:
        print(f"{label}, to every subnet paid   {timeline.paid or 0:.1f} s")
    return 0 if all(t.paid is not None for _, t in results) else 1


if __name__ == "__main__":
    sys.exit(main())
