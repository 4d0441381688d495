"""Charts as inline SVG, drawn on the server from the real statistics and evaluations: bars (histograms, top
values, rankings), lines (ROC and precision-recall curves) and points (predicted against actual). No script draws
them, so a page shows its charts with scripts off, and a test counts their bars, points and labels in the DOM.

Every mark carries a class (``bar``, ``point``, ``line``) and a ``<title>`` with its figure, so a pointer or a
screen reader shows the value; ``data-*`` attributes hold the numbers a script or a test reads."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from markupsafe import Markup

WIDTH, HEIGHT = 480, 200
PAD_LEFT, PAD_BOTTOM, PAD_TOP, PAD_RIGHT = 44, 34, 10, 10


def bars(
    labels: Sequence[str], values: Sequence[float], *, title: str, horizontal: bool = False, fmt: str = "{:,.0f}"
) -> Markup:
    """One bar per label (a histogram's bins, a column's top values, attributes by importance)."""
    if horizontal:
        return _horizontal_bars(labels, values, title, fmt)
    n = max(len(values), 1)
    top = max([float(v) for v in values if _finite(v)] or [1.0]) or 1.0
    plot_w, plot_h = WIDTH - PAD_LEFT - PAD_RIGHT, HEIGHT - PAD_TOP - PAD_BOTTOM
    step = plot_w / n
    marks = []
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        v = float(value) if _finite(value) else 0.0
        h = plot_h * v / top
        x, y = PAD_LEFT + i * step, PAD_TOP + plot_h - h
        marks.append(
            f'<rect class="bar" x="{x + step * 0.08:.1f}" y="{y:.1f}" width="{max(step * 0.84, 0.5):.1f}" '
            f'height="{h:.1f}" data-label="{escape(str(label))}" data-value="{v}">'
            f"<title>{escape(str(label))}: {escape(fmt.format(v))}</title></rect>"
        )
    axis = _axis_labels([str(label) for label in labels], step)
    return _svg(title, "".join(marks) + axis + _y_axis(top, fmt))


def _horizontal_bars(labels: Sequence[str], values: Sequence[float], title: str, fmt: str) -> Markup:
    row_h, label_w = 20, 150
    height = PAD_TOP + row_h * max(len(values), 1) + 6
    top = max([abs(float(v)) for v in values if _finite(v)] or [1.0]) or 1.0
    plot_w = WIDTH - label_w - 60
    marks = []
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        v = float(value) if _finite(value) else 0.0
        w = plot_w * abs(v) / top
        y = PAD_TOP + i * row_h
        marks.append(
            f'<text class="label" x="{label_w - 6}" y="{y + 14}" text-anchor="end">{escape(_short(str(label), 22))}'
            f'</text><rect class="bar" x="{label_w}" y="{y + 3}" width="{max(w, 0.5):.1f}" height="{row_h - 6}" '
            f'data-label="{escape(str(label))}" data-value="{v}"><title>{escape(str(label))}: '
            f'{escape(fmt.format(v))}</title></rect><text class="value" x="{label_w + w + 4:.1f}" y="{y + 14}">'
            f"{escape(fmt.format(v))}</text>"
        )
    return _svg(title, "".join(marks), height=height)


def lines(
    series: Sequence[tuple[str, Sequence[tuple[float, float]]]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    diagonal: bool = False,
) -> Markup:
    """Curves on the unit square (ROC, precision-recall): one polyline per series, its points as data."""
    plot_w, plot_h = WIDTH - PAD_LEFT - PAD_RIGHT, HEIGHT - PAD_TOP - PAD_BOTTOM
    parts = []
    if diagonal:
        parts.append(
            f'<line class="reference" x1="{PAD_LEFT}" y1="{PAD_TOP + plot_h}" x2="{PAD_LEFT + plot_w}" y2="{PAD_TOP}"/>'
        )
    for index, (name, points) in enumerate(series):
        coords = " ".join(
            f"{PAD_LEFT + plot_w * _unit(x):.1f},{PAD_TOP + plot_h * (1 - _unit(y)):.1f}" for x, y in points
        )
        parts.append(
            f'<polyline class="line series-{index}" points="{coords}" data-series="{escape(name)}" '
            f'data-points="{len(points)}"><title>{escape(name)}</title></polyline>'
        )
    parts.append(_unit_axes(x_label, y_label))
    return _svg(title, "".join(parts))


def points(
    xy: Sequence[tuple[float, float]], *, title: str, x_label: str, y_label: str, identity: bool = True
) -> Markup:
    """A scatter (predicted against actual), on axes fitted to the data, with the line y = x."""
    finite = [(float(x), float(y)) for x, y in xy if _finite(x) and _finite(y)]
    low = min([min(x, y) for x, y in finite] or [0.0])
    high = max([max(x, y) for x, y in finite] or [1.0])
    span = (high - low) or 1.0
    plot_w, plot_h = WIDTH - PAD_LEFT - PAD_RIGHT, HEIGHT - PAD_TOP - PAD_BOTTOM

    def sx(v: float) -> float:
        return PAD_LEFT + plot_w * (v - low) / span

    def sy(v: float) -> float:
        return PAD_TOP + plot_h * (1 - (v - low) / span)

    parts = []
    if identity:
        parts.append(
            f'<line class="reference" x1="{sx(low):.1f}" y1="{sy(low):.1f}" x2="{sx(high):.1f}" y2="{sy(high):.1f}"/>'
        )
    for x, y in finite:
        parts.append(
            f'<circle class="point" cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" data-x="{x}" data-y="{y}">'
            f"<title>{x:.4g}, {y:.4g}</title></circle>"
        )
    parts.append(
        f'<text class="axis-title" x="{PAD_LEFT + plot_w / 2}" y="{HEIGHT - 4}" text-anchor="middle">'
        f'{escape(x_label)}</text><text class="axis-title" x="10" y="{PAD_TOP + plot_h / 2}" '
        f'transform="rotate(-90 10 {PAD_TOP + plot_h / 2})" text-anchor="middle">{escape(y_label)}</text>'
        f'<text class="tick" x="{PAD_LEFT}" y="{HEIGHT - PAD_BOTTOM + 14}">{low:.3g}</text>'
        f'<text class="tick" x="{PAD_LEFT + plot_w}" y="{HEIGHT - PAD_BOTTOM + 14}" text-anchor="end">{high:.3g}</text>'
    )
    return _svg(title, "".join(parts))


def histogram(edges: Sequence[float], counts: Sequence[float], *, title: str, edge_fmt: str = "{:.2f}") -> Markup:
    """A histogram's bins as touching bars, each titled by its range; the axis names the edges between them."""
    n = max(len(counts), 1)
    top = max([float(c) for c in counts if _finite(c)] or [1.0]) or 1.0
    plot_w, plot_h = WIDTH - PAD_LEFT - PAD_RIGHT, HEIGHT - PAD_TOP - PAD_BOTTOM
    step = plot_w / n
    marks = []
    for i, count in enumerate(counts):
        v = float(count) if _finite(count) else 0.0
        h = plot_h * v / top
        low, high = edge_fmt.format(edges[i]), edge_fmt.format(edges[i + 1])
        marks.append(
            f'<rect class="bar" x="{PAD_LEFT + i * step + 0.5:.1f}" y="{PAD_TOP + plot_h - h:.1f}" '
            f'width="{max(step - 1, 0.5):.1f}" height="{h:.1f}" data-label="{escape(low)} to {escape(high)}" '
            f'data-value="{v}"><title>{escape(low)} to {escape(high)}: {v:,.0f}</title></rect>'
        )
    every = max(1, math.ceil((n + 1) * 42 / plot_w))  # edge labels thinned so that they do not overlap
    ticks = "".join(
        f'<text class="tick" x="{PAD_LEFT + i * step:.1f}" y="{HEIGHT - PAD_BOTTOM + 14}" text-anchor="middle">'
        f"{escape(edge_fmt.format(edges[i]))}</text>"
        for i in range(0, min(len(edges), n + 1), every)
    )
    # The plot's box, unseen: a script places a marker on the axis of the binned values (a threshold) from it.
    area = f'<rect class="plot-area" x="{PAD_LEFT}" y="{PAD_TOP}" width="{plot_w}" height="{plot_h}" fill="none"/>'
    return _svg(title, area + "".join(marks) + ticks + _y_axis(top, "{:,.0f}"))


