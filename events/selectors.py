"""Reads from the event store: run lists and run trees."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.db.models import Exists, OuterRef, Q

from events.models import Event, Run, RunSection


class BadCursor(ValueError):
    pass


def iso(moment: dt.datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def cursor_encode(run: Run) -> str:
    return base64.urlsafe_b64encode(f"{run.started_at.isoformat()}|{run.id}".encode()).decode().rstrip("=")


def cursor_decode(cursor: str) -> tuple[dt.datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        when, _, ident = raw.partition("|")
        moment = dt.datetime.fromisoformat(when)
        if moment.tzinfo is None:
            raise ValueError
        return moment, int(ident)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise BadCursor("cursor is not one this API returned") from None


# Up to this many runs with a section, the run list fetches them by id (see run_list).
SPARSE_SECTION_RUNS = 1000


@dataclass
class RunFilters:
    section: str | None = None
    service: str | None = None
    status: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    min_cost: float | None = None


def run_list(
    *, project_id: int, filters: RunFilters | None = None, limit: int = 50, cursor: str | None = None
) -> tuple[list[Run], str | None]:
    """Runs newest first, keyset-paginated on (started_at, id).

    Served by the (project, -started_at, -id) index: a page reads `limit`+1
    rows however many runs are stored.
    """
    f = filters or RunFilters()
    qs = Run.objects.filter(project_id=project_id)
    if f.service:
        qs = qs.filter(service=f.service)
    if f.status == "error":
        qs = qs.filter(errors__gt=0)
    elif f.status == "ok":
        qs = qs.filter(errors=0)
    if f.since:
        qs = qs.filter(started_at__gte=f.since)
    if f.until:
        qs = qs.filter(started_at__lt=f.until)
    if f.min_cost is not None:
        qs = qs.filter(cost_usd__gte=f.min_cost)
    if cursor:
        when, ident = cursor_decode(cursor)
        # The leading `started_at <= when` bounds the index range scan even
        # when the planner cannot use the OR (e.g. stale statistics).
        qs = qs.filter(Q(started_at__lte=when), Q(started_at__lt=when) | Q(id__lt=ident))
    sparse: list[str] | None = None
    if f.section:
        # A section few runs have: walking the newest runs and probing each for
        # it would read every run (0.5 s at 125k runs), so fetch those few runs
        # by id and order them here.  A common section is found within the first
        # runs of the walk.  (Unordered fetches keep SQLite on the id index.)
        newest = list(
            RunSection.objects.filter(project_id=project_id, section=f.section)
            .order_by("-started_at")
            .values_list("run_id", "started_at")[: SPARSE_SECTION_RUNS + 1]
        )
        sparse = [run_id for run_id, _ in newest]
        if len(newest) > SPARSE_SECTION_RUNS:
            sparse = None
            # No run with the section started after the section last ran: skip
            # the walk over newer runs (a section busy long ago, idle since).
            qs = qs.filter(started_at__lte=newest[0][1]).filter(
                Exists(RunSection.objects.filter(project_id=project_id, run_id=OuterRef("run_id"), section=f.section))
            )
    if sparse is not None:
        found = list(qs.filter(run_id__in=sparse)) if sparse else []
        found.sort(key=lambda r: (r.started_at, r.id), reverse=True)
        runs = found[: limit + 1]
    else:
        runs = list(qs.order_by("-started_at", "-id")[: limit + 1])
    more = len(runs) > limit
    runs = runs[:limit]
    return runs, (cursor_encode(runs[-1]) if more and runs else None)


def run_root_sections(*, project_id: int, run_ids: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {r: [] for r in run_ids}
    # Sorted here, not by SQL: with ORDER BY started_at SQLite's planner takes
    # the (project, started_at, …) index and reads every section of the
    # project (0.4 s at 125k runs) instead of looking these runs up.
    rows = RunSection.objects.filter(project_id=project_id, run_id__in=run_ids, is_root=True).values_list(
        "run_id", "section", "started_at"
    )
    for run_id, label, _ in sorted(rows, key=lambda row: (row[2], row[1])):
        out[run_id].append(label)
    return out


def run_summary(run: Run, root_sections: list[str]) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "service": run.service,
        "started_at": iso(run.started_at),
        "ended_at": iso(run.ended_at),
        "duration_ms": round(run.duration_ms, 3),
        "calls": run.calls,
        "input_tokens": run.input_tokens,
        "output_tokens": run.output_tokens,
        "cost_usd": run.cost_usd,
        "status": run.status,
        "root_sections": root_sections,
        "unpriced_calls": run.unpriced_calls,
        "usage_unknown_calls": run.usage_unknown_calls,
    }


def run_get(*, project_id: int, run_id: str) -> Run | None:
    return Run.objects.filter(project_id=project_id, run_id=run_id).first()


TREE_FIELDS = (
    "span_id",
    "parent_span_id",
    "span_type",
    "name",
    "section",
    "section_path",
    "provider",
    "model",
    "endpoint",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "reasoning_tokens",
    "read_units",
    "write_units",
    "cost_usd",
    "priced",
    "cost_status",
    "cost_details",
    "price_context",
    "usage_details",
    "price_source",
    "latency_ms",
    "started_at",
    "status",
    "error_type",
)


def run_tree(*, project_id: int, run_id: str) -> list[dict[str, Any]]:
    """The run's section tree with costs rolled up from the calls (SPEC §4).

    Sections are nodes keyed by span_id; calls are leaves under their parent
    section.  A call whose section span has not arrived yet (the block is
    still open) gets a stand-in node built from its section label, so the
    tree is right while a run is in flight.
    """
    # Ordered by id in SQL and by time here: an ORDER BY started_at leads
    # SQLite's planner onto the (project, started_at) index, which walks the
    # whole project (1 s at 1M events) instead of the run's few rows.
    rows = list(Event.objects.filter(project_id=project_id, run_id=run_id).order_by("id").values("id", *TREE_FIELDS))
    rows.sort(key=lambda row: (row["started_at"], row["id"]))
    nodes: dict[str, dict[str, Any]] = {}
    leaves: list[dict[str, Any]] = []
    for row in rows:
        node = _node(row)
        if row["span_type"] == "section":
            if row["span_id"] in nodes and nodes[row["span_id"]].get("_stand_in"):
                node["children"] = nodes[row["span_id"]]["children"]
            nodes[row["span_id"]] = node
        else:
            leaves.append(node)
    for leaf in leaves:
        parent_id = leaf["_parent"]
        if parent_id and parent_id not in nodes:
            path = leaf["section_path"]
            parent_path = path.rsplit("/", 1)[0] if path and "/" in path else None
            nodes[parent_id] = {
                **_node(
                    {
                        "span_id": parent_id,
                        "parent_span_id": None,
                        "span_type": "section",
                        "name": leaf["_section"] or parent_id,
                        "section_path": path,
                        "started_at": leaf["_start"],
                        "status": "ok",
                    }
                ),
                "_stand_in": True,
                "_parent_path": parent_path,
            }
    # Link sections to their parents, and calls to their sections.
    roots: list[dict[str, Any]] = []
    for node in list(nodes.values()):
        parent = nodes.get(node["_parent"]) if node["_parent"] else None
        if node.get("_stand_in") and parent is None and node.get("_parent_path"):
            parent = next(
                (n for n in nodes.values() if n["section_path"] == node["_parent_path"] and n is not node), None
            )
        (parent["children"] if parent else roots).append(node)
    for leaf in leaves:
        parent = nodes.get(leaf["_parent"]) if leaf["_parent"] else None
        (parent["children"] if parent else roots).append(leaf)
    for root in roots:
        _roll_up(root)
    _sort(roots)
    return [_public(n) for n in roots]


def _node(row: dict[str, Any]) -> dict[str, Any]:
    is_call = row["span_type"] != "section"
    node = {
        "span_id": row["span_id"],
        "name": row.get("name") or "",
        "span_type": row["span_type"],
        "section_path": row.get("section_path"),
        "cost_usd": row.get("cost_usd", 0.0) if is_call else 0.0,
        "self_cost_usd": row.get("cost_usd", 0.0) if is_call else 0.0,
        "calls": 1 if is_call else 0,
        "input_tokens": row.get("input_tokens", 0) if is_call else 0,
        "output_tokens": row.get("output_tokens", 0) if is_call else 0,
        "latency_ms": row.get("latency_ms", 0.0),
        "status": row.get("status", "ok"),
        "started_at": iso(row.get("started_at")),
        "children": [],
        "_parent": row.get("parent_span_id"),
        "_section": row.get("section"),
        "_start": row.get("started_at"),
    }
    if is_call:
        node.update(
            provider=row.get("provider"),
            model=row.get("model"),
            endpoint=row.get("endpoint"),
            cached_input_tokens=row.get("cached_input_tokens", 0),
            reasoning_tokens=row.get("reasoning_tokens", 0),
            read_units=row.get("read_units", 0.0),
            write_units=row.get("write_units", 0.0),
            priced=row.get("priced", True),
            error_type=row.get("error_type"),
            # cost v2 (SPEC §4)
            cost_status=row.get("cost_status", "exact"),
            cost_details=row.get("cost_details") or {},
            service_tier=(row.get("price_context") or {}).get("service_tier"),
            usage_details=row.get("usage_details") or {},
            price_source=row.get("price_source") or None,
        )
    return node


def _roll_up(node: dict[str, Any]) -> None:
    if node["span_type"] != "section":
        return
    self_cost = 0.0
    for child in node["children"]:
        _roll_up(child)
        node["cost_usd"] += child["cost_usd"]
        node["calls"] += child["calls"]
        node["input_tokens"] += child["input_tokens"]
        node["output_tokens"] += child["output_tokens"]
        if child["span_type"] != "section":
            self_cost += child["cost_usd"]
        if node.get("_stand_in"):
            node["latency_ms"] = max(node["latency_ms"], child["latency_ms"])
            if child["status"] == "error":
                node["status"] = "error"
    node["self_cost_usd"] = self_cost


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _sort(nodes: list[dict[str, Any]]) -> None:
    # Sort on the datetime itself: ISO strings with and without microseconds
    # do not sort in time order.
    nodes.sort(key=lambda n: n["_start"] or _EPOCH)
    for n in nodes:
        _sort(n["children"])


def _public(node: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in node.items() if not k.startswith("_")}
    out["children"] = [_public(c) for c in node["children"]]
    return out
