"""API v1 routes for suites and evaluation runs (mounted under ``/api/v1/``).

``changes/<pk>/evaluations/`` lives in the changes' URL space but is defined here, so the
workflow app never imports the evaluation engine.
"""

from django.urls import path

from . import apis, exception_apis

urlpatterns = [
    path("suites/", apis.SuiteListApi.as_view(), name="api-suite-list"),
    path("suites/<int:pk>/", apis.SuiteDetailApi.as_view(), name="api-suite-detail"),
    path(
        "changes/<int:pk>/evaluations/",
        apis.ChangeEvaluationsApi.as_view(),
        name="api-change-evaluations",
    ),
    path(
        "changes/<int:pk>/policy-exceptions/",
        exception_apis.ChangePolicyExceptionsApi.as_view(),
        name="api-change-policy-exceptions",
    ),
    path(
        "policy-exceptions/<int:pk>/approve/",
        exception_apis.PolicyExceptionApproveApi.as_view(),
        name="api-policy-exception-approve",
    ),
    path(
        "policy-exceptions/<int:pk>/withdraw/",
        exception_apis.PolicyExceptionWithdrawApi.as_view(),
        name="api-policy-exception-withdraw",
    ),
    path(
        "evaluations/<int:run_id>/",
        apis.EvaluationDetailApi.as_view(),
        name="api-evaluation-detail",
    ),
    path(
        "evaluations/<int:run_id>/samples/",
        apis.EvaluationSamplesApi.as_view(),
        name="api-evaluation-samples",
    ),
    path(
        "evaluations/<int:run_id>/cancel/",
        apis.EvaluationCancelApi.as_view(),
        name="api-evaluation-cancel",
    ),
]
