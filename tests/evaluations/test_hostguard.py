"""Host guard: SSRF bypass attempts are refused unless the operator allowed the host."""

from __future__ import annotations

import pytest

from evaluations.targets import TargetConfigError, build_target, validate_target_config
from evaluations.targets.hostguard import (
    HostGuardError,
    HostResolutionError,
    address_refusal,
    check_static,
    literal_ip,
    parse_retry_after,
    resolve_url,
)

PUBLIC = "93.184.216.34"

# What the fake DNS answers. Names not listed do not resolve.
DNS = {
    "example.com": [PUBLIC],
    "api.example.com": [PUBLIC, "2606:2800:220:1:248:1893:25c8:1946"],
    "localhost": ["127.0.0.1", "::1"],
    "sub.localhost": ["127.0.0.1"],
    "evil.example": ["10.0.0.5"],
    "rebind.example": [PUBLIC, "127.0.0.1"],  # one private answer among public ones
    "metadata.google.internal": ["169.254.169.254"],
    "v6private.example": ["fd12::1"],
    "mapped.example": ["::ffff:192.168.0.1"],
    "model.internal": ["10.0.0.7"],
    "scoped.example": ["fe80::1%eth0"],
}


def fake_resolver(host: str, port: int) -> list[str]:
    if host not in DNS:
        raise HostResolutionError(f"cannot resolve {host!r}")
    return DNS[host]


@pytest.fixture(autouse=True)
def no_real_dns(monkeypatch):
    """Every resolution in this module goes through the fake DNS."""
    monkeypatch.setattr("evaluations.targets.hostguard.system_resolver", fake_resolver)


BYPASSES = [
    # loopback in every spelling
    "http://127.0.0.1/",
    "http://127.0.0.1:8765/v1",
    "http://127.1/",
    "http://2130706433/",  # decimal
    "http://0x7f000001/",  # hex
    "http://0x7f.0x0.0x0.0x1/",  # dotted hex
    "http://0177.0.0.1/",  # octal
    "http://017700000001/",  # octal, one number
    "http://0x7f.1/",
    "http://127.000.000.001/",
    "http://[::1]/",
    "http://[0:0:0:0:0:0:0:1]/",
    "http://[::ffff:127.0.0.1]/",  # IPv4-mapped
    "http://[::ffff:7f00:1]/",
    "http://[::127.0.0.1]/",  # IPv4-compatible
    "http://[64:ff9b::127.0.0.1]/",  # NAT64
    "http://[2002:7f00:1::]/",  # 6to4
    "http://localhost/",
    "http://LOCALHOST./",
    "http://sub.localhost/",
    # unspecified
    "http://0.0.0.0/",
    "http://0/",
    "http://[::]/",
    # cloud metadata
    "http://169.254.169.254/latest/meta-data/",
    "http://[::ffff:169.254.169.254]/",
    "http://[::ffff:a9fe:a9fe]/",
    "http://[fd00:ec2::254]/",
    "http://100.100.100.200/",
    "http://metadata.google.internal/computeMetadata/v1/",
    # private, link-local, CGNAT, multicast, reserved, documentation
    "http://10.0.0.1/",
    "http://172.16.5.4/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://169.254.10.10/",
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "http://224.0.0.1/",
    "http://[ff02::1]/",
    "http://240.0.0.1/",
    "http://255.255.255.255/",
    "http://192.0.2.1/",
    "http://198.18.0.1/",
    # names that resolve to private addresses
    "http://evil.example/",
    "https://rebind.example/",
    "http://v6private.example/",
    "http://mapped.example/",
    "http://scoped.example/",
    # schemes
    "file:///etc/passwd",
    "gopher://127.0.0.1:6379/_INFO",
    "ftp://example.com/",
    "dict://127.0.0.1:11211/",
    "javascript:alert(1)",
    "//example.com/",
    # userinfo and parser confusion
    "http://good.com@127.0.0.1/",
    "http://good.com:80@127.0.0.1/",
    "http://user:pass@example.com/",
    "http://127.0.0.1#@good.com/",
    "http://127.0.0.1\\@good.com/",
    "http://127.0.0.1%2509/",
    "http://%31%32%37.0.0.1/",
    "http://[fe80::1%25eth0]/",
    "http://exa mple.com/",
    "http://example.com\n.evil/",
    "http:/127.0.0.1/",
    "http://example.com:99999/",
    "",
]


