"""Eight approved changes from the same base deploy to production at once, on PostgreSQL.

The deploy locks the environment's live-registry row (SELECT ... FOR UPDATE) before the
stale-base check: exactly one deploys, the other seven get the stale-base 409.
"""

import threading

import pytest
from django.db import connection, connections

from changes import audit, env_selectors, services
from changes.env_models import LiveVersion
from changes.models import Deployment
from core.errors import Conflict
from tests.changes.env_support import approved, system_with
from tests.factories import ProtocolFactory

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="row locks need PostgreSQL (CI runs it)"
    ),
]


def test_eight_racing_deploys_from_one_base_exactly_one_wins(
    team_a, engineer, reviewer, pipeline, passing_evaluations, recorded_attestations
):
    # given production running v1 and eight approved changes written against v1
    system, v = system_with(team_a, "v0", "v1")
    first = approved(engineer, reviewer, system, v["v0"], v["v1"])
    services.change_request_deploy(actor=pipeline, change_request=first, environment="production")
    changes = [
        approved(engineer, reviewer, system, v["v1"], ProtocolFactory(system=system))
        for _ in range(8)
    ]
    barrier = threading.Barrier(len(changes))
    outcomes: list = [None] * len(changes)

    def worker(i, change):
        try:
            barrier.wait(timeout=10)
            services.change_request_deploy(
                actor=pipeline, change_request=change, environment="production"
            )
            outcomes[i] = "deployed"
        except Conflict as exc:
            outcomes[i] = exc.code
        except Exception as exc:  # noqa: BLE001  (reported in the assertion below)
            outcomes[i] = repr(exc)
        finally:
            connections.close_all()

    # when all eight deploy at once
    threads = [threading.Thread(target=worker, args=(i, c)) for i, c in enumerate(changes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    # then exactly one deployed and seven were told to rebase
    assert sorted(outcomes) == ["deployed"] + ["stale_base"] * 7
    winner = changes[outcomes.index("deployed")]
    live = LiveVersion.objects.get(environment__system=system, environment__name="production")
    assert live.protocol_id == winner.proposed_protocol_id
    # and the registry equals the replay of the deployment events; every deploy replaced its base
    assert env_selectors.replay(system)["production"] == live.protocol_id
    for dep in Deployment.objects.filter(change__system=system):
        assert dep.previous_protocol_id in (None, dep.change.base_protocol_id)
    assert Deployment.objects.filter(change__system=system).count() == 2
    assert audit.verify_chain()[1] is None
