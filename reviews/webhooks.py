"""Signed outgoing webhooks (filled in by the webhook step)."""

from __future__ import annotations


def deliveries_create(*, event, described) -> list[int]:
    """Queue one delivery per subscribed endpoint (none registered yet)."""
    return []
