"""Every bench in bench/, in short runs, and one table: bench, measure, figure, baseline, ratio.

    .venv/bin/python -m bench [--list] [--full] [NAME ...]      (``make bench``: all, short)

Each bench is its own program (``python -m bench.bench_NAME --help``) that prints its figures
against a baseline measured in the same run. This runner starts each one in its own process,
with the short arguments below unless ``--full`` is given, keeps its whole output in
``.agora/bench/NAME.txt``, reads its headline figures from that output, and prints them as
one table; ``ratio`` is figure / baseline. Short runs use smaller inputs than the defaults,
so their figures are noisier: quote full runs. ``newcomer`` (a fresh clone's ``make run`` to
the first payout, twice: many minutes) runs only when named. A bench that fails shows its
exit status, the others still run, and the runner exits non-zero. Nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NUM = r"[0-9][0-9,]*(?:\.[0-9]+)?"  # 1,234.5
NUMBER = f"({NUM})"  # the same, captured


@dataclass(frozen=True, slots=True)
class Measure:
    """One row: two numbers read from the bench's output (each pattern captures one)."""

    label: str
    unit: str
    figure: str
    baseline: str


@dataclass(frozen=True, slots=True)
class Bench:
    name: str
    short: tuple[str, ...]  # arguments of a short run
    measures: tuple[Measure, ...]
    module: str = ""  # the bench's module, when not ``bench.bench_NAME``
    opt_in: bool = False  # run only when named (too long for every ``make bench``)


BENCHES = (
    Bench(
        "transfers",
        ("--blocks", "2", "--senders", "2000"),
        (
            Measure(
                "build_block / ed25519 verify",
                "tx/s",
                rf"^\(b\) build_block \(sequencer\)\s+{NUMBER}",
                rf"^\(a\) ed25519 verify \(crypto_sign_open\)\s+{NUMBER}",
            ),
            Measure(
                "apply_block replay / build_block",
                "tx/s",
                rf"^\(c\) apply_block replay \(node\)\s+{NUMBER}",
                rf"^\(b\) build_block \(sequencer\)\s+{NUMBER}",
            ),
        ),
    ),
    Bench(
        "governance",
        ("--stakers", "1000", "--repeats", "1"),
        (
            Measure(
                "votes / transfers (build_block, same state)",
                "tx/s",
                rf"^\(b\) votes, build_block\s+{NUMBER}",
                rf"^\(a\) transfers, build_block\s+{NUMBER}",
            ),
        ),
    ),
    Bench(
        "epoch",
        ("--max-uids", "1024", "--repeats", "1"),
        (
            Measure(
                "epoch 1024 uids x 256 validators: fast / readable",
                "s",
                rf"^\s*1024\s+256\s+{NUM}\s+{NUMBER}",
                rf"^\s*1024\s+256\s+{NUMBER}",
            ),
        ),
    ),
    Bench(
        "node",
        ("--senders", "40", "--batched", "2000", "--single", "400", "--lanes", "4"),
        (
            Measure(
                "HTTP 100-tx requests / ed25519 verify",
                "tx/s",
                rf"^\(b\) HTTP, 100-tx requests, \d+ tx in flight\s+{NUMBER}",
                rf"^\(a\) ed25519 verify, crypto_sign_open\s+{NUMBER}",
            ),
            Measure(
                "follower sync (API up) / leader apply",
                "tx/s",
                rf"^\s+the same, from its API up \(Python start-up excluded\)\s+{NUMBER}",
                rf"^\s+leader block apply \(build_block \+ commit\), its own metrics\s+{NUMBER}",
            ),
        ),
    ),
    Bench(
        "neuron",
        ("--requests", "2000", "--callers", "16"),
        (
            Measure(
                "signed neuron echo / plain aiohttp echo",
                "req/s",
                rf"^\(c\) signed neuron echo\s+{NUMBER}",
                rf"^\(b\) plain aiohttp JSON echo\s+{NUMBER}",
            ),
        ),
    ),
    Bench(
        "inbox",
        ("--transactions", "1000", "--empty-blocks", "2000"),
        (
            Measure(
                "Inbox catch-up: derivation / raw EVM reads (time)",
                "s",
                rf"^\(c\) catch-up from genesis[^\n]*\n\s+in {NUMBER}s",
                rf"raw reads alone \([^)]*\): {NUMBER}s",
            ),
        ),
    ),
    Bench(
        "catchup",
        ("--transfers", "2000", "--blocks", "30", "--senders", "16"),
        (
            Measure(
                "Ethereum node catch-up / in-process build_block",
                "tx/s",
                rf"^\(a\) node catch-up, API up[^\n]*\s{NUM}\s+{NUMBER}\s+{NUM}$",
                rf"^\(b\) build_block in this process[^\n]*\s{NUM}\s+{NUMBER}\s+{NUM}$",
            ),
        ),
    ),
    Bench(
        "embedding_model",
        (
            "--callers",
            "4",
            "--rounds",
            "2",
            "--repeats",
            "1",
            "--challenges",
            "10",
            "--skip-agreement",
        ),
        (
            Measure(
                "embedding batcher / direct encode (16 texts, wall)",
                "texts/s",
                rf"requests of 16 text\(s\)[^\n]*\n\s+wall, best\s+batcher\s+{NUMBER}",
                rf"requests of 16 text\(s\)[^\n]*\n[^\n]*direct encode on its batches\s+{NUMBER}",
            ),
        ),
    ),
    Bench(
        "services",
        ("--calls", "300", "--latency-calls", "50"),
        (
            Measure(
                "paid @service call / bare handler (5 ms function)",
                "calls/s",
                rf"^5ms\s+{NUM}\s+{NUMBER}\s",
                rf"^5ms\s+{NUMBER}\s",
            ),
            Measure(
                "paid @service call / bare handler (trivial function)",
                "calls/s",
                rf"^trivial\s+{NUM}\s+{NUMBER}\s",
                rf"^trivial\s+{NUMBER}\s",
            ),
        ),
    ),
    Bench(
        "federated",
        ("--repeats", "1"),
        (
            Measure(
                "one federated round of 12 / central training on pooled rows",
                "ms",
                rf"^\(b\) round\s+{NUMBER} ms",
                rf"^\(a\) central training[^\n]*:\s+{NUMBER} ms",
            ),
        ),
    ),
    Bench(
        "explorer",
        ("--uids", "64", "--epochs", "100", "--requests", "20"),
        (
            Measure(
                "index rebuild from genesis / node replay",
                "s",
                rf"index rebuild from genesis {NUMBER} s",
                rf"^\(a\) node replay {NUMBER} s",
            ),
            Measure(
                "explorer pages p95 / goal 300 ms",
                "ms",
                rf"^\s+all pages\s+p95\s+{NUMBER} ms",
                rf"goal <= {NUMBER} ms",
            ),
        ),
    ),
    Bench(
        "gateway",
        ("--requests", "8", "--latency-requests", "10", "--repeats", "1"),
        (
            Measure(
                "through the gateway / miner called directly",
                "emb/s",
                rf"^\(c\)[^\n]*?\s{NUMBER}\s+{NUM}\s+[0-9.]+\s+[0-9.]+$",
                rf"^\(b\)[^\n]*?\s{NUMBER}\s+{NUM}\s+[0-9.]+\s+[0-9.]+$",
            ),
        ),
    ),
)
NEWCOMER = Bench(
    "newcomer",
    (),
    (
        Measure(
            "second run / fresh clone, to every subnet paid",
            "s",
            rf"^\(b\) second run, same clone, to every subnet paid\s+{NUMBER}",
            rf"^\(a\) fresh clone, to every subnet paid\s+{NUMBER}",
        ),
    ),
    module="bench.newcomer",
    opt_in=True,
)
ALL_BENCHES = (*BENCHES, NEWCOMER)


