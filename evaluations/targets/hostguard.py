"""Host guard: evaluation targets may only reach hosts an operator allowed.

Design notes: docs/ENGINE_NOTES.md, section ``evaluations.targets.hostguard``.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import ipaddress
import json
import re
import socket
import time
from dataclasses import dataclass, replace
from typing import Any

import httpx

from .base import TargetError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean
        "169.254.170.2",  # AWS ECS task metadata
        "fd00:ec2::254",  # AWS IPv6
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud (legacy)
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NUMERIC_LABEL = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)$")
_HOSTNAME = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,62})(?:\.[a-z0-9_](?:[a-z0-9_-]{0,62}))*$")
_FORBIDDEN_URL_CHARS = re.compile(r"[\s\\\x00-\x1f\x7f]")


class HostGuardError(ValueError):
    """A URL or host the guard refuses. The message says which rule and how to allow it."""


class HostResolutionError(HostGuardError):
    """DNS gave no answer; may succeed later (so it is retried as a transient error)."""


@dataclass(frozen=True)
class ResolvedURL:
    """A checked URL and the address to connect to."""

    url: httpx.URL
    host: str  # the name (or literal) from the URL, lowercase, without brackets
    port: int
    ip: str  # the pinned address
    connect_url: httpx.URL  # ``url`` with the host replaced by ``ip``
    host_header: str
    is_ip_literal: bool


# ------------------------------------------------------------------------------ parsing


def display_url(url: str | httpx.URL) -> str:
    """``scheme://host[:port]/path`` without userinfo, query or fragment (which may hold
    secrets), for messages and ``describe()``."""
    try:
        u = httpx.URL(str(url))
    except (httpx.InvalidURL, TypeError):
        return "<invalid URL>"
    host = u.host if ":" not in u.host else f"[{u.host}]"
    port = f":{u.port}" if u.port else ""
    return f"{u.scheme}://{host}{port}{u.path}"


def check_url(url: Any) -> httpx.URL:
    """Static checks that need no DNS: scheme, userinfo, host syntax, port."""
    if not isinstance(url, str) or not url:
        raise HostGuardError("the URL must be a non-empty string")
    if _FORBIDDEN_URL_CHARS.search(url):
        raise HostGuardError("the URL contains blanks, backslashes or control characters")
    try:
        u = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise HostGuardError(f"invalid URL: {exc}")
    if u.scheme not in ("http", "https"):
        raise HostGuardError(f"scheme {u.scheme or '(none)'!r} is not allowed: use http or https")
    if u.userinfo:
        raise HostGuardError(
            "credentials in the URL (user@host) are not allowed: reference a secret an admin "
            "registered (api_key_secret / headers_secret)"
        )
    if not u.raw_host:
        raise HostGuardError("the URL has no host")
    if u.port is not None and not 1 <= u.port <= 65535:
        raise HostGuardError(f"port {u.port} is out of range")
    _host_of(u)  # syntax
    return u


def _host_of(u: httpx.URL) -> str:
    host = u.raw_host.decode("ascii").lower().rstrip(".")
    if ":" in host:  # an IPv6 literal (httpx strips the brackets)
        if "%" in host:
            raise HostGuardError("IPv6 zone identifiers are not allowed in target URLs")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise HostGuardError(f"invalid IPv6 address {host!r}")
        return host
    if not _HOSTNAME.match(host):
        raise HostGuardError(f"invalid host name {host!r}")
    return host


def literal_ip(host: str) -> IPAddress | None:
    """The address a numeric host denotes (inet_aton rules for IPv4), else None."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    labels = host.split(".")
    if labels and all(_NUMERIC_LABEL.match(label) for label in labels):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            raise HostGuardError(f"ambiguous numeric host {host!r}: write a dotted IPv4 address")
    return None


# -------------------------------------------------------------------------- addresses


