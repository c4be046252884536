"""The event store: one row per event, plus aggregates kept current at ingest.

Aggregates (`Run`, `RunSection`, `DailyRollup`) are only ever changed by
adding the figures of events that were actually inserted (the insert's
RETURNING clause says which), so a resent batch adds nothing to them.
"""

from __future__ import annotations

from django.db import models

from projects.models import Project


class Event(models.Model):
    SPAN_TYPES = [(t, t) for t in ("llm", "vector_db", "api", "other", "section")]
    STATUSES = [("ok", "ok"), ("error", "error")]

    project = models.ForeignKey(Project, on_delete=models.CASCADE, db_index=False)
    event_id = models.CharField(max_length=128)
    run_id = models.CharField(max_length=128)
    span_id = models.CharField(max_length=128)
    parent_span_id = models.CharField(max_length=128, null=True)
    span_type = models.CharField(max_length=16, choices=SPAN_TYPES)
    name = models.CharField(max_length=256, default="")
    section = models.CharField(max_length=256, null=True)
    section_path = models.CharField(max_length=1024, null=True)
    provider = models.CharField(max_length=64, null=True)
    model = models.CharField(max_length=128, null=True)
    endpoint = models.CharField(max_length=128, null=True)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cached_input_tokens = models.BigIntegerField(default=0)
    reasoning_tokens = models.BigIntegerField(default=0)
    read_units = models.FloatField(default=0)
    write_units = models.FloatField(default=0)
    cost_usd = models.FloatField(default=0)
    client_cost_usd = models.FloatField(null=True)
    priced = models.BooleanField(default=False)  # cost_status == "exact" (kept for the v1 contract)
    price = models.ForeignKey("pricing.Price", null=True, on_delete=models.SET_NULL, db_index=False, related_name="+")
    # Cost v2 (SPEC §3): why the figure is what it is.
    cost_status = models.CharField(max_length=16, default="exact")  # exact | unpriced | usage_unknown
    cost_details = models.JSONField(default=dict)  # unit -> USD; null for a unit with no price
    price_source = models.CharField(max_length=200, default="")  # e.g. "genai-prices: openai/gpt-5.4-mini (…)"
    # Wire v1.1 (SPEC §2): what the bill depends on beyond the columns above.
    # Lean rows: ingest stores NULL, not '{}', for an absent usage_details,
    # price_context or attributes (most calls have none); readers take None as {}.
    usage_details = models.JSONField(default=dict, null=True)
    price_context = models.JSONField(default=dict, null=True)
    usage_known = models.BooleanField(default=True)
    provider_host = models.CharField(max_length=255, null=True)
    latency_ms = models.FloatField(default=0)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField()
    status = models.CharField(max_length=8, choices=STATUSES, default="ok")
    error_type = models.CharField(max_length=256, null=True)
    service = models.CharField(max_length=128, null=True)
    attributes = models.JSONField(default=dict, null=True)
    received_at = models.DateTimeField()

    class Meta:
        # PostgreSQL partitions this table by month of started_at (events/partitions.py,
        # migration 0005); its primary key there is (id, started_at).
        constraints = [
            # The idempotency key (SPEC §2): a resent event is never stored twice.  It holds
            # started_at, as a unique key of a partitioned table must: a resend carries the
            # started_at it was first sent with (the invariant, events/partitions.py).
            models.UniqueConstraint(fields=["project", "event_id", "started_at"], name="event_project_event_unique"),
        ]
        indexes = [
            # GET /runs/{run_id}: every event of one run.
            models.Index(fields=["project", "run_id"], name="event_project_run"),
            # Insight windows: a project's events by time, grouped by section.
            models.Index(fields=["project", "started_at", "section"], name="event_project_started"),
            # (No index on started_at alone: it cost ~8% of a row for `reprice --since`
            # across projects, which on PostgreSQL opens only the months it needs and on
            # SQLite may scan; retention reads (project, started_at) above.)
            # "Spend we cannot price": the few calls that are not exact, by time,
            # without walking the project's exact calls.
            models.Index(
                fields=["project", "started_at"],
                name="event_project_not_exact",
                condition=~models.Q(cost_status="exact"),
            ),
        ]


