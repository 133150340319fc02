"""Reads of the review-collaboration app, always scoped to the acting user."""

from __future__ import annotations

from django.db.models import QuerySet

from .models import Notification


def inbox(user) -> QuerySet[Notification]:
    return Notification.objects.filter(recipient=user, in_inbox=True).select_related("change")


def unread_count(user) -> int:
    if not getattr(user, "is_authenticated", False):
        return 0
    return inbox(user).filter(read_at__isnull=True).count()