@pytest.mark.parametrize("url", BYPASSES)
def test_bypass_attempts_are_refused(url):
    with pytest.raises(HostGuardError):
        resolve_url(url, allowed_hosts=[])


@pytest.mark.parametrize("url", BYPASSES)
def test_bypass_attempts_are_refused_by_targets_too(url):
    """Whatever the path (static check at build time, or resolution at first call),
    an openai target never gets to talk to these hosts."""
    import asyncio

    from evaluations.targets import TargetError

    config = {"kind": "openai", "base_url": url, "model": "m", "max_retries": 0}
    try:
        target = build_target(config, allowed_hosts=[])
    except TargetConfigError:
        return
    with pytest.raises(TargetError, match="refused|cannot resolve"):
        asyncio.run(target.complete([{"role": "user", "content": "hi"}], seed=1))


@pytest.mark.parametrize(
    ("url", "allowed", "ip"),
    [
        ("http://127.0.0.1:8765/v1", ["127.0.0.1"], "127.0.0.1"),
        ("http://2130706433/", ["127.0.0.1"], "127.0.0.1"),
        ("http://localhost:8000/", ["localhost"], "127.0.0.1"),
        ("http://LOCALHOST./", ["localhost"], "127.0.0.1"),
        ("http://[::1]:9000/", ["::1"], "::1"),
        ("http://[::1]/", ["[::1]"], "::1"),
        ("http://[::ffff:127.0.0.1]/", ["127.0.0.1"], "::ffff:7f00:1"),
        ("http://10.1.2.3/", ["10.0.0.0/8"], "10.1.2.3"),
        ("http://model.internal/v1", ["model.internal"], "10.0.0.7"),
        ("http://model.internal/v1", ["10.0.0.7"], "10.0.0.7"),
        ("http://169.254.169.254/", ["169.254.169.254"], "169.254.169.254"),
        ("http://127.0.0.1:8765/", ["127.0.0.1:8765"], "127.0.0.1"),
    ],
)
def test_allow_list_admits_listed_hosts(url, allowed, ip):
    resolved = resolve_url(url, allowed_hosts=allowed)

    assert resolved.ip == ip


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://169.254.169.254/", ["169.254.0.0/16"]),  # metadata needs its exact IP
        ("http://metadata.google.internal/", ["metadata.google.internal"]),
        ("http://127.0.0.2/", ["127.0.0.1"]),
        ("http://10.0.0.5/", ["10.0.0.7", "model.internal"]),
        ("http://evil.example/", ["model.internal"]),
        ("gopher://127.0.0.1/", ["127.0.0.1"]),  # schemes are never allowed
        ("http://x@127.0.0.1/", ["127.0.0.1"]),
    ],
)
def test_allow_list_is_exact(url, allowed):
    with pytest.raises(HostGuardError):
        resolve_url(url, allowed_hosts=allowed)


def test_public_hosts_are_pinned_with_original_host_header():
    resolved = resolve_url("https://api.example.com:8443/v1/chat?x=1", allowed_hosts=[])

    assert resolved.ip == PUBLIC
    assert resolved.host == "api.example.com"
    assert resolved.host_header == "api.example.com:8443"
    assert str(resolved.connect_url) == f"https://{PUBLIC}:8443/v1/chat?x=1"
    assert resolved.is_ip_literal is False
    assert resolve_url("http://example.com/", []).host_header == "example.com"


