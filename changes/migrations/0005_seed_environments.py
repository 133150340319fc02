"""Give every existing system the default promotion path (staging, production) plus any
environment its past deployments named, and fill the live registry from those deployments."""

from django.db import migrations


def forward(apps, schema_editor):
    AISystem = apps.get_model("changes", "AISystem")
    Deployment = apps.get_model("changes", "Deployment")
    Environment = apps.get_model("changes", "Environment")
    LiveVersion = apps.get_model("changes", "LiveVersion")
    for system in AISystem.objects.all():
        deployments = Deployment.objects.filter(change__system=system).order_by("created_at", "id")
        names = ["staging", "production"]
        for name in deployments.values_list("environment", flat=True):
            if name not in names:
                names.append(name)
        for i, name in enumerate(names):
            env = Environment.objects.create(system=system, name=name[:50], order=(i + 1) * 10)
            live = LiveVersion.objects.create(environment=env)
            previous = None
            for dep in deployments.filter(environment=name).select_related("change"):
                dep.previous_protocol_id = previous
                dep.protocol_id = dep.change.proposed_protocol_id
                dep.save(update_fields=["previous_protocol", "protocol"])
                previous = dep.protocol_id
                live.protocol_id, live.deployment_id, live.since = previous, dep.pk, dep.created_at
            live.save()


class Migration(migrations.Migration):
    dependencies = [("changes", "0004_environments_live_registry")]
    operations = [migrations.RunPython(forward, migrations.RunPython.noop)]
