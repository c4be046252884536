"""AttributeWindow (issue 17): a key's values summed over a breakdown preset's
past days, read instead of ~180,000 month, week and day rows; and
AttributeKeyDay.writes, the batch count that says when a window is stale.
Existing key-day rows start at 0 writes (no window exists yet to compare)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('events', '0011_attribute_value_month'),
        ('projects', '0003_timezones_key_use'),
    ]

    operations = [
        migrations.AddField(
            model_name='attributekeyday',
            name='writes',
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.CreateModel(
            name='AttributeWindow',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('key', models.CharField(max_length=64)),
                ('first_day', models.DateField()),
                ('last_day', models.DateField()),
                ('writes', models.BigIntegerField()),
                ('built_at', models.DateTimeField()),
                ('project', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, to='projects.project')),
            ],
        ),
        migrations.CreateModel(
            name='AttributeWindowValue',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('value', models.CharField(max_length=200)),
                ('cost_usd', models.FloatField()),
                ('calls', models.BigIntegerField()),
                ('window', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, to='events.attributewindow')),
            ],
        ),
        migrations.AddConstraint(
            model_name='attributewindow',
            constraint=models.UniqueConstraint(fields=('project', 'key', 'first_day', 'last_day'), name='attributewindow_range'),
        ),
        migrations.AddIndex(
            model_name='attributewindowvalue',
            index=models.Index(fields=['window', 'value', 'cost_usd', 'calls'], name='attrwindowvalue_window'),
        ),
    ]
