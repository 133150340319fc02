"""Input limits everywhere: no 500, no runaway CPU or memory, on the red team's inputs.

Deeply nested JSON was a 500 on every endpoint (the unauthenticated token endpoint too);
deeply nested YAML cost ~9 s of CPU per request; a 300 MB suite upload was read into memory
(673 MB peak) before it was refused.
"""

from __future__ import annotations

import io
import json
import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from core import limits
from tests.conftest import api_client_for
from tests.evaluations.conftest import suite_text

pytestmark = pytest.mark.django_db

DEEP_JSON = "[" * 50_000 + "]" * 50_000
DEEP_OBJECT = '{"a":' * 20_000 + "1" + "}" * 20_000
DEEP_YAML_FLOW = "name: x\nscenarios: " + "[" * 50_000 + "]" * 50_000 + "\n"
DEEP_YAML_BLOCK = "name: x\nscenarios:\n  " + "- " * 20_000 + "a\n"  # block sequences


def _api_routes(resolver=None, prefix=""):
    """Every API route (path with 1 for each id), walked from the URL configuration."""
    resolver = resolver or get_resolver()
    for entry in resolver.url_patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from _api_routes(entry, route)
        elif isinstance(entry, URLPattern) and route.startswith("api/v1/"):
            path = route
            for name in entry.pattern.converters:
                path = path.replace(f"<int:{name}>", "1")
            yield "/" + path


API_ROUTES = sorted(set(_api_routes()))


def test_every_api_route_is_covered():
    assert "/api/v1/auth/token/" in API_ROUTES and len(API_ROUTES) > 20


@pytest.mark.parametrize("body", [DEEP_JSON, DEEP_OBJECT], ids=["array", "object"])
@pytest.mark.parametrize("method", ["post", "patch", "put"])
def test_deep_json_is_never_a_500_on_any_endpoint(admin_user, engineer, method, body):
    # given every API route, anonymous and as engineer and admin
    clients = [Client(), api_client_for(engineer), api_client_for(admin_user)]
    for path in API_ROUTES:
        for client in clients:
            # when deeply nested JSON is sent
            response = getattr(client, method)(path, body, content_type="application/json")
            # then it is refused (or not even parsed), never a server error
            assert response.status_code < 500, (path, method, response.content[:300])
            if response.status_code == 400:
                assert "INPUT_MAX_DEPTH" in response.json()["detail"], (path, response.content)


def test_deep_json_on_the_unauthenticated_token_endpoint_names_the_limit():
    response = Client().post(reverse("api-token"), DEEP_JSON, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "input_limit"
    assert "nested deeper than 64 levels (INPUT_MAX_DEPTH)" in response.json()["detail"]


def test_a_json_body_over_the_size_limit_is_refused_before_parsing(engineer, settings):
    settings.INPUT_MAX_JSON_BYTES = 1000
    body = json.dumps({"title": "x" * 2000})
    response = api_client_for(engineer).post(
        reverse("api-change-list"), body, content_type="application/json"
    )
    assert response.status_code == 400
    assert "INPUT_MAX_JSON_BYTES" in response.json()["detail"]


def test_json_within_limits_still_parses():
    assert limits.loads('{"a": [[1, 2], {"b": "[[[[[[["}]}') == {"a": [[1, 2], {"b": "[[[[[[["}]}
    assert not limits.json_depth_exceeds('"' + "[" * 1000 + '"', 64)  # brackets in a string


@pytest.mark.parametrize("text", [DEEP_YAML_FLOW, DEEP_YAML_BLOCK], ids=["flow", "block"])
def test_deep_yaml_suite_upload_is_400_naming_the_limit_fast(engineer, text):
    client = api_client_for(engineer)
    started = time.perf_counter()
    # when deep YAML is posted as a suite, raw and wrapped in JSON
    raw = client.post(reverse("api-suite-list"), text, content_type="application/yaml")
    wrapped = client.post(
        reverse("api-suite-list"), {"text": text, "format": "yaml"}, format="json"
    )
    # then both are 400s that name the limit, in well under the 9 s it cost
    for response in (raw, wrapped):
        assert response.status_code == 400, response.content[:300]
        assert "INPUT_MAX_DEPTH" in json.dumps(response.json())
    assert time.perf_counter() - started < 5.0


def test_deep_yaml_on_the_suite_upload_page_is_an_error_not_a_500(client, engineer):
    client.force_login(engineer)
    response = client.post(reverse("suite-upload"), {"text": DEEP_YAML_FLOW, "format": "yaml"})
    assert response.status_code in (200, 400)
    assert b"INPUT_MAX_DEPTH" in response.content


def test_a_valid_yaml_suite_still_uploads(engineer):
    text = suite_text()
    response = api_client_for(engineer).post(
        reverse("api-suite-list"), text, content_type="application/json"
    )
    assert response.status_code == 201, response.content[:500]


class CountingStream(io.RawIOBase):
    """A request body of ``size`` bytes that is produced (and counted) only when read."""

    def __init__(self, size: int):
        self.size, self.read_bytes = size, 0

    def readable(self):
        return True

    def read(self, n=-1):
        n = self.size - self.read_bytes if n is None or n < 0 else n
        n = min(n, self.size - self.read_bytes)
        self.read_bytes += n
        return b"a" * n

    def readline(self, *args):
        return self.read(64 * 1024)


@pytest.mark.parametrize("path_name", ["api-suite-list", "suite-upload", "api-token"])
def test_a_300mb_upload_is_refused_without_being_read(engineer, path_name):
    client = Client()
    client.force_login(engineer)
    stream = CountingStream(300 * 1024 * 1024)
    response = client.generic(
        "POST",
        reverse(path_name),
        b"x",
        content_type="multipart/form-data; boundary=BoUnDaRy",
        CONTENT_LENGTH=str(stream.size),
        **{"wsgi.input": stream},
    )
    assert response.status_code == 413
    assert "REQUEST_MAX_BYTES" in response.json()["detail"]
    assert stream.read_bytes == 0


def test_a_suite_file_over_2mb_is_refused_by_the_api_naming_the_size(engineer):
    upload = SimpleUploadedFile("big.yaml", b"a: " + b"x" * 2_100_000, "application/yaml")
    response = api_client_for(engineer).post(
        reverse("api-suite-list"), {"file": upload}, format="multipart"
    )
    assert response.status_code == 400
    assert "2000000 bytes" in response.json()["detail"]


def test_an_upload_stops_streaming_at_the_file_cap(engineer, settings):
    # given a cap smaller than the file, and no help from Content-Length
    settings.FILE_UPLOAD_MAX_BYTES = 1024 * 1024
    upload = SimpleUploadedFile("big.yaml", b"x" * (3 * 1024 * 1024), "application/yaml")
    response = api_client_for(engineer).post(
        reverse("api-suite-list"), {"file": upload}, format="multipart"
    )
    # then the file never arrives whole: a 400, not a 500 and not a stored suite
    assert response.status_code == 400, response.content[:300]


def test_deep_json_in_an_admin_form_is_a_form_error_not_a_500(client, admin_user, team_a):
    client.force_login(admin_user)
    response = client.post(
        "/admin/changes/aisystem/add/",
        {
            "name": "deep",
            "description": "",
            "owner_team": team_a.pk,
            "criticality": "low",
            "target": DEEP_JSON,
        },
    )
    assert response.status_code == 200
    assert b"INPUT_MAX_DEPTH" in response.content
