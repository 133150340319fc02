"""The request being served, for code that runs without one passed in.

Signal handlers (the role and team audit in ``changes.audit_roles``) and the signing
password throttle (``core.throttle``) are called by Django or by services, never with the
request; this middleware keeps it in a context variable for them. App-agnostic, hence core.
"""

from __future__ import annotations

from contextvars import ContextVar

_actor: ContextVar = ContextVar("pcm_audit_actor", default=None)


class ActorMiddleware:
    """Remember the request being served, for signal handlers and the password throttle.

    Also puts ``Retry-After`` on a 429 when the throttle said how long to wait, whichever view
    (API or page) rendered it.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        token = _actor.set(request)
        try:
            response = self.get_response(request)
        finally:
            _actor.reset(token)
        wait = getattr(request, "pcm_retry_after", None)
        if wait and response.status_code == 429 and not response.has_header("Retry-After"):
            response["Retry-After"] = str(int(wait))
        return response


def current_request():
    return _actor.get()


def current_actor():
    request = _actor.get()
    user = getattr(request, "user", None) if request is not None else None
    return user if getattr(user, "is_authenticated", False) else None
