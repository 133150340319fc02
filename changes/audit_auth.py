"""Audit logins, logouts, failed logins and lockouts.

Signals are used here only for observation (Django and axes emit them); no workflow state
moves on a signal.
"""

from axes.signals import user_locked_out
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.core.cache import cache
from django.dispatch import receiver

from core import throttle

from . import audit

_PENDING = "pcm:auth:failures:pending"
_SUMMARY_LOCK = "pcm:auth:failures:summary"


def _ip(request) -> str:
    return throttle.client_ip(request)


@receiver(user_logged_in, dispatch_uid="audit_login")
def _logged_in(sender, request, user, **kwargs):
    audit.append(actor=user, verb="auth.login", obj=user, data={"ip": _ip(request)})


@receiver(user_logged_out, dispatch_uid="audit_logout")
def _logged_out(sender, request, user, **kwargs):
    if user is not None:
        audit.append(actor=user, verb="auth.logout", obj=user, data={"ip": _ip(request)})


@receiver(user_login_failed, dispatch_uid="audit_login_failed")
def _login_failed(sender, credentials, request=None, **kwargs):
    """Count a failed login; chain at most one summary event per interval.

    Chaining every anonymous failure let anyone grow the audit log by one hash-chained row per
    request (300 requests, 300 events). The per-username and per-address counts are kept by
    django-axes (``AccessAttempt``) and the throttle; the chain gets ``auth.login_failures``
    with how many failures happened since the previous summary.
    """
    username = str(credentials.get("username", ""))[:150]
    target = getattr(request, "_request", request)
    if not getattr(target, "pcm_login_delayed", False):
        throttle.record_login_failure(username, request)
    try:
        pending = cache.incr(_PENDING)
    except ValueError:
        cache.set(_PENDING, 1, None)
        pending = 1
    interval = int(getattr(settings, "AUTH_FAILURE_SUMMARY_SECONDS", 60))
    if not cache.add(_SUMMARY_LOCK, 1, interval):
        return
    cache.set(_PENDING, 0, None)
    audit.append(
        actor=None,
        verb="auth.login_failures",
        object_type="auth.user",
        data={
            "count": pending,
            "interval_seconds": interval,
            "last_username": username,
            "last_ip": throttle.client_ip(request),
        },
    )


@receiver(user_locked_out, dispatch_uid="audit_locked_out")
def _locked_out(sender, request, username, ip_address, **kwargs):
    """Chain a lockout of an existing account once per cool-off; other lockouts (probes for
    names that do not exist) are only counted, like failures."""
    name = str(username or "")[:150]
    if not get_user_model().objects.filter(username=name).exists():
        return
    cooloff = int(settings.AXES_COOLOFF_TIME.total_seconds())
    if not cache.add(f"pcm:auth:locked:{throttle.client_ip(request)}:{name}", 1, cooloff):
        return
    audit.append(
        actor=None,
        verb="auth.locked_out",
        object_type="auth.user",
        data={"username": name, "ip": ip_address or ""},
    )
