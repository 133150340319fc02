"""Create the role groups the permission checks rely on."""

from django.db import migrations

ROLES = ("engineer", "reviewer", "auditor", "admin", "pipeline")


def forward(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    for name in ROLES:
        Group.objects.get_or_create(name=name)


class Migration(migrations.Migration):
    dependencies = [
        ("changes", "0002_audit_append_only"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]
    operations = [migrations.RunPython(forward, migrations.RunPython.noop)]
