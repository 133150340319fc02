"""Error answers with DEBUG off (as under ``make run``): styled pages that extend the base
layout for people, ``{"detail", "code"}`` JSON for every unknown or failing ``/api/`` URL, and
static files served by WhiteNoise from what collectstatic gathered."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied
from django.core.management import call_command
from django.test import Client
from django.urls import include, path

from config import urls as project_urls
from tests.conftest import api_client_for


def _crash(request):
    raise RuntimeError("boom")


def _forbidden(request):
    raise PermissionDenied("Only auditors may export this.")


# A urlconf with the project's routes and handlers plus two views that fail on purpose.
urlpatterns = [
    path("api/v1/test-crash/", _crash),
    path("api/v1/test-forbidden/", _forbidden),
    path("test-crash/", _crash),
    path("", include(project_urls)),
]
handler400 = project_urls.handler400
handler403 = project_urls.handler403
handler404 = project_urls.handler404
handler500 = project_urls.handler500

pytestmark = pytest.mark.django_db


def test_debug_is_off_under_the_test_settings_as_under_make_run(settings):
    assert settings.DEBUG is False


@pytest.mark.parametrize("url", ["/api/v1/no-such-thing/", "/api/nope", "/api/v1/changes/x/"])
def test_an_unknown_api_url_answers_json_404(client, url):
    response = client.get(url)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["code"] == "not_found"
    assert url in body["detail"]
    assert set(body) == {"detail", "code"}


def test_an_api_object_that_does_not_exist_answers_json_404(engineer):
    response = api_client_for(engineer).get("/api/v1/changes/99999/")
    assert response.status_code == 404
    assert set(response.json()) == {"detail", "code"}


def test_a_page_that_does_not_exist_is_the_styled_404_not_the_technical_page(client, engineer):
    client.force_login(engineer)
    response = client.get("/changes/99999/")
    assert response.status_code == 404
    html = response.content.decode()
    assert "Not found" in html
    assert 'class="topbar"' in html, "the base layout"
    assert "Back to the dashboard" in html
    assert "URLconf" not in html and "Page not found at" not in html  # Django's debug page


@pytest.mark.urls("tests.test_error_pages")
def test_a_crash_under_api_answers_json_500():
    client = Client(raise_request_exception=False)
    response = client.get("/api/v1/test-crash/")
    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == "server_error"
    assert "boom" not in response.content.decode(), "no internals leak"


@pytest.mark.urls("tests.test_error_pages")
def test_a_crash_on_a_page_is_the_styled_500():
    client = Client(raise_request_exception=False)
    response = client.get("/test-crash/")
    assert response.status_code == 500
    html = response.content.decode()
    assert "Something went wrong" in html
    assert 'class="topbar"' in html, "the base layout"
    assert "boom" not in html and "Traceback" not in html


@pytest.mark.urls("tests.test_error_pages")
def test_a_permission_error_under_api_answers_json_403(client):
    response = client.get("/api/v1/test-forbidden/")
    assert response.status_code == 403
    assert response.json() == {"detail": "Only auditors may export this.",
                               "code": "permission_denied"}  # fmt: skip


def test_the_403_page_extends_the_base_layout():
    from django.template import loader

    html = loader.get_template("403.html").render({"exception": "Reviewers only."})
    assert "Reviewers only." in html and 'class="topbar"' in html


def test_static_files_are_served_by_whitenoise_after_collectstatic(settings, tmp_path):
    settings.STATIC_ROOT = tmp_path / "static"
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    call_command("collectstatic", "--noinput", verbosity=0)

    response = Client().get("/static/css/app.css")
    assert response.status_code == 200
    assert b"error-page" in b"".join(response.streaming_content)
