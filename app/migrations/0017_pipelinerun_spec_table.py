"""A pipeline run's spec moves to a table of its own, ``app_pipelinerunspec`` (issue 13).

The spec holds a feed's whole CSV text (4.5 MB at 100,000 rows), and SQLite rewrites a
row whole, overflow pages included, on every ``UPDATE``: each status change of a run (claimed,
finished) rewrote its spec, 0.03-0.06 s each at that size. Every run's spec is copied, in
one ``INSERT ... SELECT`` (JSON null stays JSON null; a pruned run's ``{}`` stays ``{}``),
then the column is dropped. Reversible: the column comes back filled from the table.
"""

import django.db.models.deletion
from django.db import migrations, models

import app.core.encoding

COPY = "INSERT INTO app_pipelinerunspec (run_id, spec) SELECT id, spec FROM app_pipelinerun"
COPY_BACK = (
    "UPDATE app_pipelinerun SET spec = (SELECT s.spec FROM app_pipelinerunspec s "
    "WHERE s.run_id = app_pipelinerun.id)"
)


class Migration(migrations.Migration):
    dependencies = [
        ("app", "0016_readpaths_page_columns"),
    ]

    operations = [
        migrations.CreateModel(
            name="PipelineRunSpec",
            fields=[
                (
                    "run",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="spec_record",
                        serialize=False,
                        to="app.pipelinerun",
                    ),
                ),
                ("spec", models.JSONField(encoder=app.core.encoding.FastJSONEncoder)),
            ],
        ),
        # Nullable first, so that going back can add the column empty, fill it, and only
        # then make it NOT NULL again.
        migrations.AlterField(
            model_name="pipelinerun",
            name="spec",
            field=models.JSONField(encoder=app.core.encoding.FastJSONEncoder, null=True),
        ),
        migrations.RunSQL(COPY, COPY_BACK),
        migrations.RemoveField(
            model_name="pipelinerun",
            name="spec",
        ),
    ]
