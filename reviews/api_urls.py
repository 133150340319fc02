"""API routes of the review-collaboration app (mounted under ``/api/v1/``)."""

from django.urls import path

from . import apis

urlpatterns = [
    path("notifications/", apis.NotificationListApi.as_view(), name="api-notification-list"),
    path("notifications/read/", apis.NotificationReadApi.as_view(), name="api-notification-read"),
    path(
        "notifications/preferences/",
        apis.NotificationPreferencesApi.as_view(),
        name="api-notification-preferences",
    ),
]
