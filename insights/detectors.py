"""The four detectors of SPEC §7, each a plain function over set-based queries.

Every detector takes a `Window` (the last 24 h before `at`, and the 7 days
before that as the baseline; both judged by the events' `started_at`) and
returns `Finding`s.  The heavy lifting is done in SQL that runs the same on
SQLite (≥ 3.25, window functions) and PostgreSQL: sums, counts, medians and
percentiles are computed by the database, and Python only loops over the
grouped rows (one per section, model or endpoint), never over events.

Where the figures come from:
- `section_spike`: `RunSection` (the cost directly inside a section, per
  run, kept at ingest), grouped by section over baseline + window, read
  from its (project, started_at, section, cost_usd) index alone.
- The window's calls are read once (`window_call_groups`): summed in SQL per
  (section, provider, model, endpoint, run), a row per run and kind of call,
  not per event; `model_inefficiency`, `token_bloat` and `retry_loop` fold
  their window figures from it.
- `model_inefficiency`: the median output tokens of the candidate groups by
  ROW_NUMBER() over the window's calls.
- `token_bloat`: the baseline from `DailyRollup` for its whole UTC days and
  from the events for its two partial days.
- `retry_loop`: the p95 over runs (nearest rank) of the grouped rows; the
  baseline p95 with ROW_NUMBER() in SQL, and the cost of the calls past the
  third per (run, section, endpoint) with a second ROW_NUMBER(), both for
  the firing sections only.

Thresholds are the SPEC's; the minimums below keep small numbers quiet.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, Q, Sum

from events.models import DailyRollup, Event, RunSection
from pricing.costing import RateCard
from pricing.models import price_cost
from pricing.services import PriceTable, price_table_current

WINDOW = dt.timedelta(hours=24)
BASELINE = dt.timedelta(days=7)


# --- section_spike ------------------------------------------------------------
# Fires when the window's cost per run of a section > SPIKE_RATIO × its baseline cost per run.
SPIKE_RATIO = 2.0
# A per-run average over fewer runs than this is noise (on either side).
SPIKE_MIN_WINDOW_RUNS = 5
SPIKE_MIN_BASELINE_RUNS = 5
# A section that cost less than this over the whole window is not worth a look.
SPIKE_MIN_WINDOW_COST_USD = 0.50

# --- model_inefficiency ---------------------------------------------------------
# "The calls look simple": median output tokens at most this, and no errors.
INEFFICIENCY_SIMPLE_MEDIAN_OUTPUT = 200
# Fewer calls than this to a model in a section are not a pattern.
INEFFICIENCY_MIN_CALLS = 20
# "Already runs the cheaper model successfully": at least this many calls to
# it in the same section in the window, none of them an error.
INEFFICIENCY_MIN_CHEAPER_CALLS = 5
# Not worth a change below this saving over the window.
INEFFICIENCY_MIN_SAVINGS_USD = 0.50

# --- token_bloat -------------------------------------------------------------------
# Fires when the window's mean input tokens per LLM call > BLOAT_RATIO × the baseline's.
BLOAT_RATIO = 1.5
BLOAT_MIN_WINDOW_CALLS = 20
BLOAT_MIN_BASELINE_CALLS = 20
# Prompts this short are cheap whatever their growth.
BLOAT_MIN_WINDOW_MEAN_INPUT = 200

# --- retry_loop -------------------------------------------------------------------
# Fires when the p95 over the window's runs of calls to one endpoint within a
# section of one run is > RETRY_MAX_CALLS.  Calls past that many are the waste.
RETRY_MAX_CALLS = 3
# A p95 over fewer runs than this is just the maximum of a handful.
RETRY_MIN_RUNS = 10

# --- severity ----------------------------------------------------------------------
HIGH_SAVINGS_USD = 10.0
MEDIUM_SAVINGS_USD = 1.0


@dataclass(frozen=True)
class Window:
    project_id: int
    start: dt.datetime
    end: dt.datetime
    baseline_start: dt.datetime

    @classmethod
    def ending(cls, project_id: int, at: dt.datetime) -> Window:
        return cls(project_id, at - WINDOW, at, at - WINDOW - BASELINE)


@dataclass
class Finding:
    kind: str
    section: str
    observed: float
    baseline: float
    ratio: float
    severity: str
    message: str
    model: str = ""
    endpoint: str = ""
    est_savings_usd: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.kind, self.section, self.model, self.endpoint)


def _severity(*, savings: float | None = None, ratio: float | None = None, high: float = 0, medium: float = 0) -> str:
    """high/medium/low by the saving in USD or by how far the ratio is past its threshold."""
    if savings is not None and savings >= HIGH_SAVINGS_USD or ratio is not None and high and ratio >= high:
        return "high"
    if savings is not None and savings >= MEDIUM_SAVINGS_USD or ratio is not None and medium and ratio >= medium:
        return "medium"
    return "low"


def _who(section: str) -> str:
    return f"Section `{section}`" if section else "Calls outside any section"


def _money(value: float) -> str:
    return f"${value:,.2f}" if value >= 0.01 or value == 0 else f"${value:.4f}"


def _db(value: dt.datetime) -> Any:
    return connection.ops.adapt_datetimefield_value(value)


def _fetch(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _token_rates(card: RateCard) -> tuple[float, float | None, float, float, float, float]:
    """The card's token rates without the per-request fee (added once per call by the caller)."""
    return (*card.token_rates()[:5], 0.0)


