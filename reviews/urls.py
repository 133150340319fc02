"""Web routes of the review-collaboration app (mounted under ``/reviews/``)."""

from django.urls import path

from . import views

urlpatterns = [
    path("inbox/", views.inbox, name="inbox"),
    path("inbox/read/", views.inbox_mark_read, name="inbox-read"),
    path("preferences/", views.preferences, name="notification-preferences"),
    path("changes/<int:pk>/request-review/", views.request_review, name="review-request"),
]
