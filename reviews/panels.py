"""Sections this app adds to pages of ``changes`` (through ``changes.hooks.register_panel``)."""

from __future__ import annotations

from django.template.loader import render_to_string


def change_panel(request, change) -> str | None:
    return None


def dashboard_panel(request) -> str | None:
    return None


__all__ = ["render_to_string"]
