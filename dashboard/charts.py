"""Server-rendered SVG charts: geometry is computed here, the template draws it.

No JavaScript charting: a stacked bar per day, one colour per series, a
`<title>` on every bar segment as its tooltip.
"""

from __future__ import annotations

import datetime as dt
import math
import zlib
from dataclasses import dataclass, field

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from dashboard.formatting import usd

# Twenty colours that read on white and on a dark card; a series' colour is
# picked by a hash of its name (series_color), so `tool:web_search` has the
# same colour in every chart, page and period, whatever else is drawn beside
# it.  The price of that: two series of one chart may share a colour (the
# legend and every bar's tooltip name them).
PALETTE = [
    "#4f46e5",
    "#0891b2",
    "#16a34a",
    "#ca8a04",
    "#dc2626",
    "#9333ea",
    "#db2777",
    "#0d9488",
    "#ea580c",
    "#2563eb",
    "#65a30d",
    "#c026d3",
    "#0284c7",
    "#b45309",
    "#7c3aed",
    "#e11d48",
    "#059669",
    "#4338ca",
    "#a16207",
    "#be123c",
]
OTHER = "other"
OTHER_COLOR = "#94a3b8"  # the folded rest, grey, never a series' colour


def series_color(name: str) -> str:
    """The colour of the series `name`, the same in every view (CRC-32 of its UTF-8 name)."""
    if name == OTHER:
        return OTHER_COLOR
    return PALETTE[zlib.crc32(name.encode("utf-8")) % len(PALETTE)]


@dataclass
class Segment:
    x: float
    y: float
    width: float
    height: float
    color: str
    title: str


@dataclass
class Chart:
    width: int
    height: int
    plot_left: int
    plot_bottom: int
    plot_top: int
    segments: list[Segment] = field(default_factory=list)
    gridlines: list[dict[str, object]] = field(default_factory=list)
    xlabels: list[dict[str, object]] = field(default_factory=list)
    legend: list[dict[str, object]] = field(default_factory=list)
    total: float = 0.0

    @property
    def empty(self) -> bool:
        return not self.segments

    def svg(self, *, element_id: str = "cost-chart", label: str = "") -> SafeString:
        """The chart as SVG markup.  Built here rather than in the template: a
        30-day stacked chart has hundreds of numbers, and the template engine's
        per-variable localisation would cost more than everything else on the page."""
        parts = [
            f'<svg class="chart" id="{escape(element_id)}" viewBox="0 0 {self.width} {self.height}" role="img" '
            f'aria-label="{escape(label)}">'
        ]
        for line in self.gridlines:
            parts.append(
                f'<line class="grid" x1="{self.plot_left}" x2="{self.width}" y1="{line["y"]}" y2="{line["y"]}"/>'
                f'<text class="axis" x="{self.plot_left - 6}" y="{line["y"]}" text-anchor="end" '
                f'dominant-baseline="middle">{escape(line["label"])}</text>'
            )
        for seg in self.segments:
            parts.append(
                f'<rect class="bar" x="{seg.x}" y="{seg.y}" width="{seg.width}" height="{seg.height}" '
                f'fill="{seg.color}"><title>{escape(seg.title)}</title></rect>'
            )
        for tick in self.xlabels:
            parts.append(
                f'<text class="axis" x="{tick["x"]}" y="{self.height - 6}" text-anchor="middle">'
                f"{escape(tick['label'])}</text>"
            )
        parts.append("</svg>")
        return mark_safe("\n".join(parts))  # noqa: S308 - every interpolated text is escaped above


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 × 10^n at or above `value`."""
    if value <= 0:
        return 1.0
    exponent = math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        candidate = step * 10**exponent
        if candidate >= value * (1 - 1e-9):
            return candidate
    return 10 ** (exponent + 1)


def stacked_daily(
    series: dict[str, dict[dt.date, float]],
    *,
    start: dt.date,
    end: dt.date,
    top: int = 7,
    width: int = 760,
    height: int = 240,
) -> Chart:
    days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    totals = {label: sum(values.values()) for label, values in series.items()}
    ranked = sorted((label for label in totals if totals[label] > 0), key=lambda label: (-totals[label], label))
    shown = ranked[:top]
    folded: dict[str, dict[dt.date, float]] = {label: series[label] for label in shown}
    rest = ranked[top:]
    if rest:
        other: dict[dt.date, float] = {}
        for label in rest:
            for day, cost in series[label].items():
                other[day] = other.get(day, 0.0) + cost
        folded[OTHER] = other
    colors = {label: series_color(label) for label in folded}

    plot_left, plot_right, plot_top, plot_bottom = 64, width - 8, 10, height - 24
    chart = Chart(width=width, height=height, plot_left=plot_left, plot_bottom=plot_bottom, plot_top=plot_top)
    day_totals = [sum(values.get(day, 0.0) for values in folded.values()) for day in days]
    chart.total = sum(day_totals)
    # Four gridline steps of a round size (1, 2, 2.5 or 5 × 10^n), so every label is round.
    peak = 4 * nice_ceiling(max(day_totals, default=0.0) / 4)
    plot_height = plot_bottom - plot_top
    for i in range(5):
        value = peak * i / 4
        y = plot_bottom - plot_height * i / 4
        chart.gridlines.append({"y": round(y, 1), "label": usd(value)})
    slot = (plot_right - plot_left) / max(len(days), 1)
    bar = max(slot * 0.72, 1.0)
    label_every = max(1, math.ceil(len(days) / 10))
    for index, day in enumerate(days):
        x = plot_left + slot * index + (slot - bar) / 2
        if (len(days) - 1 - index) % label_every == 0:
            chart.xlabels.append({"x": round(x + bar / 2, 1), "label": day.strftime("%b %d")})
        y = float(plot_bottom)
        for label, values in folded.items():
            cost = values.get(day, 0.0)
            if cost <= 0:
                continue
            h = plot_height * cost / peak
            y -= h
            chart.segments.append(
                Segment(
                    x=round(x, 2),
                    y=round(y, 2),
                    width=round(bar, 2),
                    height=round(max(h, 0.5), 2),
                    color=colors[label],
                    title=f"{day:%Y-%m-%d} · {label}: {usd(cost)}",
                )
            )
    chart.legend = [{"label": label, "color": colors[label], "total": sum(folded[label].values())} for label in folded]
    return chart