class Run(models.Model):
    """Totals of one run, updated at ingest so lists never scan events."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, db_index=False)
    run_id = models.CharField(max_length=128)
    service = models.CharField(max_length=128, null=True)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField()
    calls = models.IntegerField(default=0)
    events = models.IntegerField(default=0)
    errors = models.IntegerField(default=0)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cost_usd = models.FloatField(default=0)
    unpriced_calls = models.IntegerField(default=0)
    usage_unknown_calls = models.IntegerField(default=0)
    # The run's attributes as its events sent them (the SDK copies `run(user_id=..., plan=...)`
    # onto every event): merged at ingest, keys first seen win, at most RUN_ATTRIBUTES_MAX keys,
    # values as strings of at most ATTRIBUTE_VALUE_MAX characters (events/attributes.py).
    attributes = models.JSONField(default=dict)
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "run_id"], name="run_project_run_id_unique")]
        indexes = [
            # GET /runs/latest and the dashboard list: newest first, keyset on (started_at, id).
            models.Index(fields=["project", "-started_at", "-id"], name="run_project_latest"),
            models.Index(fields=["project", "service", "-started_at"], name="run_project_service"),
            # The run list sorted by cost, duration or calls, and its cost-per-run distribution:
            # a period's runs read from the index alone (the rows only for the page shown).
            models.Index(
                fields=["project", "started_at", "cost_usd", "calls", "ended_at", "id"], name="run_project_sort"
            ),
        ]

    @property
    def status(self) -> str:
        return "error" if self.errors else "ok"

    @property
    def duration_ms(self) -> float:
        return (self.ended_at - self.started_at).total_seconds() * 1000.0


class RunSection(models.Model):
    """A section label seen in a run, with the call cost directly inside it.

    Serves the `section=` filter of the run list and the run's root sections.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, db_index=False)
    run_id = models.CharField(max_length=128)
    section = models.CharField(max_length=256)
    is_root = models.BooleanField(default=False)
    started_at = models.DateTimeField()
    calls = models.IntegerField(default=0)
    cost_usd = models.FloatField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "run_id", "section"], name="runsection_unique"),
        ]
        indexes = [
            models.Index(fields=["project", "section", "-started_at"], name="runsection_section_time"),
            # Insights (section_spike): cost per run by section over a time range, read from the index alone.
            models.Index(fields=["project", "started_at", "section", "cost_usd"], name="runsection_started_cover"),
        ]


class RollupSums(models.Model):
    """The seven call sums every rollup row keeps (events.services._ROLLUP_SUMS):
    added at ingest, summed by the breakdown and the overview."""

    calls = models.IntegerField(default=0)
    errors = models.IntegerField(default=0)
    unpriced_calls = models.IntegerField(default=0)
    usage_unknown_calls = models.IntegerField(default=0)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cost_usd = models.FloatField(default=0)

    class Meta:
        abstract = True


class DailyRollup(RollupSums):
    """Per day, service, section and model: the call totals the overview draws from.

    `service`, `section` and `model` are "" for calls without a service, outside
    any section / without a model.  `service` is in the key so the breakdown can
    group and filter by it (a service runs its own sections, so it multiplies
    the rows by little).
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, db_index=False)
    day = models.DateField()
    service = models.CharField(max_length=128, default="")
    section = models.CharField(max_length=256, default="")
    provider = models.CharField(max_length=64, default="")
    model = models.CharField(max_length=128, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["project", "day", "service", "section", "provider", "model"], name="dailyrollup_unique"
            ),
        ]


class AttributeKey(models.Model):
    """An attribute key a project's calls carry and that is rolled up.

    At most ATTRIBUTE_KEYS_MAX per project, first seen first kept: the
    breakdown's group-by picker lists them; a key past the cap is stored on
    its events and runs but not rolled up.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, db_index=False)
    key = models.CharField(max_length=64)
    first_seen_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "key"], name="attributekey_unique")]


class AttributeRollup(RollupSums):
    """Per UTC day, attribute key and value (and service, provider, model): call totals.

    Kept at ingest beside DailyRollup so the breakdown by `user_id`, `customer`,
    … never scans events.  A call adds to one row per rolled-up key it carries.
    Bounded: at most ATTRIBUTE_VALUES_MAX distinct values per (project, key, day);
    later values go to the value "(other)".  Section is not in the key (a run
    spans many sections, which would multiply the rows per value several-fold);
    service, provider and model are (a value's calls use one or a few of each).
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, db_index=False)
    key = models.CharField(max_length=64)
    day = models.DateField()
    value = models.CharField(max_length=200)
    service = models.CharField(max_length=128, default="")
    provider = models.CharField(max_length=64, default="")
    model = models.CharField(max_length=128, default="")

    class Meta:
        constraints = [
            # Leads with (project, key, day): serves both the breakdown's range
            # reads and ingest's "is this value already in today's rows" look-up.
            models.UniqueConstraint(
                fields=["project", "key", "day", "value", "service", "provider", "model"],
                name="attributerollup_unique",
            ),
        ]


class AttributeValueRollup(RollupSums):
    """Per UTC day, attribute key and value: call totals over every service,
    provider and model (AttributeRollup summed over those three).

    Kept at ingest in the same transaction as AttributeRollup, with the same
    values (the cap's "(other)" included), so its sums equal the wide rollup's
    summed per (key, day, value).  A breakdown by an attribute without a
    service, provider or model filter reads it: a value's calls spread over
    several models, so it holds 2-3x fewer rows per range than the wide one.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, db_index=False)
    key = models.CharField(max_length=64)
    day = models.DateField()
    value = models.CharField(max_length=200)

    class Meta:
        constraints = [
            # (project, key, value) leads: a breakdown's per-day sums of its top N
            # values are N short ranges here (a day-led key made them one seek per
            # day and value: 4,500 seeks for 50 values over 90 days).  Ingest's
            # "which of these values does the day hold" is an exact seek either way.
            models.UniqueConstraint(fields=["project", "key", "value", "day"], name="attrvaluerollup_value_day"),
        ]
        indexes = [
            # A range's groups (the top N by cost and how many groups there are) read
            # only this index: without cost and calls in it, SQLite looked each of a
            # 90-day range's ~125,000 rows up in the table (half the query), and
            # PostgreSQL can scan it index-only.
            models.Index(fields=["project", "key", "day", "value", "cost_usd", "calls"], name="attrvaluerollup_range"),
        ]


