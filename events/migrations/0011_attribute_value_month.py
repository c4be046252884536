"""AttributeValueMonth (issue 15/17): the per-value attribute rollup summed per
calendar month, the tier above AttributeValueWeek.  Backfilled set-based from
AttributeValueRollup (no event is read)."""

import django.db.models.deletion
from django.db import migrations, models

from events.services import month_of_sql

SUMS = ("calls", "errors", "unpriced_calls", "usage_unknown_calls", "input_tokens", "output_tokens", "cost_usd")


def backfill(apps, schema_editor):  # type: ignore[no-untyped-def]
    month = month_of_sql("day")
    cols = ", ".join(SUMS)
    sums = ", ".join(f"SUM({c})" for c in SUMS)
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO events_attributevaluemonth (project_id, key, month, value, {cols}) "
            f"SELECT project_id, key, {month}, value, {sums} FROM events_attributevaluerollup "
            f"GROUP BY project_id, key, {month}, value",
            [],
        )


class Migration(migrations.Migration):

    dependencies = [
        ('events', '0010_attribute_value_week'),
        ('projects', '0003_timezones_key_use'),
    ]

    operations = [
        migrations.CreateModel(
            name='AttributeValueMonth',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('calls', models.IntegerField(default=0)),
                ('errors', models.IntegerField(default=0)),
                ('unpriced_calls', models.IntegerField(default=0)),
                ('usage_unknown_calls', models.IntegerField(default=0)),
                ('input_tokens', models.BigIntegerField(default=0)),
                ('output_tokens', models.BigIntegerField(default=0)),
                ('cost_usd', models.FloatField(default=0)),
                ('key', models.CharField(max_length=64)),
                ('month', models.DateField()),
                ('value', models.CharField(max_length=200)),
                ('project', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, to='projects.project')),
            ],
            options={
                'indexes': [models.Index(fields=['project', 'key', 'month', 'value', 'cost_usd', 'calls'], name='attrvaluemonth_range')],
                'constraints': [models.UniqueConstraint(fields=('project', 'key', 'value', 'month'), name='attrvaluemonth_value_month')],
            },
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
