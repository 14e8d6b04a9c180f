"""The API does what its OpenAPI description says: schemathesis against a real node process.

``st run`` (schemathesis) reads /v1/openapi.json from a dev node on loopback and sends
generated requests, valid and invalid, to every operation (fixed seed, a few examples each),
with every check: no 5xx, every status documented, every response matching its schema,
schema-invalid input refused (400), schema-valid input accepted, 405 for undeclared methods.
Where validity depends on more than a schema can say (an address's bech32m checksum, a
transaction's signature), a 400 is declared acceptable for valid-looking input. The block
stream is left out (it never ends; tests/node/test_block_stream.py covers it).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from node_helpers import NodeProcess, NodeProcesses, http, make_key

SEED = 20_261_202
MAX_EXAMPLES = 20
# Operations whose inputs pass the schema yet fail a check it cannot express.
SEMANTIC_400 = (
    "GET /v1/accounts/{address}",
    "GET /v1/hotkeys/{address}",
    "GET /v1/channels",
    "GET /v1/services",
    "POST /v1/transactions",
    "POST /v1/faucet",
)
ACCEPTED = ["2xx", "400", "404", "409", "429"]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    processes = NodeProcesses(tmp_path_factory.mktemp("logs"))
    try:
        yield processes.run(tmp_path_factory.mktemp("node"))
    finally:
        processes.stop_all()


def write_config(path: Path) -> Path:
    lines = []
    for name in SEMANTIC_400:
        lines += [
            "[[operations]]",
            f'include-name = "{name}"',
            f"checks.positive_data_acceptance.expected-statuses = {ACCEPTED!r}",
            "",
        ]
    path.write_text("\n".join(lines).replace("'", '"'))
    return path


@pytest.mark.slow
def test_the_node_api_keeps_its_openapi_contract(node: NodeProcess, tmp_path: Path) -> None:
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    assert st is not None, "schemathesis is a test dependency: pip install schemathesis"
    config = write_config(tmp_path / "schemathesis.toml")
    done = subprocess.run(
        [st, "--config-file", str(config), "--no-color", "run", node.url + "/v1/openapi.json"]
        + ["--url", node.url, "--checks", "all", "--seed", str(SEED)]
        + ["--max-examples", str(MAX_EXAMPLES), "--exclude-path", "/v1/stream/blocks"]
        + ["--generation-deterministic", "--request-timeout", "10"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,  # schemathesis keeps its example database in the working directory
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    counted = re.search(r"(\d+) generated, (\d+) passed", done.stdout)
    assert counted is not None, done.stdout[-2000:]
    generated, passed = map(int, counted.groups())
    assert generated == passed >= 500, done.stdout[-2000:]


def test_missing_things_are_404_wrong_methods_405_and_out_of_range_400(node: NodeProcess) -> None:
    nobody = make_key("contract-nobody").address
    for path, code in [
        ("/v1/subnets/42", 2001),
        ("/v1/subnets/42/metagraph", 2001),
        (f"/v1/hotkeys/{nobody}", 2101),
        ("/v1/channels/0x" + "11" * 32, None),
        ("/v1/blocks/999999", 3004),
        ("/v1/transactions/0x" + "22" * 32, 3004),
    ]:
        answer = node.get(path)
        assert answer.status == 404, (path, answer.status, answer.body)
        if code is not None:
            assert answer.error_code == code, (path, answer.body)
    wrong = http("DELETE", node.url + "/v1/transactions")
    assert (wrong.status, wrong.error_code) == (405, 3042)
    assert wrong.headers["Allow"] == "POST"
    too_many = node.get("/v1/blocks?from=0&limit=101")
    assert (too_many.status, too_many.error_code) == (400, 3043)
    assert len(node.get_json("/v1/blocks?from=0&limit=100")["blocks"]) >= 1
    document = node.get_json("/v1/openapi.json")
    account = document["paths"]["/v1/accounts/{address}"]["get"]
    assert account["parameters"][0]["schema"]["pattern"].startswith("^agr1")
    assert {"200", "400", "404"} <= set(account["responses"])