def test_unresolvable_names_are_a_resolution_error():
    with pytest.raises(HostResolutionError):
        resolve_url("http://does-not-exist.example/", [])


def test_resolver_is_called_once_per_resolution(monkeypatch):
    calls = []

    def counting(host, port):
        calls.append((host, port))
        return [PUBLIC]

    resolve_url("https://example.com/", [], resolver=counting)

    assert calls == [("example.com", 443)]


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("10.1", "10.0.0.1"),
        ("::1", "::1"),
        ("example.com", None),
        ("cafe.be", None),  # hex-looking letters are still a name
        ("1e100.net", None),
    ],
)
def test_literal_ip_reads_inet_aton_forms(host, expected):
    ip = literal_ip(host)

    assert (str(ip) if ip else None) == expected


def test_ambiguous_numeric_hosts_are_refused():
    with pytest.raises(HostGuardError, match="ambiguous numeric host"):
        literal_ip("1.2.3.4.5")


@pytest.mark.parametrize(
    ("address", "word"),
    [
        ("127.0.0.1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("169.254.169.254", "metadata"),
        ("10.0.0.1", "private"),
        ("224.0.0.1", "multicast"),
        ("::ffff:10.0.0.1", "embedded"),
        ("100.64.0.1", "not a globally routable"),
    ],
)
def test_refusal_reasons_are_in_words(address, word):
    import ipaddress

    assert word in address_refusal(ipaddress.ip_address(address))
    assert address_refusal(ipaddress.ip_address(PUBLIC)) is None


def test_static_check_needs_no_dns_and_explains_how_to_allow():
    with pytest.raises(HostGuardError, match="EVAL_ALLOWED_HOSTS"):
        check_static("http://127.0.0.1:8765/v1", [])
    with pytest.raises(HostGuardError, match="EVAL_ALLOWED_HOSTS"):
        check_static("http://localhost:8765/v1", [])
    check_static("http://127.0.0.1:8765/v1", ["127.0.0.1"])
    check_static("https://does-not-exist.example/v1", [])  # names wait for call time


def test_validate_target_config_checks_literal_hosts_only_when_given_the_allow_list():
    config = {"kind": "openai", "base_url": "http://127.0.0.1:1/v1", "model": "m"}

    assert validate_target_config(config)["base_url"] == "http://127.0.0.1:1/v1"
    with pytest.raises(TargetConfigError, match="loopback"):
        validate_target_config(config, allowed_hosts=[])
    with pytest.raises(TargetConfigError, match="scheme 'file'"):
        validate_target_config({**config, "base_url": "file:///etc/passwd"})


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("3", 3.0), ("0.25", 0.25), ("-4", 0.0), (None, None), ("soon", None)],
)
def test_parse_retry_after(value, seconds):
    assert parse_retry_after(value) == seconds


def test_parse_retry_after_http_date():
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0


def test_a_target_keeps_no_cookies_between_samples():
    """A model server's Set-Cookie must not tie one sample to the next (and the worker skips
    the cookie jar's cost); the resolved URL is cached per target URL."""
    import asyncio

    from tests.evaluations.openai_stub import OpenAIStub

    with OpenAIStub(reply="ok") as stub:
        stub.push({"status": 200, "headers": {"Set-Cookie": "session=abc; Path=/"}})
        config = {"kind": "openai", "base_url": stub.url, "model": "m", "max_retries": 0}
        target = build_target(config, allowed_hosts=["127.0.0.1"])

        async def two() -> None:
            try:
                for seed in (1, 2):
                    await target.complete([{"role": "user", "content": "hi"}], seed=seed)
            finally:
                await target.aclose()

        asyncio.run(two())

    assert len(stub.requests) == 2
    assert "Cookie" not in stub.requests[1]["headers"]
    assert "cookie" not in {k.lower() for k in stub.requests[1]["headers"]}
