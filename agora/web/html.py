"""HTML for the explorer: one layout, tables, definition lists, and charts drawn as SVG.

Every value that reaches a page goes through ``escape`` (``e``) here: a function of this module
takes plain values and returns HTML, so a memo or a service description that holds markup
renders as text. ``Html`` marks a string as HTML already built by these functions.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any

import orjson


class Html(str):
    """A string of HTML built by this module (not escaped again)."""

    __slots__ = ()

    def __add__(self, other: str) -> Html:
        """HTML followed by ``other``: escaped unless it is ``Html`` too."""
        return Html(str.__add__(self, e(other)))


def e(value: Any) -> Html:
    """``value`` as HTML text: an ``Html`` as it is, anything else escaped."""
    if isinstance(value, Html):
        return value
    if value is None:
        return Html("")
    if isinstance(value, bool):
        return Html("yes" if value else "no")
    if isinstance(value, dict | list):
        return Html(html.escape(orjson.dumps(value).decode()))
    return Html(html.escape(str(value), quote=True))


def join(parts: Iterable[Any]) -> Html:
    return Html("".join(e(part) for part in parts))


def tag(name: str, content: Any = "", **attributes: Any) -> Html:
    attrs = "".join(
        f' {key.rstrip("_").replace("_", "-")}="{e(value)}"'
        for key, value in attributes.items()
        if value is not None and value is not False
    )
    return Html(f"<{name}{attrs}>{e(content)}</{name}>")


def link(href: str, text: Any) -> Html:
    return tag("a", text, href=href)


def short(text: str, keep: int = 10) -> str:
    return text if len(text) <= 2 * keep + 1 else f"{text[:keep]}…{text[-6:]}"


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    id_: str | None = None,
    sortable: bool = True,
    numeric: Sequence[bool] | None = None,
) -> Html:
    """A table; ``sortable`` tables sort by a column on a click of its header (explorer.js)."""
    head = join(
        tag("th", header, data_type="num" if numeric and numeric[i] else None)
        for i, header in enumerate(headers)
    )
    body = join(tag("tr", join(tag("td", cell) for cell in row)) for row in rows)
    return tag(
        "table",
        Html(tag("thead", tag("tr", head)) + tag("tbody", body)),
        id=id_,
        class_="sortable" if sortable else None,
    )


def definitions(items: Iterable[tuple[str, Any]]) -> Html:
    return tag("dl", join(Html(tag("dt", key) + tag("dd", value)) for key, value in items))


def json_value(value: Any) -> Html:
    """A JSON value as a compact, readable piece of HTML (nested values as JSON text)."""
    if isinstance(value, dict):
        return definitions((str(key), json_value(item)) for key, item in value.items())
    if isinstance(value, list):
        if value and all(isinstance(item, dict) for item in value):
            return json_table(value)
        return tag("code", orjson.dumps(value).decode())
    if isinstance(value, str) and value.startswith("agr1"):
        return link(f"/accounts/{value}", short(value))
    return e(value)


def json_table(items: Sequence[dict[str, Any]]) -> Html:
    """Objects of one shape as a sortable table, one column per key of the first."""
    if not items:
        return tag("p", "none", class_="muted")
    headers = list(items[0])
    numeric = [
        isinstance(items[0][key], int) and not isinstance(items[0][key], bool) for key in headers
    ]
    rows = [[json_value(item.get(key)) for key in headers] for item in items]
    return table(headers, rows, numeric=numeric)


NAV = (
    ("/", "Overview"),
    ("/blocks", "Blocks"),
    ("/transactions", "Transactions"),
    ("/subnets", "Subnets"),
    ("/channels", "Channels"),
    ("/governance", "Governance"),
    ("/treasury", "Treasury"),
    ("/services", "Services"),
    ("/lineage", "Lineage"),
)


def page(title: str, body: Html, *, twin: str | None = None, status_line: str = "") -> str:
    """The whole document: navigation, search, the body, a link to the page's JSON twin."""
    nav = join(link(href, text) for href, text in NAV)
    search = Html(
        '<form class="search" action="/search" method="get">'
        '<input name="q" type="search" placeholder="address, hash, height, uid (netuid/uid)" '
        'aria-label="search"><button type="submit">Search</button></form>'
    )
    footer = tag("footer", Html(link(twin, f"JSON: {twin}") if twin else Html("")) + e(status_line))
    return "<!doctype html>\n" + tag(
        "html",
        Html(
            tag(
                "head",
                Html(
                    '<meta charset="utf-8">'
                    '<meta name="viewport" content="width=device-width, initial-scale=1">'
                    + tag("title", f"{title} · Agora explorer")
                    + '<link rel="stylesheet" href="/static/explorer.css">'
                    + '<script src="/static/explorer.js" defer></script>'
                ),
            )
            + tag(
                "body",
                Html(
                    tag("header", Html(tag("nav", nav) + search))
                    + tag("main", Html(tag("h1", title) + body))
                    + footer
                ),
            )
        ),
        lang="en",
    )


