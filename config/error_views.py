"""Error pages: styled HTML for people, ``{"detail", "code"}`` JSON under ``/api/``.

DRF answers errors raised inside its views itself (core.errors.api_exception_handler);
these handlers cover the rest: an ``/api/`` URL that matches no route, a crash that escaped
a view, a CSRF or permission failure raised by Django. With DEBUG on, Django shows its
technical pages instead and these are not called for 404/500.
"""

from __future__ import annotations

import logging

from django.http import HttpResponse, JsonResponse
from django.template import loader
from django.views import defaults

logger = logging.getLogger(__name__)

API_PREFIX = "/api/"

_PLAIN_500 = (
    "<!doctype html><html lang=en><meta charset=utf-8><title>Server error</title>"
    "<h1>Something went wrong</h1><p>The error has been logged.</p><p><a href=/>Back</a></p>"
)


def _is_api(request) -> bool:
    return request.path.startswith(API_PREFIX)


def _json(detail: str, code: str, status: int) -> JsonResponse:
    return JsonResponse({"detail": detail, "code": code}, status=status)


def bad_request(request, exception=None):
    if _is_api(request):
        return _json("The request could not be understood.", "bad_request", 400)
    return defaults.bad_request(request, exception)


def permission_denied(request, exception=None):
    if _is_api(request):
        message = str(exception) if exception and str(exception) else None
        return _json(message or "You do not have permission to do this.", "permission_denied", 403)
    return defaults.permission_denied(request, exception)


def page_not_found(request, exception=None):
    if _is_api(request):
        return _json(f"No API endpoint or object at {request.path}.", "not_found", 404)
    return defaults.page_not_found(request, exception)


def server_error(request):
    if _is_api(request):
        return _json("The server failed to answer this request; the error has been logged.",
                     "server_error", 500)  # fmt: skip
    # Rendered without a request context (the failure may be in a context processor), so the
    # base layout shows its logged-out header. If even that fails, a plain page.
    try:
        body = loader.get_template("500.html").render()
    except Exception:  # noqa: BLE001 - the error page must not fail itself
        logger.exception("The 500 page could not be rendered")
        body = _PLAIN_500
    return HttpResponse(body, status=500)
