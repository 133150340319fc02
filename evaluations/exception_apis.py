"""API for policy exceptions (docs/GATE.md, "Policy exceptions"): list and request them on
a change, approve (as admin or as independent reviewer) and withdraw one. Thin: one
selector or service per call; refusals are 403 with every reason, conflicts 409."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response

from changes.selectors import change_for, visible_changes
from core.api import errors, or_404, parse

from . import exception_selectors, exception_services
from .models import PolicyException


class PolicyExceptionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    reference = serializers.CharField()
    change = serializers.IntegerField(source="change_id")
    key = serializers.CharField()
    value = serializers.JSONField()
    floor = serializers.JSONField(help_text="The criticality floor it loosens.")
    criticality = serializers.CharField()
    reason = serializers.CharField()
    content_sha256 = serializers.CharField(help_text="The content it binds to.")
    requested_by = serializers.CharField(source="requested_by.username")
    requested_at = serializers.DateTimeField()
    admin_approver = serializers.CharField(source="admin_approver.username", allow_null=True)
    admin_approved_at = serializers.DateTimeField(allow_null=True)
    reviewer_approver = serializers.CharField(source="reviewer_approver.username", allow_null=True)
    reviewer_approved_at = serializers.DateTimeField(allow_null=True)
    voided_at = serializers.DateTimeField(allow_null=True)
    void_reason = serializers.CharField(allow_blank=True)
    status = serializers.SerializerMethodField(
        help_text="pending, in_effect, lapsed (approved but no longer standing) or void."
    )
    problems = serializers.SerializerMethodField(help_text="Why it does not stand now.")

    def get_status(self, obj) -> str:
        return exception_selectors.status(obj, obj.change)

    def get_problems(self, obj) -> list[str]:
        return exception_selectors.problems(obj, obj.change)


class PolicyExceptionRequestSerializer(serializers.Serializer):
    key = serializers.CharField(max_length=40, help_text="e.g. max_gap, min_compliance.")
    value = serializers.JSONField(help_text="The looser value (a number, or false).")
    reason = serializers.CharField(max_length=exception_services.MAX_REASON)


class PolicyExceptionApproveSerializer(serializers.Serializer):
    as_role = serializers.ChoiceField(choices=["admin", "reviewer"])


def _exception(request, pk) -> PolicyException:
    visible = visible_changes(request.user).values("pk")
    return get_object_or_404(
        PolicyException.objects.select_related(
            "change__system", "requested_by", "admin_approver", "reviewer_approver"
        ),
        pk=pk,
        change__in=visible,
    )


def _body(exc) -> dict:
    return PolicyExceptionSerializer(exc).data


class ChangePolicyExceptionsApi(GenericAPIView):
    queryset = PolicyException.objects.none()  # schema introspection only
    serializer_class = PolicyExceptionSerializer
    filter_backends = []
    pagination_class = None

    @extend_schema(
        tags=["evaluations"],
        summary="A change's policy exceptions, with whether each stands now",
        responses={200: PolicyExceptionSerializer(many=True), **errors(401, 404)},
    )
    def get(self, request, pk):
        change = or_404(change_for, request.user, pk)
        rows = exception_selectors.exceptions_for(change)
        for row in rows:
            row.change = change
        return Response(PolicyExceptionSerializer(rows, many=True).data)

    @extend_schema(
        tags=["evaluations"],
        summary="Request a policy exception: loosen one gate threshold for this change",
        description="The author or an engineer on the owning team, while the change can be "
        "edited in place. 400 for a key that is not a threshold, a value that is not looser "
        "than the floor; 409 `not_editable`, `exception_exists`.",
        request=PolicyExceptionRequestSerializer,
        responses={201: PolicyExceptionSerializer, **errors(400, 401, 403, 404, 409)},
    )
    def post(self, request, pk):
        change = or_404(change_for, request.user, pk)
        data = parse(PolicyExceptionRequestSerializer, request.data, request)
        exc = exception_services.policy_exception_request(
            actor=request.user, change_request=change, **data
        )
        return Response(_body(_exception(request, exc.pk)), status=status.HTTP_201_CREATED)


class PolicyExceptionApproveApi(GenericAPIView):
    queryset = PolicyException.objects.none()
    serializer_class = PolicyExceptionApproveSerializer
    filter_backends = []

    @extend_schema(
        tags=["evaluations"],
        summary="Approve a policy exception as the admin or as the independent reviewer",
        description="It takes effect once both approvals are given by two different people, "
        "neither the author, the requester nor a protocol author, on the content it binds "
        "to. 403 lists every reason; 409 `exception_stale`, `exception_void`, `approved`.",
        request=PolicyExceptionApproveSerializer,
        responses={200: PolicyExceptionSerializer, **errors(400, 401, 403, 404, 409)},
    )
    def post(self, request, pk):
        exc = _exception(request, pk)
        data = parse(PolicyExceptionApproveSerializer, request.data, request)
        exception_services.policy_exception_approve(
            actor=request.user, exception=exc, as_role=data["as_role"]
        )
        return Response(_body(_exception(request, pk)))


class PolicyExceptionWithdrawApi(GenericAPIView):
    queryset = PolicyException.objects.none()
    serializer_class = PolicyExceptionSerializer
    filter_backends = []

    @extend_schema(
        tags=["evaluations"],
        summary="Withdraw a policy exception (the requester, the author or an admin)",
        request=None,
        responses={200: PolicyExceptionSerializer, **errors(401, 403, 404, 409)},
    )
    def post(self, request, pk):
        exc = _exception(request, pk)
        exception_services.policy_exception_withdraw(actor=request.user, exception=exc)
        return Response(_body(_exception(request, pk)))
