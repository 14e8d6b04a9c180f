"""The block stream never loses a block silently: a real node process, real HTTP, a slow reader.

The node seals an (empty) block every 50 ms. A reader that stops reading for two seconds
still gets every block, each event's id its height, in order and without a gap; a reader
that disconnects and reconnects with ``Last-Event-ID`` (or ``?from=``) continues at the next
block; a reader further behind than the node replays gets one coded ``behind`` event (3041)
saying where to resume, pages the gap with ``GET /v1/blocks``, and reconnects without a gap.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from node_helpers import NodeProcess, NodeProcesses, http, wait_for

BACKLOG = 40


@dataclass(frozen=True, slots=True)
class Event:
    id: int | None
    name: str
    data: dict[str, Any]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    processes = NodeProcesses(tmp_path_factory.mktemp("logs"))
    try:
        yield processes.run(
            tmp_path_factory.mktemp("node"),
            block_time_ms=50,
            extra=("--stream-backlog-blocks", str(BACKLOG)),
        )
    finally:
        processes.stop_all()


def open_stream(node: NodeProcess, *, last_id: int | None = None, query: str = "") -> Any:
    request = urllib.request.Request(node.url + "/v1/stream/blocks" + query)
    if last_id is not None:
        request.add_header("Last-Event-ID", str(last_id))
    return urllib.request.urlopen(request, timeout=20)


def read_event(stream: Any) -> Event | None:
    """The next event of a server-sent event stream, or None when the stream ends."""
    event_id: int | None = None
    name = "message"
    while line := stream.readline():
        text = line.decode().rstrip("\n")
        if text.startswith("id: "):
            event_id = int(text.removeprefix("id: "))
        elif text.startswith("event: "):
            name = text.removeprefix("event: ")
        elif text.startswith("data: "):
            data = json.loads(text.removeprefix("data: "))
            stream.readline()  # the blank line that ends the event
            return Event(event_id, name, data)
    return None


def read_blocks(stream: Any, count: int) -> list[int]:
    """Heights of the next ``count`` block events; each id is its block's height."""
    heights = []
    for _ in range(count):
        event = read_event(stream)
        assert event is not None and event.name == "block", event
        assert event.id == event.data["header"]["height"]
        heights.append(event.id)
    return heights


def head_of(node: NodeProcess) -> int:
    height: int = node.get_json("/v1/head")["height"]
    return height


def test_a_slow_reader_misses_no_block(node: NodeProcess) -> None:
    with open_stream(node) as stream:
        first = read_blocks(stream, 3)
        paused_at = head_of(node)
        wait_for(lambda: head_of(node) >= paused_at + 30, 30, "30 blocks while not reading")
        later = read_blocks(stream, 60)
    heights = first + later
    assert heights == list(range(heights[0], heights[0] + len(heights)))
    stored = node.get_json(f"/v1/blocks/{heights[-1]}")
    assert stored["header"]["height"] == heights[-1]


def test_a_reader_resumes_after_the_last_event_it_has(node: NodeProcess) -> None:
    with open_stream(node) as stream:
        last = read_blocks(stream, 2)[-1]
    wait_for(lambda: head_of(node) >= last + 10, 30, "10 blocks while disconnected")
    with open_stream(node, last_id=last) as stream:
        assert read_blocks(stream, 15) == list(range(last + 1, last + 16))
    with open_stream(node, query=f"?from={last + 3}") as stream:
        assert read_blocks(stream, 3) == [last + 3, last + 4, last + 5]


def test_a_reader_too_far_behind_is_told_where_to_resume(node: NodeProcess) -> None:
    wait_for(lambda: head_of(node) > BACKLOG + 5, 30, "more blocks than the stream replays")
    with open_stream(node, last_id=1) as stream:
        event = read_event(stream)
        assert event is not None and event.name == "behind", event
        assert event.data["code"] == 3041 and event.data["resume_from"] == 2
        assert event.data["head"] >= BACKLOG + 5 and "Last-Event-ID" in event.data["message"]
        assert read_event(stream) is None  # the stream ended
    # Page the gap, then reconnect from the last block read: nothing is missing.
    have = 1
    while head_of(node) - have > BACKLOG // 2:
        page = node.get_json(f"/v1/blocks?from={have + 1}&limit=100")["blocks"]
        heights = [block["header"]["height"] for block in page]
        assert heights == list(range(have + 1, have + 1 + len(heights)))
        have = heights[-1]
    with open_stream(node, last_id=have) as stream:
        assert read_blocks(stream, 5) == list(range(have + 1, have + 6))


def test_a_malformed_resume_point_is_refused(node: NodeProcess) -> None:
    request = urllib.request.Request(node.url + "/v1/stream/blocks")
    answer = http("GET", node.url + "/v1/stream/blocks?from=minus-one")
    assert (answer.status, answer.error_code) == (400, 3001)
    request.add_header("Last-Event-ID", "not-a-height")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 400
    assert json.loads(refused.value.read())["error"]["code"] == 3001
