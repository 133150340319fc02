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
    path(
        "changes/<int:pk>/review-requests/",
        apis.ReviewRequestsApi.as_view(),
        name="api-review-requests",
    ),
    path(
        "changes/<int:pk>/since-my-review/",
        apis.SinceMyReviewApi.as_view(),
        name="api-since-my-review",
    ),
    path("changes/<int:pk>/threads/", apis.ThreadListApi.as_view(), name="api-thread-list"),
    path("threads/<int:pk>/comments/", apis.ThreadCommentApi.as_view(), name="api-thread-comment"),
    path("threads/<int:pk>/resolve/", apis.ThreadResolveApi.as_view(), name="api-thread-resolve"),
    path("webhooks/", apis.WebhookListApi.as_view(), name="api-webhook-list"),
    path(
        "webhooks/<int:pk>/deliveries/",
        apis.WebhookDeliveryListApi.as_view(),
        name="api-webhook-deliveries",
    ),
    path(
        "webhook-deliveries/<int:pk>/redeliver/",
        apis.WebhookRedeliverApi.as_view(),
        name="api-webhook-redeliver",
    ),
    path(
        "systems/<int:pk>/reviewer-rules/",
        apis.ReviewerRulesApi.as_view(),
        name="api-reviewer-rules",
    ),
]
