"""Ingestion tokens on the API: ``Authorization: Bearer pcm_ing_...``.

The request's ``user`` is None-like (an :class:`IngestPrincipal`): an ingestion token can do
exactly one thing, post decisions for its own system.
"""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from . import services


class IngestPrincipal:
    is_authenticated = True
    is_active = True
    is_staff = is_superuser = False
    pk = id = None
    username = ""

    def __init__(self, token):
        self.token = token

    def __str__(self):
        return f"ingest token {self.token.prefix}…"


class IngestTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Invalid Bearer header.")
        try:
            secret = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid token.") from None
        token = services.token_for_secret(secret)
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked ingestion token.")
        return IngestPrincipal(token), token

    def authenticate_header(self, request):
        return self.keyword


class IngestTokenScheme(OpenApiAuthenticationExtension):
    target_class = "monitoring.authentication.IngestTokenAuthentication"
    name = "ingestToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An ingestion token of the system (`pcm_ing_...`), not a user token.",
        }
