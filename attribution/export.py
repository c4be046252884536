"""A Breakdown as JSON (GET /costs) and as CSV (GET /costs?format=csv, the page's export)."""

from __future__ import annotations

import csv
import io
from typing import Any

from attribution.selectors import Breakdown, CostRow

CSV_HEADER = (
    "kind",
    "key",
    "calls",
    "errors",
    "unpriced_calls",
    "usage_unknown_calls",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "share",
)


def usd_figure(value: float) -> float:
    """A sum of float costs to 12 significant digits: what its additions can
    vouch for (0.0069900000000000006 is 0.00699)."""
    return float(f"{value:.12g}")


def row_json(row: CostRow) -> dict[str, Any]:
    s = row.sums
    return {
        "key": row.key,
        "calls": s.calls,
        "errors": s.errors,
        "unpriced_calls": s.unpriced_calls,
        "usage_unknown_calls": s.usage_unknown_calls,
        "input_tokens": s.input_tokens,
        "output_tokens": s.output_tokens,
        "cost_usd": usd_figure(s.cost_usd),
        "share": round(row.share, 6),
    }


def breakdown_json(b: Breakdown) -> dict[str, Any]:
    q = b.query
    return {
        "group_by": q.group_label,
        "from": q.start.isoformat(),
        "to": q.end.isoformat(),
        "filters": {
            "section": q.section,
            "model": q.model,
            "service": q.service,
            "provider": q.provider,
            "attribute": f"{q.attribute[0]}:{q.attribute[1]}" if q.attribute else None,
        },
        "limit": q.limit,
        "rows": [row_json(r) for r in b.rows],
        "other": {**row_json(b.other), "keys": b.other_keys},
        "none": row_json(b.none) if b.none else None,
        "totals": row_json(b.totals),
        "daily": [
            {
                "day": d.day.isoformat(),
                "calls": d.calls,
                "cost_usd": usd_figure(d.cost_usd),
                "by_key": {k: usd_figure(v) for k, v in d.by_key.items()},
            }
            for d in b.daily
        ],
    }


def _cell(text: str) -> str:
    # A spreadsheet runs a cell that starts with = + - @ as a formula; keys are
    # what callers sent (customer names...), so such a key is quoted.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def breakdown_csv(b: Breakdown) -> str:
    """One line per row, then `other`, `none` (attribute group-bys) and `total`,
    with the JSON's figures."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    lines = [("row", r) for r in b.rows] + [("other", b.other)]
    if b.none is not None:
        lines.append(("none", b.none))
    lines.append(("total", b.totals))
    for kind, row in lines:
        j = row_json(row)
        writer.writerow([kind, _cell(row.key), *(j[c] for c in CSV_HEADER[2:])])
    return out.getvalue()
