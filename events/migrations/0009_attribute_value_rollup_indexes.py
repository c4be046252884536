"""The per-value attribute rollup's indexes, for the breakdown by a key with
tens of thousands of values (issue 15): the unique key becomes (project, key,
value, day), so the top N values' per-day sums are N short ranges; and a
covering index (project, key, day, value, cost_usd, calls) serves the range's
group-by without reading the table.  Index changes only; no row moves."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("events", "0008_run_sort_index"),
    ]

    operations = [
        # The new unique key first: ingest's ON CONFLICT always has one to match.
        migrations.AddConstraint(
            model_name="attributevaluerollup",
            constraint=models.UniqueConstraint(
                fields=("project", "key", "value", "day"), name="attrvaluerollup_value_day"
            ),
        ),
        migrations.RemoveConstraint(model_name="attributevaluerollup", name="attributevaluerollup_unique"),
        migrations.AddIndex(
            model_name="attributevaluerollup",
            index=models.Index(
                fields=["project", "key", "day", "value", "cost_usd", "calls"], name="attrvaluerollup_range"
            ),
        ),
    ]