def _section_filter(sections: set[str]) -> tuple[str, list[str]]:
    """An `AND (section IN (…) OR section IS NULL)` clause for these labels ("" = no section)."""
    named = sorted(sec for sec in sections if sec)
    terms = []
    if named:
        terms.append(f"section IN ({', '.join(['%s'] * len(named))})")
    if "" in sections:
        terms.append("section IS NULL")
    return f"AND ({' OR '.join(terms)})", named


# --- the window's calls, grouped by run -------------------------------------------------


@dataclass(frozen=True)
class CallGroup:
    """The window's calls of one run to one (section, provider, model, endpoint)."""

    section: str  # "" outside any section
    provider: str
    model: str | None
    endpoint: str | None
    run_id: str
    calls: int
    errors: int
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    cost_usd: float


def _window_groups_sql() -> str:
    t = Event._meta.db_table
    return f"""
        SELECT COALESCE(section, ''), COALESCE(provider, ''), model, endpoint, run_id, COUNT(*),
               SUM(CASE WHEN status = 'error' THEN 1 ELSE 0 END),
               SUM(input_tokens), SUM(cached_input_tokens), SUM(output_tokens), SUM(cost_usd)
        FROM {t}
        WHERE project_id = %s AND started_at >= %s AND started_at < %s AND span_type <> 'section'
        GROUP BY COALESCE(section, ''), COALESCE(provider, ''), model, endpoint, run_id
    """


def window_call_groups(w: Window) -> list[CallGroup]:
    """One scan of the window's calls, shared by three detectors: a row per
    (section, provider, model, endpoint, run), summed in SQL.  The result
    has one row per run and call kind (not per event), which is what the
    p95 over runs needs; sums per model are folded from it."""
    return [
        # PostgreSQL sums bigints as numeric: back to int / float.
        CallGroup(sec, prov, mdl, ep, run, int(n), int(err), int(i or 0), int(c or 0), int(o or 0), float(cost or 0))
        for sec, prov, mdl, ep, run, n, err, i, c, o, cost in _fetch(
            _window_groups_sql(), [w.project_id, _db(w.start), _db(w.end)]
        )
    ]


# --- section_spike ---------------------------------------------------------------


def section_spike(w: Window) -> list[Finding]:
    """A section's cost per run in the window > 2× its baseline cost per run.

    Cost per run = the cost of calls directly inside the section / the runs in
    which the section appears (a run belongs to the period in which the
    section first started in it).
    """
    in_window = Q(started_at__gte=w.start)
    in_baseline = Q(started_at__lt=w.start)
    # Served by the (project, started_at, section, cost_usd) index alone (hence COUNT(section), not id).
    run_sections = RunSection.objects.filter(
        project_id=w.project_id, started_at__gte=w.baseline_start, started_at__lt=w.end
    )
    rows = (
        run_sections.values("section")
        .annotate(
            w_runs=Count("section", filter=in_window),
            w_cost=Sum("cost_usd", filter=in_window),
            b_runs=Count("section", filter=in_baseline),
            b_cost=Sum("cost_usd", filter=in_baseline),
        )
        .filter(w_runs__gte=SPIKE_MIN_WINDOW_RUNS, b_runs__gte=SPIKE_MIN_BASELINE_RUNS)
    )
    found = []
    for row in rows:
        w_cost, b_cost = row["w_cost"] or 0.0, row["b_cost"] or 0.0
        if w_cost < SPIKE_MIN_WINDOW_COST_USD or b_cost <= 0:
            continue
        observed = w_cost / row["w_runs"]
        baseline = b_cost / row["b_runs"]
        ratio = observed / baseline
        if ratio <= SPIKE_RATIO:
            continue
        excess = w_cost - baseline * row["w_runs"]
        found.append(
            Finding(
                kind="section_spike",
                section=row["section"],
                observed=observed,
                baseline=baseline,
                ratio=ratio,
                est_savings_usd=excess,
                severity=_severity(savings=excess, ratio=ratio, high=5.0, medium=3.0),
                message=(
                    f"{_who(row['section'])} cost {_money(observed)} per run over the last 24 h "
                    f"({row['w_runs']} runs, {_money(w_cost)}), {ratio:.1f}× its 7-day baseline of "
                    f"{_money(baseline)} per run; {_money(excess)} above baseline: check what changed in its "
                    f"prompts, model or number of calls."
                ),
                details={"window_runs": row["w_runs"], "window_cost_usd": w_cost, "baseline_runs": row["b_runs"]},
            )
        )
    return found


