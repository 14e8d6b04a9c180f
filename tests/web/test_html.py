"""The explorer's HTML helpers: every value is escaped unless built as HTML here, and the
lineage graph draws a point per model and an edge per known parent."""

from __future__ import annotations

from agora.web.html import Html, e, json_value, lineage_graph, link, table

MARKUP = '<script>alert("x")</script>&'


def test_values_are_escaped_wherever_they_go() -> None:
    assert e(MARKUP) == "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;"
    assert "<script>" not in link("/a?b=" + MARKUP, MARKUP)
    assert "<script>" not in table(["h" + MARKUP], [[MARKUP]])
    assert "<script>" not in json_value({"k" + MARKUP: [MARKUP, {"x": MARKUP}]})
    joined = Html("<b>") + MARKUP
    assert joined.startswith("<b>") and "<script>" not in joined


def test_the_lineage_graph_links_children_to_parents() -> None:
    zero = "0x" + "00" * 32
    models = [
        {"model_hash": "0x01", "parent_hash": zero, "netuid": 3, "round": 1},
        {"model_hash": "0x02", "parent_hash": "0x01", "netuid": 3, "round": 2},
        {"model_hash": "0x03", "parent_hash": "0x02", "netuid": 3, "round": 3},
        {"model_hash": "0x04", "parent_hash": zero, "netuid": 5, "round": 1},
    ]
    svg = lineage_graph(models)
    assert svg.count('class="point"') == 4
    assert svg.count('class="edge"') == 2
    assert "subnet 5" in svg
    assert "no model lineage" in lineage_graph([])
