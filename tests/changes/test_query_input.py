"""Hostile query strings: odd ids, NUL characters and unicode digits are a 400 or 404 with a
reason, never a 500. Run against PostgreSQL too (``DATABASE_URL``): it refuses a NUL in a
text parameter, which is where such inputs used to turn into server errors."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from changes.models import ChangeRequest
from core.ids import MAX_ID, parse_id
from tests.changes.test_api_support import pin_null_ports, url
from tests.factories import ProtocolFactory, SystemFactory

pytestmark = pytest.mark.django_db

HUGE = "9" * 5000  # past int()'s 4,300-digit conversion limit
SUPERSCRIPT_TWO = "\u00b2"  # str.isdigit() says yes, int() says no


@pytest.fixture(autouse=True)
def _null_ports(monkeypatch):
    pin_null_ports(monkeypatch)


@pytest.fixture
def versions(team_a):
    system = SystemFactory(owner_team=team_a)
    v1 = ProtocolFactory(system=system, version="v1", system_prompt="Be helpful.\nQuote freely.")
    v2 = ProtocolFactory(system=system, version="v2", system_prompt="Be helpful.\nRedact PII.")
    return system, v1, v2


# ------------------------------------------------------------------------------ parse_id


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", 1),
        ("0042", 42),
        (str(MAX_ID), MAX_ID),
        (7, 7),
        (str(MAX_ID + 1), None),
        ("0", None),
        ("-1", None),
        (" 1", None),
        ("1.0", None),
        ("1_000", None),
        (SUPERSCRIPT_TWO, None),
        ("\u0661", None),  # ARABIC-INDIC DIGIT ONE: a digit, not an id
        (HUGE, None),
        ("\x00", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_id_accepts_only_ascii_ids_in_range(value, expected):
    assert parse_id(value) == expected


# ------------------------------------------------------------------- the diff API endpoint


@pytest.mark.parametrize(
    ("query", "status", "reason"),
    [
        ("", 400, "from: This field is required."),
        ("from=%00&to=%00", 400, "from: A valid integer is required."),
        ("from=1%00&to=2", 400, "from: A valid integer is required."),
        (f"from={SUPERSCRIPT_TWO}&to=1", 400, "from: A valid integer is required."),
        (f"from={HUGE}&to=1", 400, "from: String value too large."),
        (f"from={2**63}&to=1", 400, "from: Ensure this value is less than or equal to"),
        ("from=-1&to=1", 400, "from: Ensure this value is greater than or equal to 1."),
        ("from=0x1&to=1", 400, "from: A valid integer is required."),
        (f"from={MAX_ID}&to={MAX_ID}", 404, "No such protocol version of"),
    ],
)
def test_diff_with_bad_query_is_a_400_or_404_with_a_reason(
    api, reviewer, versions, query, status, reason
):
    system, _, _ = versions

    response = api(reviewer).get(url("protocol-diff", system_pk=system.pk) + "?" + query)

    assert response.status_code == status, response.content
    assert response.json()["detail"].startswith(reason)


def test_diff_of_a_version_with_itself_is_empty(api, reviewer, versions):
    system, v1, _ = versions

    response = api(reviewer).get(
        url("protocol-diff", system_pk=system.pk), {"from": v1.pk, "to": v1.pk}
    )

    assert response.status_code == 200
    assert response.json()["diff"] == ""


@pytest.mark.parametrize("system_pk", ["0", str(2**63), str(2**64 + 7), HUGE])
def test_diff_of_an_unknown_system_is_404(api, reviewer, versions, system_pk):
    _, v1, v2 = versions

    response = api(reviewer).get(
        f"/api/v1/systems/{system_pk}/protocols/diff/", {"from": v1.pk, "to": v2.pk}
    )

    assert response.status_code == 404


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    params=st.dictionaries(
        st.sampled_from(["from", "to", "format", "page", "x"]),
        st.one_of(
            st.text(max_size=30),
            st.integers(min_value=-(2**70), max_value=2**70).map(str),
        ),
    )
)
def test_diff_never_answers_a_server_error(api, reviewer, versions, params):
    system, _, _ = versions

    response = api(reviewer).get(url("protocol-diff", system_pk=system.pk), params)

    assert response.status_code in (200, 400, 404), (params, response.content)


# ------------------------------------------------------------- the HTML compare page and form


@pytest.mark.parametrize(
    "query",
    [f"from={SUPERSCRIPT_TWO}", f"from={HUGE}", "from=%00", f"to={2**64}", "from=1_0"],
)
def test_compare_page_with_a_bad_version_id_is_404(client, reviewer, versions, query):
    # Before: "²" and a 5,000-digit id passed str.isdigit() and crashed int() -> 500.
    system, _, _ = versions
    client.force_login(reviewer)

    response = client.get(f"/systems/{system.pk}/protocols/compare/?{query}")

    assert response.status_code == 404


def test_compare_page_still_compares_two_versions(client, reviewer, versions):
    system, v1, v2 = versions
    client.force_login(reviewer)

    response = client.get(f"/systems/{system.pk}/protocols/compare/?from={v1.pk}&to={v2.pk}")

    assert response.status_code == 200
    assert b"Redact PII." in response.content


@pytest.mark.parametrize("value", [SUPERSCRIPT_TWO, HUGE, "%00", str(2**64)])
def test_protocol_options_and_new_change_ignore_a_bad_system_id(client, engineer, value):
    client.force_login(engineer)

    options = client.get(f"/changes/protocol-options/?system={value}")
    new = client.get(f"/changes/new/?system={value}")

    assert options.status_code == 200
    assert new.status_code == 200


def test_new_change_still_preselects_a_valid_system(client, engineer, versions):
    system, v1, v2 = versions
    client.force_login(engineer)

    response = client.get(f"/changes/new/?system={system.pk}")

    assert response.status_code == 200
    assert response.context["form"].initial == {
        "system": system.pk,
        "base_protocol": v1.pk,
        "proposed_protocol": v2.pk,
    }


@pytest.mark.parametrize("q", [f"CR-{SUPERSCRIPT_TWO}", HUGE, f"CR-{HUGE}", str(2**64), "%00"])
def test_change_list_search_with_odd_numbers_is_not_a_500(client, engineer, q):
    client.force_login(engineer)

    response = client.get(f"/changes/?q={q}")

    assert response.status_code == 200


# -------------------------------------------------------------- NUL characters in filters


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("/api/v1/changes/", "search"),
        ("/api/v1/changes/", "author"),
        ("/api/v1/changes/", "state"),
        ("/api/v1/changes/", "ordering"),
        ("/api/v1/changes/", "system"),
        ("/api/v1/suites/", "name"),
        ("/api/v1/suites/", "version"),
        ("/api/v1/suites/", "q"),
        ("/api/v1/audit/events/", "actor"),
        ("/api/v1/audit/events/", "verb"),
        ("/api/v1/attestations/", "system"),
    ],
)
def test_a_nul_in_an_api_filter_is_a_400_naming_it(api, auditor, path, param):
    # DRF's and Django's form CharFields refuse NUL, so it never reaches PostgreSQL.
    response = api(auditor).get(f"{path}?{param}=a%00b")

    assert response.status_code == 400, response.content
    assert response.json()["detail"].startswith(f"{param}: ")


@pytest.mark.parametrize(
    "path",
    [
        "/admin/changes/aisystem/?name=%00",
        "/admin/changes/aisystem/?criticality__exact=%00",
        "/admin/changes/changerequest/?title=a%00",
        "/admin/evaluations/suite/?name=%00",
        "/admin/attestations/attestation/?status__exact=%00",
        # Admins registered by other apps get the same guard (changes.admin).
        "/admin/auth/user/?username=%00",
        "/admin/auth/group/?name=a%00",
        "/admin/changes/apitoken/?revoked_at__isnull=%00",
        "/admin/axes/accessattempt/?username=%00",
        "/admin/axes/accesslog/?username=%00",
    ],
)
def test_a_nul_in_an_admin_list_filter_is_refused_not_a_500(client, admin_user, versions, path):
    # Before: the admin applied ?field=value as a lookup and PostgreSQL raised on the NUL.
    client.force_login(admin_user)

    response = client.get(path)

    assert response.status_code == 302
    assert response["Location"].endswith("?e=1")


def test_admin_list_filters_still_filter(client, admin_user, versions):
    system, _, _ = versions
    client.force_login(admin_user)

    response = client.get(f"/admin/changes/aisystem/?name={system.name}")

    assert response.status_code == 200
    assert system.name.encode() in response.content
    assert ChangeRequest.objects.count() == 0  # nothing was written by looking


def test_other_apps_admins_still_list_and_filter(client, admin_user, engineer):
    client.force_login(admin_user)

    users = client.get("/admin/auth/user/?username=engineer")
    tokens = client.get("/admin/changes/apitoken/")

    assert users.status_code == 200 and b"engineer" in users.content
    assert tokens.status_code == 200