def read_number(pattern: str, output: str) -> float | None:
    match = re.search(pattern, output, re.MULTILINE)
    return float(match.group(1).replace(",", "")) if match else None


def run_bench(bench: Bench, full: bool, log_dir: Path) -> tuple[int, float, str]:
    """Exit status, seconds, and the whole output of one bench run."""
    module = bench.module or f"bench.bench_{bench.name}"
    argv = [sys.executable, "-m", module, *(() if full else bench.short)]
    began = time.monotonic()
    done = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, env=os.environ | {"COLUMNS": "200"}
    )
    output = done.stdout + done.stderr
    (log_dir / f"{bench.name}.txt").write_text(output)
    return done.returncode, time.monotonic() - began, output


def format_row(cells: tuple[str, ...]) -> str:
    widths = (16, 52, 14, 14, 8)
    return "".join(
        cell.ljust(width) if i < 2 else cell.rjust(width)
        for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
    )


def format_number(value: float | None, unit: str) -> str:
    if value is None:
        return "?"
    text = f"{value:,.0f}" if value >= 100 else f"{value:.3g}"
    return f"{text} {unit}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="benches to run (default: all)")
    parser.add_argument("--full", action="store_true", help="each bench's default arguments")
    parser.add_argument("--list", action="store_true", help="list the benches and stop")
    arguments = parser.parse_args()
    known = {bench.name: bench for bench in ALL_BENCHES}
    if arguments.list:
        for bench in ALL_BENCHES:
            note = "opt-in, run only when named" if bench.opt_in else "short run:"
            print(f"{bench.name:<16} {note} {' '.join(bench.short)}")
        return 0
    unknown = [name for name in arguments.names if name not in known]
    if unknown:
        parser.error(f"no bench {', '.join(unknown)}; --list names them")
    chosen = [known[name] for name in arguments.names] or [
        bench for bench in ALL_BENCHES if not bench.opt_in
    ]
    log_dir = ROOT / ".agora" / "bench"
    log_dir.mkdir(parents=True, exist_ok=True)
    print(format_row(("bench", "measure", "figure", "baseline", "ratio")), flush=True)
    failed = 0
    for bench in chosen:
        status, seconds, output = run_bench(bench, arguments.full, log_dir)
        if status != 0:
            failed += 1
            print(format_row((bench.name, f"FAILED (exit {status}, {seconds:.0f} s)", "", "", "")))
            print(f"{'':16}output: {log_dir / (bench.name + '.txt')}", flush=True)
            continue
        for measure in bench.measures:
            figure = read_number(measure.figure, output)
            baseline = read_number(measure.baseline, output)
            ratio = f"{figure / baseline:.3f}" if figure is not None and baseline else "?"
            cells = (
                bench.name,
                measure.label,
                format_number(figure, measure.unit),
                format_number(baseline, measure.unit),
                ratio,
            )
            print(format_row(cells), flush=True)
    print(f"\nfull outputs in {log_dir}; a bench alone: python -m bench.bench_NAME --help")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
