from django.db import migrations


class Migration(migrations.Migration):
    """The decision row keeps no grading state any more (0005 moved it to the grade log).
    On PostgreSQL the drops reach every monthly partition through the partitioned parent,
    so months created later (``partitions.create_month``) have the same columns."""

    dependencies = [
        ("monitoring", "0005_grade_log"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="decision", name="decision_ungraded"),
        migrations.RemoveField(model_name="decision", name="grade_error"),
        migrations.RemoveField(model_name="decision", name="graded_at"),
        migrations.RemoveField(model_name="decision", name="label"),
    ]
