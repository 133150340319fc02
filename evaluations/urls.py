"""Web routes for suites and evaluation runs (mounted under ``/evaluations/``)."""

from django.urls import path

from . import exception_views, views

urlpatterns = [
    path("suites/", views.suite_list, name="suite-list"),
    path("suites/new/", views.suite_upload, name="suite-upload"),
    path("suites/<int:pk>/", views.suite_detail, name="suite-detail"),
    path("runs/<int:pk>/", views.run_detail, name="run-detail"),
    path("runs/<int:pk>/progress/", views.run_progress, name="run-progress"),
    path("runs/<int:pk>/samples/", views.run_samples, name="run-samples"),
    path("runs/<int:pk>/discordant/", views.run_discordant, name="run-discordant"),
    path("runs/<int:pk>/cancel/", views.run_cancel, name="run-cancel"),
    path("changes/<int:pk>/panel/", views.change_panel, name="change-evaluation-panel"),
    path(
        "changes/<int:pk>/policy-exceptions/",
        exception_views.request_exception,
        name="policy-exception-request",
    ),
    path(
        "policy-exceptions/<int:pk>/approve/",
        exception_views.approve_exception,
        name="policy-exception-approve",
    ),
]