def _embedded_v4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    if ip.version != 6:
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64 or int(ip) >> 32 == 0:  # NAT64 or IPv4-compatible (::a.b.c.d)
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_refusal(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public address (None when it is)."""
    inner = _embedded_v4(ip)
    if inner is not None and int(inner) > 1:
        reason = address_refusal(inner)
        if reason:
            return f"{reason} (as {inner}, embedded in {ip})"
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    for attr, word in (
        ("is_unspecified", "unspecified"),
        ("is_loopback", "loopback"),
        ("is_link_local", "link-local"),
        ("is_multicast", "multicast"),
        ("is_private", "private"),
        ("is_reserved", "reserved"),
        ("is_site_local", "site-local"),
    ):
        if getattr(ip, attr, False):
            return f"a {word} address"
    if not ip.is_global:
        return "not a globally routable address"
    return None


@dataclass(frozen=True)
class AllowList:
    """Parsed ``EVAL_ALLOWED_HOSTS``."""

    names: frozenset[str]
    ips: frozenset
    networks: tuple

    @classmethod
    def parse(cls, entries: list[str] | tuple | None) -> AllowList:
        names, ips, networks = set(), set(), []
        for raw in entries or ():
            entry = str(raw).strip().lower().rstrip(".")
            if not entry:
                continue
            entry = _strip_port(entry)
            try:
                if "/" in entry:
                    networks.append(ipaddress.ip_network(entry, strict=False))
                else:
                    ips.add(ipaddress.ip_address(entry))
            except ValueError:
                names.add(entry)
        return cls(frozenset(names), frozenset(ips), tuple(networks))

    def allows_ip(self, ip: IPAddress) -> bool:
        candidates = [ip] + ([_embedded_v4(ip)] if _embedded_v4(ip) else [])
        for c in candidates:
            if c in self.ips:
                return True
            if c not in METADATA_ADDRESSES and any(c in n for n in self.networks):
                return True
        return False


def _strip_port(entry: str) -> str:
    if entry.startswith("["):
        return entry[1:].split("]", 1)[0]
    if entry.count(":") == 1:
        return entry.split(":", 1)[0]
    return entry


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (patched in tests)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise HostResolutionError(f"cannot resolve {host!r}: {exc}")
    return list(dict.fromkeys(info[4][0] for info in infos))


def _check_address(ip: IPAddress, host: str, allow: AllowList, by_name: bool) -> None:
    reason = address_refusal(ip)
    if reason is None or allow.allows_ip(ip):
        return
    if by_name and ip not in METADATA_ADDRESSES:
        return
    shown = host if host == str(ip) else f"{host} ({ip})"
    raise HostGuardError(
        f"host {shown} is {reason}; add it to EVAL_ALLOWED_HOSTS to allow it "
        "(for example a model server on your own machine)"
    )


def check_static(url: str, allowed_hosts: list[str] | None) -> httpx.URL:
    """The checks that need no DNS, for saving a config: URL syntax, and literal IPs and
    ``localhost`` names against the allow-list."""
    u = check_url(url)
    allow = AllowList.parse(allowed_hosts)
    host = _host_of(u)
    ip = literal_ip(host)
    if ip is not None:
        _check_address(ip, host, allow, by_name=host in allow.names)
    elif (host == "localhost" or host.endswith(".localhost")) and host not in allow.names:
        raise HostGuardError(
            f"host {host} is a loopback name; add it to EVAL_ALLOWED_HOSTS to allow it"
        )
    return u


def resolve_url(url: str, allowed_hosts: list[str] | None, *, resolver=None) -> ResolvedURL:
    """Check ``url``, resolve its host once, and return the address to connect to.

    Every resolved address must pass (one private answer among public ones is refused).
    """
    u = check_url(url)
    allow = AllowList.parse(allowed_hosts)
    host = _host_of(u)
    port = u.port or (443 if u.scheme == "https" else 80)
    by_name = host in allow.names
    ip = literal_ip(host)
    if ip is not None:
        addresses = [ip]
    else:
        resolve = resolver or system_resolver
        addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in resolve(host, port)]
        if not addresses:
            raise HostResolutionError(f"{host!r} resolved to no address")
    for address in addresses:
        _check_address(address, host, allow, by_name)
    pinned = addresses[0]
    default_port = u.port is None or u.port == (443 if u.scheme == "https" else 80)
    shown_host = f"[{host}]" if ":" in host else host
    return ResolvedURL(
        url=u,
        host=host,
        port=port,
        ip=str(pinned),
        connect_url=u.copy_with(host=str(pinned), port=port),
        host_header=shown_host if default_port else f"{shown_host}:{port}",
        is_ip_literal=ip is not None,
    )


# ------------------------------------------------------------------------ HTTP client


@dataclass
class HTTPResult:
    status: int
    headers: httpx.Headers
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except (ValueError, RecursionError):
            raise TargetError(
                f"malformed response: not JSON ({len(self.body)} bytes)", status=self.status
            )


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date (None when absent/unreadable)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def status_error(result: HTTPResult, *, secrets: tuple[str, ...] = ()) -> TargetError | None:
    """The error for a non-2xx status: 429 and 5xx are transient, other 4xx are not."""
    status = result.status
    if 200 <= status < 300:
        return None
    # Redact over the whole body first, then cut: a secret echoed across the cut must not
    # survive in part.
    text = result.body.decode("utf-8", "replace")
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    snippet = text[:200].strip()
    detail = f": {snippet}" if snippet else ""
    if status == 429 or 500 <= status < 600:
        return TargetError(
            f"HTTP {status}{detail}",
            transient=True,
            status=status,
            retry_after=parse_retry_after(result.headers.get("retry-after")),
        )
    return TargetError(f"HTTP {status}{detail}", transient=False, status=status)


class _NoCookies(httpx.Cookies):
    """A target keeps no cookies: one sample must not carry state to the next (a model
    server's session cookie could tie a monitored sample to an unmonitored one). Skipping
    the cookie jar also saved ~4% of the worker's CPU per sample."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class GuardedClient:
    """An httpx client that only talks to pinned, allowed addresses."""

    def __init__(
        self,
        *,
        allowed_hosts: list[str] | None,
        max_response_bytes: int = 1_000_000,
        max_connections: int = 8,
        verify: bool = True,
        resolver=None,
    ):
        self.allowed_hosts = list(allowed_hosts or [])
        self.max_response_bytes = max_response_bytes
        self.max_connections = max(1, max_connections)
        self.verify = verify
        self.resolver = resolver
        self._resolved: dict[str, ResolvedURL] = {}
        # Per full URL: parsing it and rebuilding the pinned URL cost about a tenth of the
        # worker's CPU per sample (bench/bench_eval_throughput.py); a target posts to one URL.
        self._by_url: dict[str, ResolvedURL] = {}
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._lock: asyncio.Lock | None = None

    def _bind_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            # httpx clients and asyncio locks belong to the loop they were made in; the sync
            # wrappers run a new loop per batch, so stale ones are dropped, not reused.
            limits = httpx.Limits(
                max_connections=self.max_connections,
                max_keepalive_connections=self.max_connections,
            )
            self._client = httpx.AsyncClient(
                follow_redirects=False, trust_env=False, limits=limits, verify=self.verify
            )
            self._client._cookies = _NoCookies()  # the public setter would wrap it again
            self._client_loop = loop
            self._lock = asyncio.Lock()

    async def _resolve(self, url: str) -> ResolvedURL:
        cached = self._by_url.get(url)
        if cached is not None:
            return cached
        u = httpx.URL(url)
        origin = f"{u.scheme}://{u.netloc.decode('ascii')}"
        async with self._lock:  # concurrent first calls share one resolution
            if origin not in self._resolved:
                self._resolved[origin] = await self._resolve_now(url)
        pinned = self._resolved[origin]
        out = replace(pinned, url=u, connect_url=u.copy_with(host=pinned.ip, port=pinned.port))
        if len(self._by_url) >= 64:
            self._by_url.clear()
        self._by_url[url] = out
        return out

    async def _resolve_now(self, url: str) -> ResolvedURL:
        try:
            return await asyncio.to_thread(
                resolve_url, url, self.allowed_hosts, resolver=self.resolver
            )
        except HostResolutionError as exc:
            raise TargetError(str(exc), transient=True)
        except HostGuardError as exc:
            raise TargetError(f"refused: {exc}", transient=False)

    async def post_json(
        self, url: str, payload: Any, *, headers: dict[str, str], timeout: float
    ) -> HTTPResult:
        """POST ``payload`` as JSON; raise :class:`TargetError` for transport problems,
        redirects and oversized bodies. Non-2xx statuses are returned, not raised."""
        self._bind_loop()
        resolved = await self._resolve(url)
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        all_headers = {
            **headers,
            "Host": resolved.host_header,
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        extensions = {}
        if resolved.url.scheme == "https" and not resolved.is_ip_literal:
            extensions["sni_hostname"] = resolved.host
        client = self._client
        request = client.build_request(
            "POST",
            resolved.connect_url,
            content=body,
            headers=all_headers,
            extensions=extensions,
            timeout=httpx.Timeout(timeout),
        )
        try:
            async with asyncio.timeout(timeout):
                return await self._send(client, request)
        except TimeoutError:
            raise TargetError(f"timed out after {timeout:g}s", transient=True)
        except httpx.TimeoutException:
            raise TargetError(f"timed out after {timeout:g}s", transient=True)
        except httpx.TransportError as exc:
            raise TargetError(
                f"connection to {resolved.host_header} failed: {type(exc).__name__}",
                transient=True,
            )

    async def _send(self, client: httpx.AsyncClient, request: httpx.Request) -> HTTPResult:
        response = await client.send(request, stream=True)
        try:
            if 300 <= response.status_code < 400:
                raise TargetError(
                    f"HTTP {response.status_code}: redirects are not followed "
                    "(point the target at the final URL)",
                    status=response.status_code,
                )
            declared = response.headers.get("content-length")
            # ASCII digits only: "²".isdigit() is true, but int() refuses it.
            if re.fullmatch(r"[0-9]{1,20}", declared or "") and (
                int(declared) > self.max_response_bytes
            ):
                raise self._too_large()
            chunks, size = [], 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > self.max_response_bytes:
                    raise self._too_large()
                chunks.append(chunk)
            return HTTPResult(response.status_code, response.headers, b"".join(chunks))
        finally:
            await response.aclose()

    def _too_large(self) -> TargetError:
        return TargetError(f"response larger than {self.max_response_bytes} bytes: refused")

    async def aclose(self) -> None:
        client, self._client, self._client_loop = self._client, None, None
        if client is not None:
            with contextlib.suppress(RuntimeError):  # its loop is gone: nothing to release
                await client.aclose()