def line_chart(
    series: dict[str, Sequence[tuple[int, int]]],
    *,
    width: int = 640,
    height: int = 200,
    id_: str | None = None,
) -> Html:
    """Series of integer ``(x, y)`` points as an SVG line chart with a point per value."""
    points = [point for values in series.values() for point in values]
    if not points:
        return tag("p", "no data yet", class_="muted")
    pad = 40
    xs = [x for x, _ in points]
    ys = [y for _, y in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(0, min(ys)), max(ys)
    span_x = max(x1 - x0, 1)
    span_y = max(y1 - y0, 1)

    def place(x: int, y: int) -> tuple[int, int]:
        return (
            pad + (x - x0) * (width - 2 * pad) // span_x,
            height - pad + -(y - y0) * (height - 2 * pad) // span_y,
        )

    colors = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c")
    parts: list[str] = [
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" '
        'class="axis"/>',
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" class="axis"/>',
        f'<text x="2" y="{pad}" class="label">{e(y1)}</text>',
        f'<text x="2" y="{height - pad}" class="label">{e(y0)}</text>',
        f'<text x="{pad}" y="{height - 8}" class="label">{e(x0)}</text>',
        f'<text x="{width - pad}" y="{height - 8}" class="label" text-anchor="end">{e(x1)}</text>',
    ]
    legend = []
    for i, (name, values) in enumerate(series.items()):
        color = colors[i % len(colors)]
        placed = [place(x, y) for x, y in values]
        path = " ".join(f"{px},{py}" for px, py in placed)
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{path}"/>')
        for (x, y), (px, py) in zip(values, placed, strict=True):
            parts.append(
                f'<circle class="point" cx="{px}" cy="{py}" r="2.5" fill="{color}">'
                f"<title>{e(name)} at {e(x)}: {e(y)}</title></circle>"
            )
        legend.append(tag("span", name, style=f"color:{color}"))
    svg = Html(
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img"{f" id={chr(34)}{e(id_)}{chr(34)}" if id_ else ""}>' + "".join(parts) + "</svg>"
    )
    return tag("figure", Html(svg + tag("figcaption", join(legend))))


def bar_chart(values: Sequence[tuple[str, int]], *, width: int = 640, height: int = 160) -> Html:
    """Labelled non-negative integers as SVG bars (one ``rect.point`` each)."""
    if not values:
        return tag("p", "no data yet", class_="muted")
    top = max(max(v for _, v in values), 1)
    step = max((width - 20) // len(values), 1)
    bars = []
    for i, (label, value) in enumerate(values):
        h = value * (height - 30) // top
        bars.append(
            f'<rect class="point" x="{10 + i * step}" y="{height - 20 - h}" '
            f'width="{max(step - 2, 1)}" height="{h}" fill="#2563eb">'
            f"<title>{e(label)}: {e(value)}</title></rect>"
        )
    return Html(
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        'role="img">' + "".join(bars) + "</svg>"
    )


def lineage_graph(models: Sequence[dict[str, Any]], *, width: int = 900) -> Html:
    """Models as an SVG graph: one lane per subnet, one column per round, an edge from each
    model to its parent (``model_hash``, ``parent_hash``, ``netuid``, ``round`` as in
    ``/v1/lineage``)."""
    if not models:
        return tag("p", "no model lineage recorded yet", class_="muted")
    lanes = sorted({m["netuid"] for m in models})
    rounds = sorted({m["round"] for m in models})
    column = {r: i for i, r in enumerate(rounds)}
    lane_height, pad = 70, 40
    step = max((width - 2 * pad) // max(len(rounds) - 1, 1), 1)
    height = pad * 2 + lane_height * (len(lanes) - 1)
    at: dict[str, tuple[int, int]] = {}
    for m in models:
        at[m["model_hash"]] = (
            pad + column[m["round"]] * step,
            pad + lanes.index(m["netuid"]) * lane_height,
        )
    parts: list[str] = []
    for m in models:
        parent = at.get(m["parent_hash"])
        if parent is not None:
            x, y = at[m["model_hash"]]
            parts.append(
                f'<line class="edge" x1="{parent[0]}" y1="{parent[1]}" x2="{x}" y2="{y}" '
                'stroke="#64748b" stroke-width="1.5"/>'
            )
    for m in models:
        x, y = at[m["model_hash"]]
        parts.append(
            f'<circle class="point" cx="{x}" cy="{y}" r="6" fill="#2563eb"><title>'
            f"subnet {e(m['netuid'])} round {e(m['round'])}: {e(m['model_hash'])}</title></circle>"
        )
    for i, netuid in enumerate(lanes):
        parts.append(
            f'<text x="2" y="{pad + i * lane_height - 10}" class="label">subnet {e(netuid)}</text>'
        )
    return Html(
        f'<svg class="chart" id="lineage-graph" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img">' + "".join(parts) + "</svg>"
    )