# --- token_bloat -------------------------------------------------------------------


def _day_floor(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _day_ceil(moment: dt.datetime) -> dt.datetime:
    floor = _day_floor(moment)
    return floor if floor == moment else floor + dt.timedelta(days=1)


def token_bloat(w: Window, table: PriceTable | None = None, groups: list[CallGroup] | None = None) -> list[Finding]:
    """A section's mean input tokens per model call in the window > 1.5× its baseline.

    Calls are the instrumented calls that name a model (LLM and embedding
    calls; vector-DB calls carry no model and no input tokens).  The baseline
    reads the whole UTC days inside it from `DailyRollup` (kept at ingest) and
    only its two partial days from the events, so the job scans about two
    days of events, not eight.

    The estimated saving is the window's input-token cost (registry prices of
    each model, cached tokens at the cached rate) times the share of the input
    above the baseline mean, 1 − 1/ratio.
    """
    table = table or price_table_current()
    if groups is None:
        groups = window_call_groups(w)
    per_model: dict[tuple[str, str, str], list[int]] = {}
    for g in groups:
        if g.model:
            acc = per_model.setdefault((g.section, g.provider, g.model), [0, 0, 0])
            acc[0] += g.calls
            acc[1] += g.input_tokens
            acc[2] += g.cached_input_tokens
    window_rows = [
        {"section": sec, "provider": prov, "model": mdl, "w_calls": n, "w_input": i, "w_cached": c}
        for (sec, prov, mdl), (n, i, c) in per_model.items()
    ]
    calls = Event.objects.filter(project_id=w.project_id, model__isnull=False).exclude(span_type="section")
    calls = calls.exclude(model="")
    first_full, full_end = _day_ceil(w.baseline_start), _day_floor(w.start)
    edge_rows = (
        calls.filter(
            Q(started_at__gte=w.baseline_start, started_at__lt=first_full)
            | Q(started_at__gte=full_end, started_at__lt=w.start)
        )
        .values("section")
        .annotate(b_calls=Count("id"), b_input=Sum("input_tokens"))
        .order_by()
    )
    day_rows = (
        DailyRollup.objects.filter(project_id=w.project_id, day__gte=first_full.date(), day__lt=full_end.date())
        .exclude(model="")
        .values("section")
        .annotate(b_calls=Sum("calls"), b_input=Sum("input_tokens"))
        .order_by()
    )
    rows: list[dict[str, Any]] = [*window_rows]
    rows += [{**r, "w_calls": 0} for r in edge_rows]
    rows += [{**r, "w_calls": 0} for r in day_rows]
    sections: dict[str, dict[str, Any]] = {}
    for row in rows:
        s = sections.setdefault(
            row["section"] or "", {"w_calls": 0, "w_input": 0, "b_calls": 0, "b_input": 0, "cost": 0.0}
        )
        s["w_calls"] += row["w_calls"]
        s["w_input"] += int(row.get("w_input") or 0)
        s["b_calls"] += int(row.get("b_calls") or 0)
        s["b_input"] += int(row.get("b_input") or 0)
        if row["w_calls"]:
            found_card = table.lookup(row["provider"], row["model"], w.end)
            if found_card is not None:
                rates = _token_rates(found_card)
                s["cost"] += price_cost(rates, int(row["w_input"] or 0), int(row["w_cached"] or 0), 0, 0, 0)
    found = []
    for section, s in sections.items():
        if s["w_calls"] < BLOAT_MIN_WINDOW_CALLS or s["b_calls"] < BLOAT_MIN_BASELINE_CALLS or not s["b_input"]:
            continue
        observed = s["w_input"] / s["w_calls"]
        baseline = s["b_input"] / s["b_calls"]
        if observed < BLOAT_MIN_WINDOW_MEAN_INPUT:
            continue
        ratio = observed / baseline
        if ratio <= BLOAT_RATIO:
            continue
        savings = s["cost"] * (1 - 1 / ratio)
        found.append(
            Finding(
                kind="token_bloat",
                section=section,
                observed=observed,
                baseline=baseline,
                ratio=ratio,
                est_savings_usd=savings,
                severity=_severity(ratio=ratio, high=3.0, medium=2.0),
                message=(
                    f"{_who(section)} sent {observed:,.0f} input tokens per call over the last 24 h "
                    f"({s['w_calls']} calls), {ratio:.1f}× its 7-day mean of {baseline:,.0f}; trim the prompt, "
                    f"history or retrieved context back to the baseline to save about {_money(savings)} a day."
                ),
                details={
                    "window_calls": s["w_calls"],
                    "baseline_calls": s["b_calls"],
                    "window_input_cost_usd": s["cost"],
                },
            )
        )
    return found


# --- model_inefficiency ---------------------------------------------------------------


def _model_medians_sql(where: str) -> str:
    # The median of output tokens per (section, provider, model): the middle
    # row (odd count) or the mean of the two middle rows (even count).
    t = Event._meta.db_table
    return f"""
        WITH ranked AS (
            SELECT COALESCE(section, '') AS sec, COALESCE(provider, '') AS prov, model AS mdl, output_tokens,
                   ROW_NUMBER() OVER (
                       PARTITION BY COALESCE(section, ''), COALESCE(provider, ''), model ORDER BY output_tokens
                   ) AS rn,
                   COUNT(*) OVER (PARTITION BY COALESCE(section, ''), COALESCE(provider, ''), model) AS n
            FROM {t}
            WHERE project_id = %s AND started_at >= %s AND started_at < %s
              AND span_type <> 'section' AND model IS NOT NULL {where}
        )
        SELECT sec, prov, mdl, AVG(1.0 * output_tokens) FROM ranked
        WHERE rn = (n + 1) / 2 OR rn = (n + 2) / 2
        GROUP BY sec, prov, mdl
    """


def model_inefficiency(
    w: Window, table: PriceTable | None = None, groups: list[CallGroup] | None = None
) -> list[Finding]:
    """A section spends on a model whose registry row names a cheaper_alternative,
    and the calls look simple (median output ≤ 200 tokens, no errors) or the
    same section already runs the cheaper model without errors.

    Saving = the window's cost − the same input, cached and output tokens at
    the cheaper model's registry prices (in effect at the window's end).
    """
    table = table or price_table_current()
    params = [w.project_id, _db(w.start), _db(w.end)]
    per_model: dict[tuple[str, str, str], list[Any]] = {}
    for g in window_call_groups(w) if groups is None else groups:
        if g.model is not None:
            acc = per_model.setdefault((g.section, g.provider, g.model), [0, 0, 0, 0, 0, 0.0])
            acc[0] += g.calls
            acc[1] += g.errors
            acc[2] += g.input_tokens
            acc[3] += g.cached_input_tokens
            acc[4] += g.output_tokens
            acc[5] += g.cost_usd
    model_groups = [(sec, prov, mdl, *acc) for (sec, prov, mdl), acc in sorted(per_model.items())]
    if not model_groups:
        return []
    # Resolve each group's model to its price card (SPEC §3 matching).
    canonical: dict[tuple[str, str], RateCard] = {}
    for _section, provider, model, *_ in model_groups:
        card = table.lookup(provider, model, w.end)
        if card is not None:
            canonical[(provider, model)] = card
    # Per section: the priced models it already runs without errors (enough calls).
    runs_ok: dict[str, set[str]] = {}
    for section, provider, model, calls, errors, *_ in model_groups:
        card = canonical.get((provider, model))
        if card is not None and calls >= INEFFICIENCY_MIN_CHEAPER_CALLS and not errors:
            runs_ok.setdefault(section, set()).add(card.matched.lower())
    # Candidates: enough calls to a model with a cheaper alternative, worth the
    # saving, and either proven (the section runs the cheaper model) or
    # possibly simple (no errors); the median decides the latter.
    candidates = []
    for section, provider, model, calls, errors, inp, cached, out, cost in model_groups:
        card = canonical.get((provider, model))
        if calls < INEFFICIENCY_MIN_CALLS or card is None or not card.cheaper_alternative:
            continue
        cheaper = card.cheaper_alternative
        cheaper_card = table.lookup(provider or card.provider, cheaper, w.end)
        if cheaper_card is None:
            continue
        rates = cheaper_card.token_rates()
        cheaper_cost = price_cost(_token_rates(cheaper_card), inp, cached, out, 0, 0) + rates[5] * calls
        proven = cheaper.lower() in runs_ok.get(section, set())
        if cost - cheaper_cost >= INEFFICIENCY_MIN_SAVINGS_USD and (proven or not errors):
            candidates.append((section, provider, model, calls, errors, cost, cheaper, cheaper_cost, proven))
    if not candidates:
        return []
    # Medians for the candidates only (a superset: their sections × their models).
    where, extra = _section_filter({c[0] for c in candidates})
    models = sorted({c[2] for c in candidates})
    where += f" AND model IN ({', '.join(['%s'] * len(models))})"
    medians = {(s, p, m): float(v) for s, p, m, v in _fetch(_model_medians_sql(where), [*params, *extra, *models])}
    found = []
    for section, provider, model, calls, errors, cost, cheaper, cheaper_cost, proven in candidates:
        median = medians.get((section, provider, model), 0.0)
        simple = median <= INEFFICIENCY_SIMPLE_MEDIAN_OUTPUT and not errors
        if not (simple or proven):
            continue
        savings = cost - cheaper_cost
        if simple:
            why = f"with a median of {median:,.0f} output tokens and no errors over {calls} calls"
        else:
            why = f"over {calls} calls while it already runs {cheaper} without errors"
        found.append(
            Finding(
                kind="model_inefficiency",
                section=section,
                model=model,
                observed=cost,
                baseline=cheaper_cost,
                ratio=cost / cheaper_cost if cheaper_cost > 0 else 0.0,
                est_savings_usd=savings,
                severity=_severity(savings=savings),
                message=(
                    f"{_who(section)} spent {_money(cost)} on {model} {why} in the last 24 h; "
                    f"{cheaper} would have cost {_money(cheaper_cost)} (save {_money(savings)} a day)."
                ),
                details={
                    "cheaper_model": cheaper,
                    "calls": calls,
                    "errors": errors,
                    "median_output_tokens": median,
                    "reason": "simple_calls" if simple else "cheaper_model_in_use",
                },
            )
        )
    return found


# --- retry_loop ----------------------------------------------------------------------


def _retry_p95_sql(where: str = "") -> str:
    # Calls per (section, endpoint, run) in a period, then per (section,
    # endpoint) the nearest-rank p95 over runs: the value at rank ceil(0.95 n).
    t = Event._meta.db_table
    return f"""
        WITH per_run AS (
            SELECT COALESCE(section, '') AS sec, endpoint AS ep, run_id, COUNT(*) AS calls
            FROM {t}
            WHERE project_id = %s AND started_at >= %s AND started_at < %s
              AND span_type <> 'section' AND endpoint IS NOT NULL {where}
            GROUP BY COALESCE(section, ''), endpoint, run_id
        ), ranked AS (
            SELECT sec, ep, calls,
                   ROW_NUMBER() OVER (PARTITION BY sec, ep ORDER BY calls) AS rn,
                   COUNT(*) OVER (PARTITION BY sec, ep) AS n
            FROM per_run
        )
        SELECT sec, ep, MAX(n), MAX(CASE WHEN rn = (95 * n + 99) / 100 THEN calls END), SUM(calls), MAX(calls)
        FROM ranked GROUP BY sec, ep
    """


def _retry_excess_sql(where: str) -> str:
    # The calls past the RETRY_MAX_CALLS-th to one endpoint in one section of one run.
    t = Event._meta.db_table
    return f"""
        WITH ranked AS (
            SELECT COALESCE(section, '') AS sec, endpoint AS ep, cost_usd,
                   ROW_NUMBER() OVER (
                       PARTITION BY run_id, COALESCE(section, ''), endpoint ORDER BY started_at, id
                   ) AS rn
            FROM {t}
            WHERE project_id = %s AND started_at >= %s AND started_at < %s
              AND span_type <> 'section' AND endpoint IS NOT NULL {where}
        )
        SELECT sec, ep, COUNT(*), SUM(cost_usd) FROM ranked WHERE rn > %s GROUP BY sec, ep
    """


def retry_loop(w: Window, groups: list[CallGroup] | None = None) -> list[Finding]:
    """The p95, over the window's runs, of calls to the same endpoint within a
    section of one run is > 3.

    The window's calls per (section, endpoint, run) come from the shared
    grouped scan; the p95 (nearest rank: the value at rank ceil(0.95 n) of
    the sorted per-run counts) is taken over those grouped rows.  Baseline:
    the same p95 over the 7 days before, in SQL, for the firing sections
    only.  Saving: the cost of the calls beyond the third per (run, section,
    endpoint) in the window.
    """
    start = _db(w.start)
    per_run: dict[tuple[str, str], dict[str, int]] = {}
    for g in window_call_groups(w) if groups is None else groups:
        if g.endpoint is not None:
            by_run = per_run.setdefault((g.section, g.endpoint), {})
            by_run[g.run_id] = by_run.get(g.run_id, 0) + g.calls
    window: dict[tuple[str, str], tuple[int, int, int, int]] = {}
    for key, by_run in per_run.items():
        counts = sorted(by_run.values())
        n = len(counts)
        window[key] = (n, counts[(95 * n + 99) // 100 - 1], sum(counts), counts[-1])
    firing = {k: v for k, v in window.items() if v[0] >= RETRY_MIN_RUNS and v[1] > RETRY_MAX_CALLS}
    if not firing:
        return []
    # The baseline p95, for the firing sections only (the section is in the
    # (project, started_at, section) index, so other sections' rows are skipped).
    where, named = _section_filter({sec for sec, _ in firing})
    baseline = {
        (sec, ep): int(p95)
        for sec, ep, _runs, p95, *_ in _fetch(
            _retry_p95_sql(where), [w.project_id, _db(w.baseline_start), start, *named]
        )
    }
    excess = {
        (sec, ep): (int(n), float(cost or 0.0))
        for sec, ep, n, cost in _fetch(
            _retry_excess_sql(where), [w.project_id, start, _db(w.end), *named, RETRY_MAX_CALLS]
        )
    }
    found = []
    for (section, endpoint), (runs, p95, calls, max_calls) in sorted(firing.items()):
        extra_calls, extra_cost = excess.get((section, endpoint), (0, 0.0))
        base = float(baseline.get((section, endpoint)) or 0)
        ratio = p95 / base if base else p95 / RETRY_MAX_CALLS
        found.append(
            Finding(
                kind="retry_loop",
                section=section,
                endpoint=endpoint,
                observed=float(p95),
                baseline=base,
                ratio=ratio,
                est_savings_usd=extra_cost,
                severity=_severity(savings=extra_cost, ratio=float(p95), high=10, medium=6),
                message=(
                    f"{_who(section)} called {endpoint} {p95} times in one run at p95 over the last 24 h "
                    f"({runs} runs, up to {max_calls}; 7-day p95 {base:g}); cap retries or break the loop: "
                    f"the {extra_calls} calls beyond {RETRY_MAX_CALLS} per run cost {_money(extra_cost)}."
                ),
                details={"runs": runs, "calls": calls, "max_calls": max_calls, "extra_calls": extra_calls},
            )
        )
    return found


DETECTORS = ("section_spike", "model_inefficiency", "token_bloat", "retry_loop")


# PostgreSQL: memory for the job's sorts and hash aggregates (the window's
# grouped scan keys on five text columns); the default 4MB spills to disk.
POSTGRES_WORK_MEM = "64MB"


@contextlib.contextmanager
def job_session() -> Iterator[None]:
    """The database settings the detectors run under.

    PostgreSQL: a read-only use of a transaction, so that SET LOCAL work_mem
    ends with it.  SQLite: nothing (a transaction would take the write lock,
    BEGIN IMMEDIATE, and block ingest for the job's duration).
    """
    if connection.vendor != "postgresql":
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL work_mem = '{POSTGRES_WORK_MEM}'")
        yield


def detect_all(w: Window) -> list[Finding]:
    """All four detectors; the window's calls are scanned once for three of them."""
    with job_session():
        return _detect_all(w)


def _detect_all(w: Window) -> list[Finding]:
    table = price_table_current()
    groups = window_call_groups(w)
    return [
        *section_spike(w),
        *model_inefficiency(w, table, groups),
        *token_bloat(w, table, groups),
        *retry_loop(w, groups),
    ]
