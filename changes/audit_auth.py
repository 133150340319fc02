"""Audit logins, logouts, failed logins and lockouts.

Signals are used here only for observation (Django and axes emit them); no workflow state
moves on a signal.
"""

from axes.signals import user_locked_out
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from . import audit


def _ip(request) -> str:
    return (request.META.get("REMOTE_ADDR", "") if request is not None else "") or ""


@receiver(user_logged_in, dispatch_uid="audit_login")
def _logged_in(sender, request, user, **kwargs):
    audit.append(actor=user, verb="auth.login", obj=user, data={"ip": _ip(request)})


@receiver(user_logged_out, dispatch_uid="audit_logout")
def _logged_out(sender, request, user, **kwargs):
    if user is not None:
        audit.append(actor=user, verb="auth.logout", obj=user, data={"ip": _ip(request)})


@receiver(user_login_failed, dispatch_uid="audit_login_failed")
def _login_failed(sender, credentials, request=None, **kwargs):
    audit.append(
        actor=None,
        verb="auth.login_failed",
        object_type="auth.user",
        data={"username": str(credentials.get("username", ""))[:150], "ip": _ip(request)},
    )


@receiver(user_locked_out, dispatch_uid="audit_locked_out")
def _locked_out(sender, request, username, ip_address, **kwargs):
    audit.append(
        actor=None,
        verb="auth.locked_out",
        object_type="auth.user",
        data={"username": str(username or "")[:150], "ip": ip_address or ""},
    )
