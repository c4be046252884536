"""The daily chart of billed beside observed: two bars a day, server-rendered SVG.

Geometry is computed here and the markup built here (as dashboard/charts.py
does); colours come from CSS classes (`bar billed` / `bar observed`), so the
Content-Security-Policy's ban on inline styles holds.
"""

from __future__ import annotations

import datetime as dt
import math

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from dashboard.charts import nice_ceiling
from dashboard.formatting import usd
from reconciliation.compare import Figures


def billed_observed_svg(
    by_day: list[Figures], *, start: dt.date, end: dt.date, width: int = 760, height: int = 240, label: str = ""
) -> SafeString:
    days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    found = {f.day: f for f in by_day}
    values = [(float(found[d].billed_usd), found[d].observed_usd) if d in found else (0.0, 0.0) for d in days]
    plot_left, plot_right, plot_top, plot_bottom = 64, width - 8, 10, height - 24
    peak = 4 * nice_ceiling(max((max(v) for v in values), default=0.0) / 4)
    plot_height = plot_bottom - plot_top
    parts = [
        f'<svg class="chart" id="reconciliation-chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(label)}">'
    ]
    for i in range(5):
        y = round(plot_bottom - plot_height * i / 4, 1)
        parts.append(
            f'<line class="grid" x1="{plot_left}" x2="{width}" y1="{y}" y2="{y}"/>'
            f'<text class="axis" x="{plot_left - 6}" y="{y}" text-anchor="end" dominant-baseline="middle">'
            f"{escape(usd(peak * i / 4))}</text>"
        )
    slot = (plot_right - plot_left) / max(len(days), 1)
    bar = max(slot * 0.36, 1.0)
    label_every = max(1, math.ceil(len(days) / 10))
    for index, (day, (billed, observed)) in enumerate(zip(days, values, strict=True)):
        x = plot_left + slot * index + slot * 0.14
        for offset, kind, value in ((0.0, "billed", billed), (bar, "observed", observed)):
            if value <= 0:
                continue
            h = max(plot_height * value / peak, 0.5)
            parts.append(
                f'<rect class="bar {kind}" x="{x + offset:.2f}" y="{plot_bottom - h:.2f}" width="{bar:.2f}" '
                f'height="{h:.2f}"><title>{day:%Y-%m-%d} · {kind}: {escape(usd(value))}</title></rect>'
            )
        if (len(days) - 1 - index) % label_every == 0:
            parts.append(
                f'<text class="axis" x="{x + bar:.1f}" y="{height - 6}" text-anchor="middle">{day:%b %d}</text>'
            )
    parts.append("</svg>")
    return mark_safe("\n".join(parts))  # noqa: S308 - every interpolated text is escaped or a number