class AttributeValueWeek(RollupSums):
    """Per ISO week (`week` is its Monday), attribute key and value:
    AttributeValueRollup summed over the week's days.

    Kept at ingest in the same transaction and from the same sums (the cap's
    "(other)" included), so a week row always equals its day rows summed; the
    rebuilds recompute a week from its day rows.  A breakdown over a range reads
    the range's whole weeks here and only its edge days (at most six at each
    end) from AttributeValueRollup: a value active every day is 7 rows a week
    there and 1 here, so 30 days of 20,000 daily users group ~4x fewer rows.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, db_index=False)
    key = models.CharField(max_length=64)
    week = models.DateField()
    value = models.CharField(max_length=200)

    class Meta:
        # The same two keys as AttributeValueRollup's, for the same reads.
        constraints = [
            models.UniqueConstraint(fields=["project", "key", "value", "week"], name="attrvalueweek_value_week"),
        ]
        indexes = [
            models.Index(fields=["project", "key", "week", "value", "cost_usd", "calls"], name="attrvalueweek_range"),
        ]


class AttributeValueMonth(RollupSums):
    """Per calendar month (`month` is its first day), attribute key and value:
    AttributeValueRollup summed over the month's days, kept and rebuilt as
    AttributeValueWeek is.  A breakdown reads a range's whole months here, then
    whole weeks, then days: 90 days of 20,000 daily users is two or three
    month rows a value instead of twelve week rows."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, db_index=False)
    key = models.CharField(max_length=64)
    month = models.DateField()
    value = models.CharField(max_length=200)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "key", "value", "month"], name="attrvaluemonth_value_month"),
        ]
        indexes = [
            models.Index(fields=["project", "key", "month", "value", "cost_usd", "calls"], name="attrvaluemonth_range"),
        ]


class AttributeKeyDay(RollupSums):
    """Per UTC day and attribute key: how many distinct values the rollups hold
    (the value cap's count, ATTRIBUTE_VALUES_MAX) and the key's call totals.

    `value_count` is what ingest reads to decide whether a new value still has a
    place, instead of counting up to 10,000 rows of the day per batch; it only
    counts rows that were really inserted, so it equals
    COUNT(*) of AttributeValueRollup for the (key, day).  The sums are every
    call carrying the key: a breakdown's "all values" totals in one row a day.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, db_index=False)
    key = models.CharField(max_length=64)
    day = models.DateField()
    value_count = models.IntegerField(default=0)
    # Ingest batches that added to the (key, day): +1 each, never reset by ingest,
    # so an AttributeWindow stamped with the sum over its days knows it is stale
    # when the sum moves (a late event, a new value).  Bigint: it never saturates.
    writes = models.BigIntegerField(default=0, db_default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "key", "day"], name="attributekeyday_unique")]


class AttributeWindow(models.Model):
    """One attribute key's values summed over a fixed range of past days
    [first_day, last_day], in AttributeWindowValue: one row per value.

    A breakdown of the last 90 days by a key with 20,000 values otherwise groups
    ~180,000 month, week and edge-day rows (every tier holds each value once);
    with the window of the 89 days up to yesterday it groups that window's
    20,000 rows and today's day rows.  attribution.services.attribute_windows_refresh
    (Celery, every ATTRIBUTE_WINDOWS_INTERVAL_SECONDS) builds the windows the
    breakdown's presets read.

    Never read stale: `writes` is SUM(AttributeKeyDay.writes) over the range when
    it was built, and every ingest batch that touches a (key, day) adds 1 there,
    so a window is read only while the sum still equals its stamp.  The rollup
    rebuilds, which rewrite AttributeKeyDay, delete the windows they overlap.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, db_index=False)
    key = models.CharField(max_length=64)
    first_day = models.DateField()
    last_day = models.DateField()
    writes = models.BigIntegerField()
    built_at = models.DateTimeField()

    class Meta:
        # One window per range and key: a doubled or concurrent build fails on it.
        constraints = [
            models.UniqueConstraint(fields=["project", "key", "first_day", "last_day"], name="attributewindow_range"),
        ]


class AttributeWindowValue(models.Model):
    """A value's calls and cost over its AttributeWindow's days: the two sums the
    breakdown's top-N query orders by (the top N's full sums come from the day rows)."""

    window = models.ForeignKey(AttributeWindow, on_delete=models.CASCADE, db_index=False)
    value = models.CharField(max_length=200)
    cost_usd = models.FloatField()
    calls = models.BigIntegerField()

    class Meta:
        # The whole window is read, from this index alone (PostgreSQL index-only scan).
        # Values are unique per window by construction (one GROUP BY value).
        indexes = [models.Index(fields=["window", "value", "cost_usd", "calls"], name="attrwindowvalue_window")]
