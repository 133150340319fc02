"""Migration 0005 gives existing systems a promotion path and fills the live registry from
their past deployments (each deployment then names the version it replaced)."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

# The other branches of the graph at that point stay applied (their columns exist).
OTHERS = [("changes", "0005_api_tokens"), ("changes", "0005_audit_checkpoint")]
BEFORE = [("changes", "0004_environments_live_registry"), *OTHERS]
AFTER = [("changes", "0005_seed_environments"), *OTHERS]


@pytest.mark.django_db(transaction=True)
def test_existing_deployments_fill_the_registry():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    apps = executor.loader.project_state(BEFORE).apps
    User = apps.get_model("auth", "User")
    Team = apps.get_model("changes", "Team")
    AISystem = apps.get_model("changes", "AISystem")
    Protocol = apps.get_model("changes", "ProtocolVersion")
    Change = apps.get_model("changes", "ChangeRequest")
    Deployment = apps.get_model("changes", "Deployment")
    user = User.objects.create(username="old-eng")
    system = AISystem.objects.create(name="old", owner_team=Team.objects.create(name="T"))
    v = [
        Protocol.objects.create(
            system=system, version=f"v{i}", system_prompt="p", content_sha256=str(i)
        )
        for i in range(3)
    ]
    for label, (base, proposed, env) in enumerate(
        [(v[0], v[1], "production"), (v[1], v[2], "production"), (v[0], v[1], "canary")]
    ):
        change = Change.objects.create(
            system=system, base_protocol=base, proposed_protocol=proposed, title=str(label),
            rationale="r", test_plan="t", author=user, content_sha256=str(label), state="deployed",
        )  # fmt: skip
        Deployment.objects.create(
            change=change, environment=env, content_sha256=str(label), deployed_by=user
        )

    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)
    apps = executor.loader.project_state(AFTER).apps
    Environment = apps.get_model("changes", "Environment")
    LiveVersion = apps.get_model("changes", "LiveVersion")
    Deployment = apps.get_model("changes", "Deployment")
    envs = list(Environment.objects.filter(system_id=system.pk).order_by("order"))
    assert [e.name for e in envs] == ["staging", "production", "canary"]
    live = {
        lv.environment.name: lv.protocol_id
        for lv in LiveVersion.objects.select_related("environment")
    }
    assert live == {"staging": None, "production": v[2].pk, "canary": v[1].pk}
    chain = list(
        Deployment.objects.filter(environment="production")
        .order_by("id")
        .values_list("previous_protocol_id", "protocol_id")
    )
    assert chain == [(None, v[1].pk), (v[1].pk, v[2].pk)]
    # and the latest schema again, for the tests that follow
    MigrationExecutor(connection).migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
