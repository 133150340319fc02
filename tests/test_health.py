"""Health probes: ``/healthz`` (process up) and ``/readyz`` (database and broker reachable)."""

import pytest

from config.celery import app as celery_app


def test_healthz_answers_without_the_database(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


@pytest.mark.django_db
def test_readyz_is_ready_when_database_and_broker_answer(client):
    response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["checks"] == {"database": "ok", "broker": "ok"}


@pytest.mark.django_db
def test_readyz_is_unavailable_when_the_broker_is_unreachable(client, monkeypatch):
    # given: a broker address where nothing listens (Celery prefers the env vars to its conf)
    nowhere = "redis://127.0.0.1:1/0"
    monkeypatch.setenv("CELERY_BROKER_URL", nowhere)
    monkeypatch.setenv("CELERY_BROKER_WRITE_URL", nowhere)
    monkeypatch.setitem(celery_app.conf, "broker_url", nowhere)
    monkeypatch.setitem(celery_app.conf, "broker_transport_options", {})
    # when
    response = client.get("/readyz")
    # then
    body = response.json()
    assert response.status_code == 503
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["broker"].startswith("error")
