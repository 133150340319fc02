"""Monitoring pages: chart against the evaluated band, review queue, incidents, rollback."""

from __future__ import annotations

import numpy as np
import pytest

from changes.models import AuditEvent
from monitoring import grading
from monitoring.models import Incident, ReviewConfig, ReviewItem
from tests.factories import ProtocolFactory

from .conftest import evaluated, store

pytestmark = pytest.mark.django_db


@pytest.fixture
def faked(monitor, deployed):
    evaluated(deployed, rate=0.9)
    ReviewConfig.objects.create(system=deployed.system, fraction=0.05)
    rng = np.random.default_rng(5)
    store(deployed, ["NEEDS_SECOND_APPROVER" if u < 0.6 else "approve" for u in rng.random(300)])
    grading.grade_pending()
    return deployed


def test_monitoring_page_draws_live_band_against_evaluated_band(client, faked, reviewer):
    client.force_login(reviewer)
    page = client.get(f"/monitoring/systems/{faked.system_id}/").content.decode()
    assert 'class="live-band"' in page and 'class="evaluated-band"' in page
    assert "below the evaluated rate" in page
    assert "Override rate" in page


def test_system_page_lists_the_open_incident(client, faked, reviewer):
    client.force_login(reviewer)
    page = client.get(f"/systems/{faked.system_id}/").content.decode()
    incident = Incident.objects.get()
    assert f"INC-{incident.pk}" in page and "Live monitoring" in page


def test_reviewer_works_through_the_queue(client, faked, reviewer, engineer):
    items = ReviewItem.objects.count()
    assert items > 0
    client.force_login(engineer)  # the author sees nothing to review
    assert (
        "Nothing for you to review"
        in client.get(f"/monitoring/systems/{faked.system_id}/review/").content.decode()
    )
    client.force_login(reviewer)
    for _ in range(items):
        page = client.get(f"/monitoring/systems/{faked.system_id}/review/").content.decode()
        item = ReviewItem.objects.filter(reviewed_at__isnull=True).order_by("id").first()
        assert f'value="{item.pk}"' in page
        response = client.post(
            f"/monitoring/systems/{faked.system_id}/review/",
            {"item": item.pk, "verdict": "agree_new", "comment": ""},
        )
        assert response.status_code == 302
    assert not ReviewItem.objects.filter(reviewed_at__isnull=True).exists()
    assert AuditEvent.objects.filter(verb="monitoring.decision_reviewed").count() == items


def test_incident_acknowledge_resolve_and_rollback_link(client, faked, engineer):
    incident = Incident.objects.get()
    client.force_login(engineer)
    page = client.get(f"/monitoring/incidents/{incident.pk}/").content.decode()
    base, previous = faked.proposed_protocol_id, faked.base_protocol_id
    assert f"base={base}&amp;proposed={previous}" in page
    form = client.get(f"/changes/new/?system={faked.system_id}&base={base}&proposed={previous}")
    assert form.context["form"].initial["base_protocol"] == base
    assert form.context["form"].initial["proposed_protocol"] == previous
    client.post(f"/monitoring/incidents/{incident.pk}/", {"action": "acknowledge", "note": "on it"})
    client.post(
        f"/monitoring/incidents/{incident.pk}/", {"action": "resolve", "note": "rolled back"}
    )
    incident.refresh_from_db()
    assert incident.state == "resolved" and incident.owner == engineer
    assert list(incident.events.values_list("what", flat=True)) == [
        "opened",
        "acknowledged",
        "resolved",
    ]
    assert AuditEvent.objects.filter(verb="incident.resolved").exists()


def test_foreign_protocol_ids_are_not_prefilled(client, faked, engineer):
    other = ProtocolFactory()
    client.force_login(engineer)
    form = client.get(f"/changes/new/?system={faked.system_id}&base={other.pk}")
    assert form.context["form"].initial.get("base_protocol") != other.pk


def test_token_created_from_the_page_is_shown_once(client, deployed, engineer):
    client.force_login(engineer)
    page = client.post(
        f"/monitoring/systems/{deployed.system_id}/tokens/", {"name": "prod", "rate_per_minute": 60}
    ).content.decode()
    assert "pcm_ing_" in page
    assert (
        "pcm_ing_" not in client.get(f"/monitoring/systems/{deployed.system_id}/").content.decode()
    )


def test_author_sets_the_monitor_through_the_page(client, engineer, reviewer):
    from monitoring.models import Monitor
    from tests.factories import make_change

    change = make_change(author=engineer)
    client.force_login(engineer)
    url = f"/monitoring/changes/{change.pk}/monitor/"
    bad = client.post(
        url, {"graders": '{"new": {"regex": "("}, "legacy": {"contains": "x"}}', "alpha": 0.05}
    )
    assert bad.status_code == 400 and "graders.new" in bad.content.decode()
    assert not Monitor.objects.exists()
    ok = client.post(
        url, {"graders": '{"new": {"contains": "A"}, "legacy": {"contains": "B"}}', "alpha": 0.05}
    )
    assert ok.status_code == 302
    assert Monitor.objects.get().graders["new"] == [{"contains": "A", "ignore_case": False}]
    client.force_login(reviewer)  # a draft is not visible to a reviewer: 404, nothing changes
    assert (
        client.post(
            url,
            {"graders": '{"new": {"contains": "C"}, "legacy": {"contains": "B"}}', "alpha": 0.05},
        ).status_code
        == 404
    )
    assert Monitor.objects.get().graders["new"][0]["contains"] == "A"
    client.force_login(engineer)
    from changes.models import ChangeRequest

    ChangeRequest.objects.filter(pk=change.pk).update(state="deployed")
    refused = client.post(
        url, {"graders": '{"new": {"contains": "C"}, "legacy": {"contains": "B"}}', "alpha": 0.05}
    )
    assert refused.status_code == 403
    assert Monitor.objects.get().graders["new"][0]["contains"] == "A"


def test_system_page_charts_the_judges_labels_with_its_misses_and_agreement(
    client, faked, reviewer
):
    from monitoring.models import JudgeVerdict, Monitor

    Monitor.objects.filter(change=faked).update(judge={"model": "stub", "rate": 0.5})
    labels = ["new"] * 6 + ["legacy"] * 3 + ["error"] * 2
    graders = ["new"] * 5 + ["legacy"] + ["legacy"] * 3 + [""] * 2
    for i, (label, grader) in enumerate(zip(labels, graders, strict=True)):
        JudgeVerdict.objects.create(
            change=faked, decision_id=10_000 + i, environment="production", label=label,
            grader_label=grader,
        )  # fmt: skip
    client.force_login(reviewer)
    page = client.get(f"/monitoring/systems/{faked.system_id}/").content.decode()
    panel = page[page.index('class="card judge-panel"') :]
    assert f"Judge on a sample of {faked.reference}'s live decisions" in panel
    assert f"{faked.reference} judge: the judge's labels of 9 decided votes" in panel
    assert "11 sampled decision(s) judged; 2 without an answer" in panel
    # 8 of the 9 decided verdicts match the grader's label.
    assert "agrees with the online grader on 0.889" in panel
    # Rates over the 9 decided votes, errors not counted as a label.
    assert ">66.7% (6) [" in panel and ">33.3% (3) [" in panel and ">0.0% (0)" in panel
    assert "(n = 9)" in panel


def test_system_page_has_no_judge_panel_without_a_judge(client, faked, reviewer):
    client.force_login(reviewer)
    page = client.get(f"/monitoring/systems/{faked.system_id}/").content.decode()
    assert "judge-panel" not in page
