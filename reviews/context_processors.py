"""The unread-notification count shown in the header on every page."""

from . import selectors


def inbox(request):
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {"inbox_unread": selectors.unread_count(user)}