def _svg(title: str, body: str, height: int = HEIGHT) -> Markup:
    return Markup(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{escape(title)}" '
        f'preserveAspectRatio="xMidYMid meet"><title>{escape(title)}</title>{body}</svg>'
    )


def _axis_labels(labels: list[str], step: float) -> str:
    """Labels under the bars, thinned so that they do not overlap."""
    every = max(1, math.ceil(len(labels) * 42 / (WIDTH - PAD_LEFT - PAD_RIGHT)))
    y = HEIGHT - PAD_BOTTOM + 14
    return "".join(
        f'<text class="tick" x="{PAD_LEFT + (i + 0.5) * step:.1f}" y="{y}" text-anchor="middle">'
        f"{escape(_short(label, 9))}</text>"
        for i, label in enumerate(labels)
        if i % every == 0
    )


def _y_axis(top: float, fmt: str) -> str:
    return (
        f'<text class="tick" x="{PAD_LEFT - 4}" y="{PAD_TOP + 8}" text-anchor="end">{escape(fmt.format(top))}</text>'
        f'<text class="tick" x="{PAD_LEFT - 4}" y="{HEIGHT - PAD_BOTTOM}" text-anchor="end">0</text>'
    )


def _unit_axes(x_label: str, y_label: str) -> str:
    plot_w, plot_h = WIDTH - PAD_LEFT - PAD_RIGHT, HEIGHT - PAD_TOP - PAD_BOTTOM
    return (
        f'<rect class="frame" x="{PAD_LEFT}" y="{PAD_TOP}" width="{plot_w}" height="{plot_h}"/>'
        f'<text class="axis-title" x="{PAD_LEFT + plot_w / 2}" y="{HEIGHT - 4}" text-anchor="middle">'
        f'{escape(x_label)}</text><text class="axis-title" x="10" y="{PAD_TOP + plot_h / 2}" '
        f'transform="rotate(-90 10 {PAD_TOP + plot_h / 2})" text-anchor="middle">{escape(y_label)}</text>'
        f'<text class="tick" x="{PAD_LEFT}" y="{HEIGHT - PAD_BOTTOM + 14}">0</text>'
        f'<text class="tick" x="{PAD_LEFT + plot_w}" y="{HEIGHT - PAD_BOTTOM + 14}" text-anchor="end">1</text>'
    )


def _unit(v: float) -> float:
    return min(1.0, max(0.0, float(v))) if _finite(v) else 0.0


def _finite(v: object) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
