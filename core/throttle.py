"""Rate limits on every password check: the sign-off re-authentication, the login form and
the token endpoint. Why and how (and how to run behind a proxy): ``docs/rate-limits.md``.

Counters live in Django's cache (set ``CACHE_URL`` to Redis so all web processes share them).
Each counter is a pair of keys: the failure count and the time the window opened.
"""

from __future__ import annotations

import hashlib
import time

from django.conf import settings
from django.core.cache import cache
from rest_framework import status

from .errors import DomainError
from .request_context import current_request


class TooManyAttempts(DomainError):
    """429: too many password failures; ``retry_after`` is in whole seconds."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    code = "too_many_attempts"

    def __init__(self, detail: str, *, retry_after: int):
        super().__init__(detail)
        self.retry_after = max(1, int(retry_after))


def _setting(name: str, default: int) -> int:
    return int(getattr(settings, name, default))


def client_ip(request) -> str:
    """The client's address: ``REMOTE_ADDR``, or with ``TRUSTED_PROXY_COUNT`` = n > 0, the
    n-th address from the right of ``X-Forwarded-For`` (the one your outermost trusted proxy
    saw). Never the left-most entry: the client writes that one itself."""
    if request is None:
        return ""
    meta = getattr(request, "META", {})
    remote = meta.get("REMOTE_ADDR", "") or ""
    count = _setting("TRUSTED_PROXY_COUNT", 0)
    if count <= 0:
        return remote
    hops = [h.strip() for h in meta.get("HTTP_X_FORWARDED_FOR", "").split(",") if h.strip()]
    if len(hops) < count:
        return remote
    return hops[-count][:64]


def _key(scope: str, ident) -> str:
    digest = hashlib.sha256(str(ident).encode("utf-8", "surrogatepass")).hexdigest()[:40]
    return f"pcm:pw:{scope}:{digest}"


class Counter:
    """Failures of one scope (an account, a client) within a sliding-from-first window."""

    def __init__(self, scope: str, ident, *, limit: int, window: int):
        self.key = _key(scope, ident)
        self.limit = limit
        self.window = window

    def count(self) -> int:
        return int(cache.get(self.key + ":n") or 0)

    def opened(self) -> float:
        return float(cache.get(self.key + ":t") or time.time())

    def retry_after(self) -> int:
        return int(self.opened() + self.window - time.time()) + 1

    def blocked(self) -> bool:
        return self.count() >= self.limit

    def fail(self) -> int:
        cache.add(self.key + ":t", time.time(), self.window)
        cache.add(self.key + ":n", 0, self.window)
        try:
            return cache.incr(self.key + ":n")
        except ValueError:  # expired between add and incr
            cache.set(self.key + ":n", 1, self.window)
            return 1

    def reset(self) -> None:
        cache.delete_many([self.key + ":n", self.key + ":t"])


def _signoff_counters(user, ip: str) -> list[Counter]:
    window = _setting("PASSWORD_FAILURE_WINDOW_SECONDS", 900)
    return [
        Counter(
            "signoff-account", user.pk, limit=_setting("SIGNOFF_FAILURE_LIMIT", 5), window=window
        ),
        Counter("client", ip or "-", limit=_setting("CLIENT_FAILURE_LIMIT", 30), window=window),
    ]


def check_signoff_password(user, password: str, *, request=None) -> bool:
    """Re-authenticate a signer, rate-limited per account and per client.

    Once either limit is reached, every attempt (the right password too) is refused with 429
    until the window closes, without the password being checked: guessing stops, and only the
    signed-in account itself (or its client) can reach this limit, so nobody else can use it
    to lock a reviewer out. Returns whether the password matched.
    """
    request = request or current_request()
    counters = _signoff_counters(user, client_ip(request))
    blocked = [c for c in counters if c.blocked()]
    if blocked:
        wait = max(c.retry_after() for c in blocked)
        _remember_retry_after(request, wait)
        raise TooManyAttempts(
            f"Too many wrong passwords: signing is paused for {wait} s.", retry_after=wait
        )
    if password and user.check_password(password):
        counters[0].reset()
        return True
    for counter in counters:
        counter.fail()
    return False


# --- unauthenticated password checks (login form, token endpoint) ---------------------------


def _login_counters(username: str, ip: str) -> tuple[Counter, Counter]:
    window = _setting("PASSWORD_FAILURE_WINDOW_SECONDS", 900)
    account = Counter(
        "login-account", str(username).lower()[:150], limit=10**9, window=window
    )  # soft: delays only
    client = Counter("client", ip or "-", limit=_setting("CLIENT_FAILURE_LIMIT", 30), window=window)
    return account, client


def login_delay(username: str, request) -> int:
    """Seconds an unauthenticated attempt for ``username`` from this client must wait, or 0.

    Per client: a hard limit (a client only ever locks itself out). Per account: after
    ``LOGIN_SOFT_DELAY_AFTER`` failures from anywhere, a delay that doubles per failure up
    to ``LOGIN_SOFT_DELAY_MAX`` seconds, never a lockout, so a third party can slow guessing
    at an account but not keep its owner out.
    """
    account, client = _login_counters(username, client_ip(request))
    if client.blocked():
        return client.retry_after()
    failures = account.count()
    free = _setting("LOGIN_SOFT_DELAY_AFTER", 10)
    if failures < free:
        return 0
    delay = min(2 ** min(failures - free, 16), _setting("LOGIN_SOFT_DELAY_MAX", 30))
    last = float(cache.get(account.key + ":last") or 0)
    wait = int(last + delay - time.time()) + 1
    return max(0, wait) if last + delay > time.time() else 0


def delayed_by_throttle(request, credentials=None) -> bool:
    """``AXES_WHITELIST_CALLABLE``: an attempt refused by the soft delay (its password never
    checked) is not a failure for django-axes either, so an owner retrying during a delay a
    third party caused cannot lock their own username+address out."""
    target = getattr(request, "_request", request)
    return bool(getattr(target, "pcm_login_delayed", False))


def record_login_failure(username: str, request) -> None:
    account, client = _login_counters(username, client_ip(request))
    account.fail()
    client.fail()
    cache.set(account.key + ":last", time.time(), account.window)


def record_login_success(username: str, request) -> None:
    account, _ = _login_counters(username, client_ip(request))
    account.reset()
    cache.delete(account.key + ":last")


def _remember_retry_after(request, seconds: int) -> None:
    """Let ``RequestContextMiddleware`` put ``Retry-After`` on whatever 429 the view returns."""
    if request is not None:
        target = getattr(request, "_request", request)
        target.pcm_retry_after = seconds
