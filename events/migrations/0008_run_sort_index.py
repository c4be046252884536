"""The run list's sorts by cost, duration and calls, and its cost-per-run
distribution, read a period's runs from one index (issue 15/17): (project,
started_at, cost_usd, calls, ended_at, id).  Without it they read every run
of the period whole (attributes and all), and PostgreSQL scanned the whole
runs table for a 30-day period (47-56 ms at 1M events, growing with
history).  Index changes only."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("events", "0007_attribute_value_rollup"),
        ("projects", "0003_timezones_key_use"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="run",
            index=models.Index(
                fields=["project", "started_at", "cost_usd", "calls", "ended_at", "id"], name="run_project_sort"
            ),
        ),
    ]
