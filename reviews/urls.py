"""Web routes of the review-collaboration app (mounted under ``/reviews/``)."""

from django.urls import path

from . import views

urlpatterns = [
    path("inbox/", views.inbox, name="inbox"),
    path("inbox/read/", views.inbox_mark_read, name="inbox-read"),
    path("preferences/", views.preferences, name="notification-preferences"),
    path("changes/<int:pk>/request-review/", views.request_review, name="review-request"),
    path("changes/<int:pk>/threads/", views.thread_open, name="thread-open"),
    path("changes/<int:pk>/threads/<int:thread_pk>/", views.thread_reply, name="thread-reply"),
    path("rules/", views.ruleset_systems, name="ruleset-systems"),
    path("rules/<int:pk>/", views.ruleset_edit, name="ruleset-edit"),
    path("webhooks/", views.webhook_list, name="webhook-list"),
    path("webhooks/<int:pk>/", views.webhook_detail, name="webhook-detail"),
]
