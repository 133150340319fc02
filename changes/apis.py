"""REST API v1: the public contract (docs/CONTRACT.md), documented at ``/api/schema/``.

Thin views: an input serializer parses the request, one service (writes) or one selector
(reads, always scoped to ``request.user``) does the work, an output serializer renders it.
Domain errors become 400/403/409 centrally in ``core.errors.api_exception_handler``;
a change the user may not see is a 404, never a 403, so its existence does not leak.
"""

from __future__ import annotations

from django.contrib.auth import authenticate
from django.contrib.auth.signals import user_logged_in
from django.core.paginator import Paginator as DjangoPaginator
from django.db import transaction
from django.db.models import Prefetch
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_view,
)
from rest_framework import status, viewsets
from rest_framework.exceptions import NotFound, Throttled
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import Pagination, RoleGate, errors, or_404, parse
from core.errors import NotAllowed, ValidationFailed
from core.throttle import TooManyAttempts

from . import (
    diff,
    env_services,
    longpoll,
    permissions,
    selectors,
    services,
    tokens,
)
from . import serializers as s
from .filters import ChangeFilter
from .models import AISystem, ChangeRequest, ProtocolVersion, Review, Team

# --- change lookups and role gates ----------------------------------------------------------


class ChangeRowsPaginator(DjangoPaginator):
    """Counts the scoped change queryset as it is (no joins for the columns shown), and
    fetches only the page's rows, as dicts of ``selectors.LIST_COLUMNS``."""

    def _get_page(self, object_list, number, paginator):
        return super()._get_page(object_list.values(*selectors.LIST_COLUMNS), number, paginator)


class ChangeListPagination(Pagination):
    django_paginator_class = ChangeRowsPaginator


def visible_change(request, pk) -> ChangeRequest:
    return or_404(selectors.change_for, request.user, pk, detail="No such change.")


def change_detail(request, pk) -> dict:
    """The full change document (reviews prefetched; the gate computed once)."""
    reviews = Prefetch("reviews", queryset=Review.objects.select_related("reviewer"))
    try:
        change = (
            selectors.visible_changes(request.user).prefetch_related("editors", reviews).get(pk=pk)
        )
    except ChangeRequest.DoesNotExist:
        raise NotFound("No such change.")
    return s.ChangeDetailSerializer(change, context={"request": request}).data


class AdminWrites(RoleGate):
    message = "Only admins register AI systems."

    def allows(self, user):
        return permissions.can_manage_systems(user)


class EngineerWrites(RoleGate):
    message = "Only engineers add protocol versions."

    def allows(self, user):
        return permissions.can_create_protocol(user, None)


class EngineerFiles(RoleGate):
    """Only filing (POST) is role-gated; who may edit a given change is the service's call."""

    message = "Only engineers file protocol changes."
    gated_methods = frozenset({"POST"})

    def allows(self, user):
        return permissions.can_create_change(user, None)


# --- auth --------------------------------------------------------------------------------


@transaction.atomic
def _issue_token(request, user, data) -> tuple:
    """Issue a new token (hashed, expiring, scoped): a login, as far as axes and the audit log
    go. Returns ``(token, key)``; the key is in this answer only."""
    # Resets axes' failure count (AXES_RESET_ON_SUCCESS) and audits ``auth.login``.
    user_logged_in.send(sender=user.__class__, request=request, user=user)
    return tokens.issue(
        user,
        scopes=data.get("scopes"),
        days=data.get("expires_in_days"),
        name=data.get("name") or "",
    )


def _token_body(token, key) -> dict:
    return s.TokenSerializer(
        {
            "token": key,
            "prefix": token.prefix,
            "scopes": token.scopes,
            "expires_at": token.expires_at,
        }
    ).data


class TokenRotateApi(APIView):
    """Replace the token this request is made with by a new one (same scopes, new expiry)."""

    @extend_schema(
        tags=["auth"],
        request=None,
        responses={200: s.TokenSerializer, **errors(401, 403)},
    )
    def post(self, request):
        token = _request_token(request)
        new, key = tokens.rotate(token, actor=request.user)
        return Response(_token_body(new, key))


class TokenRevokeApi(APIView):
    """Revoke the token this request is made with (log out of the API)."""

    @extend_schema(tags=["auth"], request=None, responses={204: None, **errors(401, 403)})
    def post(self, request):
        tokens.revoke(_request_token(request), reason="revoked by its owner", actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


def _request_token(request):
    from .models import ApiToken

    if not isinstance(request.auth, ApiToken):
        raise NotAllowed("Only a request made with an API token can rotate or revoke it.")
    return ApiToken.objects.select_related("user").get(pk=request.auth.pk)


class TokenApi(APIView):
    """Exchange a username and password for an API token.

    Failed attempts are audited (``auth.login_failed``) and throttled by django-axes: after
    ``AXES_FAILURE_LIMIT`` failures the username is locked (403 ``locked_out``, audited as
    ``auth.locked_out``) until the cool-off passes.
    """

    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        tags=["auth"],
        auth=[],
        request=s.TokenRequestSerializer,
        responses={200: s.TokenSerializer, **errors(400, 403, 429)},
    )
    def post(self, request):
        data = parse(s.TokenRequestSerializer, request.data, request)
        # The DRF request (not request._request): axes flags a lockout on the object it is
        # given, and AxesMiddleware would otherwise swap our JSON for its HTML lockout page.
        user = authenticate(request=request, username=data["username"], password=data["password"])
        if getattr(request, "axes_locked_out", False):
            raise NotAllowed(
                "Too many failed login attempts: this account is locked for a while.",
                code="locked_out",
            )
        if getattr(request._request, "pcm_login_delayed", False):
            wait = request._request.pcm_retry_after
            raise TooManyAttempts(
                f"Too many failed attempts: wait {wait} s before trying again.", retry_after=wait
            )
        if user is None:
            raise ValidationFailed(
                "Unable to log in with the username and password given.",
                code="invalid_credentials",
            )
        token, key = _issue_token(request, user, data)
        return Response(_token_body(token, key))


# --- teams, systems, protocols -----------------------------------------------------------


@extend_schema_view(
    list=extend_schema(tags=["teams"], responses={200: s.TeamSerializer, **errors(401, 404)}),
    retrieve=extend_schema(tags=["teams"], responses={200: s.TeamSerializer, **errors(401, 404)}),
)
class TeamViewSet(viewsets.ReadOnlyModelViewSet):
    """Teams and their members (membership decides reviewer independence)."""

    queryset = Team.objects.none()  # schema introspection only; get_queryset scopes
    serializer_class = s.TeamSerializer
    pagination_class = Pagination
    filter_backends = []

    def get_queryset(self):
        return selectors.visible_teams(self.request.user)


@extend_schema_view(
    list=extend_schema(tags=["systems"], responses={200: s.SystemSerializer, **errors(401, 404)}),
    retrieve=extend_schema(
        tags=["systems"], responses={200: s.SystemSerializer, **errors(401, 404)}
    ),
)
class SystemViewSet(viewsets.ReadOnlyModelViewSet):
    """AI systems. Everyone reads; admins register. Targets never carry secrets."""

    queryset = AISystem.objects.none()  # schema introspection only
    serializer_class = s.SystemSerializer
    permission_classes = [IsAuthenticated, AdminWrites]
    pagination_class = Pagination
    filter_backends = []

    def get_queryset(self):
        return selectors.visible_systems(self.request.user)

    @extend_schema(
        tags=["systems"],
        request=s.SystemCreateSerializer,
        responses={201: s.SystemSerializer, **errors(400, 401, 403, 409)},
    )
    def create(self, request):
        data = parse(s.SystemCreateSerializer, request.data, request)
        system = services.system_create(actor=request.user, **data)
        return Response(s.SystemSerializer(system).data, status=status.HTTP_201_CREATED)


def visible_system(request, system_pk) -> AISystem:
    try:
        return selectors.visible_systems(request.user).get(pk=system_pk)
    except AISystem.DoesNotExist:
        raise NotFound("No such AI system.")


@extend_schema_view(
    list=extend_schema(
        tags=["protocols"], responses={200: s.ProtocolVersionSerializer, **errors(401, 404)}
    ),
    retrieve=extend_schema(
        tags=["protocols"], responses={200: s.ProtocolVersionSerializer, **errors(401, 404)}
    ),
)
class ProtocolVersionViewSet(viewsets.ReadOnlyModelViewSet):
    """A system's protocol versions: immutable once created (no PUT, PATCH or DELETE)."""

    queryset = ProtocolVersion.objects.none()  # schema introspection only
    serializer_class = s.ProtocolVersionSerializer
    permission_classes = [IsAuthenticated, EngineerWrites]
    pagination_class = Pagination
    filter_backends = []

    def get_queryset(self):
        system = visible_system(self.request, self.kwargs["system_pk"])
        return selectors.visible_protocols(self.request.user, system)

    @extend_schema(
        tags=["protocols"],
        request=s.ProtocolVersionCreateSerializer,
        responses={201: s.ProtocolVersionSerializer, **errors(400, 401, 403, 404, 409)},
    )
    def create(self, request, system_pk):
        system = visible_system(request, system_pk)
        data = parse(s.ProtocolVersionCreateSerializer, request.data, request)
        protocol = services.protocol_version_create(actor=request.user, system=system, **data)
        return Response(s.ProtocolVersionSerializer(protocol).data, status=status.HTTP_201_CREATED)


def protocol_unified_diff(a: ProtocolVersion, b: ProtocolVersion) -> dict[str, str]:
    """Per part (system prompt, body) and combined: a multi-file patch, one file per part."""
    parts = {
        attr: diff.unified_diff(
            getattr(a, attr),
            getattr(b, attr),
            fromfile=f"{a.version}/{attr}",
            tofile=f"{b.version}/{attr}",
        )
        for attr in ("system_prompt", "body")
    }
    combined = "\n".join(text for text in parts.values() if text)
    return {
        "diff": combined + "\n" if combined else "",
        **{f"{k}_diff": v for k, v in parts.items()},
    }


class ProtocolDiffApi(APIView):
    """A unified diff between any two protocol versions of one system."""

    @extend_schema(
        tags=["protocols"],
        parameters=[s.ProtocolDiffQuerySerializer],
        responses={200: s.ProtocolDiffSerializer, **errors(400, 401, 404)},
    )
    def get(self, request, system_pk):
        system = visible_system(request, system_pk)
        query = parse(s.ProtocolDiffQuerySerializer, request.query_params, request)
        found = selectors.visible_protocols(request.user, system).in_bulk(
            [query["from"], query["to"]]
        )
        a, b = found.get(query["from"]), found.get(query["to"])
        if a is None or b is None:
            raise NotFound(f"No such protocol version of {system.name}.")
        return Response(
            {
                "from": s.ProtocolVersionRefSerializer(a).data,
                "to": s.ProtocolVersionRefSerializer(b).data,
                **protocol_unified_diff(a, b),
            }
        )


# --- change requests ---------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(
        tags=["changes"],
        summary="List the changes you may see",
        responses={200: s.ChangeSummarySerializer, **errors(400, 401, 404)},
    ),
    retrieve=extend_schema(
        tags=["changes"],
        summary="One change, with its reviews and deploy gate; optionally waits for a state",
        description="With `wait_for`, a long-poll: the answer comes as soon as the change is "
        "in that state (`X-Wait-Outcome: reached`), has entered it and moved on during the "
        "wait (`passed`), can no longer get there without a new round, such as a failed "
        "evaluation or a terminal state (`unreachable`), or when `timeout` seconds (at most "
        "60, default 30) have passed (`timeout`). The body is always the change as it is "
        "then. 400 for an unknown state or a timeout out of range; 429 with `Retry-After` "
        "when too many requests are already waiting.",
        parameters=[
            s.ChangeWaitQuerySerializer,
            OpenApiParameter(
                "X-Wait-Outcome",
                str,
                location=OpenApiParameter.HEADER,
                enum=list(longpoll.OUTCOMES),
                description="Only with `wait_for`: why the wait ended.",
                response=[200],
            ),
            OpenApiParameter(
                "Retry-After",
                int,
                location=OpenApiParameter.HEADER,
                description="Seconds to wait before asking again.",
                response=[429],
            ),
        ],
        responses={200: s.ChangeDetailSerializer, **errors(400, 401, 404, 429)},
    ),
    create=extend_schema(
        tags=["changes"],
        summary="File a change (engineers); it starts in draft",
        request=s.ChangeWriteSerializer,
        responses={201: s.ChangeDetailSerializer, **errors(400, 401, 403)},
    ),
    partial_update=extend_schema(
        tags=["changes"],
        summary="Edit a change; voids earlier approvals and returns a reviewed change to draft",
        request=s.ChangeWriteSerializer,
        responses={200: s.ChangeDetailSerializer, **errors(400, 401, 403, 404, 409)},
    ),
)
class ChangeViewSet(viewsets.GenericViewSet):
    """Change requests, scoped to what the user may see."""

    queryset = ChangeRequest.objects.none()  # schema introspection only
    serializer_class = s.ChangeSummarySerializer
    permission_classes = [IsAuthenticated, EngineerFiles]
    filterset_class = ChangeFilter
    pagination_class = ChangeListPagination

    def get_queryset(self):
        return selectors.change_list(self.request.user)

    def get_serializer_class(self):
        # The browsable API builds its forms from this; JSON responses name theirs.
        if self.request is not None and self.request.method in ("POST", "PATCH"):
            return s.ChangeWriteSerializer
        return s.ChangeSummarySerializer

    def list(self, request):
        # Rows, not instances: ChangeSummarySerializer documents the shape that
        # selectors.change_summaries builds (a test keeps the two identical).
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(selectors.change_summaries(page))

    def retrieve(self, request, pk):
        # A plain dict: an empty ``?wait_for=`` (an unset shell variable) is a 400, not "absent".
        query = parse(s.ChangeWaitQuerySerializer, request.query_params.dict(), request)
        if "wait_for" not in query:
            return Response(change_detail(request, pk))
        change = visible_change(request, pk)  # 404 at once, not after the wait
        try:
            result = longpoll.wait_for_state(
                change_id=change.pk,
                target=query["wait_for"],
                timeout=query.get("timeout", longpoll.DEFAULT_TIMEOUT),
            )
        except longpoll.TooManyWaiters:
            raise Throttled(
                wait=1, detail="Too many requests are waiting for changes; try again shortly."
            ) from None
        response = Response(change_detail(request, pk))
        response["X-Wait-Outcome"] = result.outcome
        return response

    def create(self, request):
        data = parse(s.ChangeWriteSerializer, request.data, request)
        change = services.change_request_create(actor=request.user, **data)
        return Response(change_detail(request, change.pk), status=status.HTTP_201_CREATED)

    def partial_update(self, request, pk):
        change = visible_change(request, pk)
        data = parse(s.ChangeWriteSerializer, request.data, request, partial=True)
        services.change_request_update(actor=request.user, change_request=change, data=data)
        return Response(change_detail(request, pk))


class _ChangeOperation(GenericAPIView):
    """One workflow operation on one visible change."""

    queryset = ChangeRequest.objects.none()  # schema introspection only
    serializer_class = s.NoBodySerializer  # the browsable API's form; see each extend_schema
    filter_backends = []
    pagination_class = Pagination

    def change(self) -> ChangeRequest:
        return visible_change(self.request, self.kwargs["pk"])


class ChangeSubmitApi(_ChangeOperation):
    @extend_schema(
        tags=["changes"],
        summary="Submit a change (author): starts its evaluation runs",
        description="400 when no evaluation suite is linked or the system's evaluation "
        "target cannot be used (its host is not allowed, its config is invalid).",
        request=None,
        responses={200: s.ChangeDetailSerializer, **errors(400, 401, 403, 404, 409)},
    )
    def post(self, request, pk):
        services.change_request_submit(actor=request.user, change_request=self.change())
        return Response(change_detail(request, pk))


class ChangeEmergencyConfirmApi(_ChangeOperation):
    @extend_schema(
        tags=["reviews"],
        summary="Confirm an emergency change (independent reviewer)",
        description="An emergency lowers the approvals needed (never below the criticality's "
        "emergency minimum) only once someone who could sign the change confirms it for its "
        "current content; the author's own declaration lowers nothing. 403 `not_independent` "
        "with the `reasons`; 409 when the change is not an emergency or is closed.",
        request=None,
        responses={200: s.ChangeDetailSerializer, **errors(401, 403, 404, 409)},
    )
    def post(self, request, pk):
        services.change_request_confirm_emergency(actor=request.user, change_request=self.change())
        return Response(change_detail(request, pk))


class ChangeWithdrawApi(_ChangeOperation):
    serializer_class = s.WithdrawSerializer

    @extend_schema(
        tags=["changes"],
        summary="Withdraw a change (author or admin); cancels runs in flight",
        request=s.WithdrawSerializer,
        responses={200: s.ChangeDetailSerializer, **errors(400, 401, 403, 404, 409)},
    )
    def post(self, request, pk):
        change = self.change()
        data = parse(s.WithdrawSerializer, request.data, request)
        services.change_request_withdraw(
            actor=request.user, change_request=change, reason=data["reason"]
        )
        return Response(change_detail(request, pk))


class ChangeCloseApi(_ChangeOperation):
    @extend_schema(
        tags=["changes"],
        summary="Close a deployed change (author or admin)",
        request=None,
        responses={200: s.ChangeDetailSerializer, **errors(401, 403, 404, 409)},
    )
    def post(self, request, pk):
        services.change_request_close(actor=request.user, change_request=self.change())
        return Response(change_detail(request, pk))


class ChangeReviewsApi(_ChangeOperation):
    serializer_class = s.ReviewCreateSerializer

    @extend_schema(
        tags=["reviews"],
        summary="The change's reviews, oldest first (voided ones included)",
        responses={200: s.ReviewSerializer(many=True), **errors(401, 404)},
    )
    def get(self, request, pk):
        reviews = self.change().reviews.select_related("reviewer", "change").order_by("id")
        page = self.paginate_queryset(reviews)
        return self.get_paginated_response(s.ReviewSerializer(page, many=True).data)

    @extend_schema(
        tags=["reviews"],
        summary="Sign a review (independent reviewer; re-enter your password)",
        description="The signature binds to the change's current content hash. "
        "`content_sha256` (the hash you reviewed) is required: if the change was edited "
        "meanwhile the review is refused (409 `stale_content`). Authors, editors, the authors "
        "of either protocol version, deactivated users and (for high/critical systems) the "
        "author's team are refused with 403 `not_independent` and the `reasons`.",
        request=s.ReviewCreateSerializer,
        responses={201: s.ReviewSerializer, **errors(400, 401, 403, 404, 409, 429)},
    )
    def post(self, request, pk):
        change = self.change()
        data = parse(s.ReviewCreateSerializer, request.data, request)
        review = services.review_submit(
            actor=request.user,
            change_request=change,
            decision=data["decision"],
            comment=data["comment"],
            password=data["password"],
            expected_sha256=data.get("content_sha256"),
            acknowledge_flagged_reasoning=data.get("acknowledge_flagged_reasoning", False),
        )
        return Response(s.ReviewSerializer(review).data, status=status.HTTP_201_CREATED)


class ChangeGateApi(_ChangeOperation):
    @extend_schema(
        tags=["deploy"],
        summary="The deploy gate: every unmet condition, in words",
        parameters=[
            OpenApiParameter(
                "environment", str, required=False, description="Default: the last on the path."
            )
        ],
        responses={200: s.GateSerializer, **errors(400, 401, 404)},
    )
    def get(self, request, pk):
        change, name = self.change(), request.query_params.get("environment")
        env = env_services._environment(change.system, name) if name is not None else None
        return Response(s.GateSerializer(selectors.gate(change, env, user=request.user)).data)


class ChangeDeployApi(_ChangeOperation):
    serializer_class = s.DeploySerializer

    @extend_schema(
        tags=["deploy"],
        summary="Deploy an approved change (engineer or pipeline token)",
        description="Refused with 409 `gate_closed` and the same `reasons` as the gate.",
        request=s.DeploySerializer,
        responses={201: s.DeploymentSerializer, **errors(400, 401, 403, 404, 409)},
    )
    def post(self, request, pk):
        change = self.change()
        data = parse(s.DeploySerializer, request.data, request)
        deployment = services.change_request_deploy(
            actor=request.user,
            change_request=change,
            environment=data["environment"],
            blackout_override=data["blackout_override"],
        )
        return Response(s.DeploymentSerializer(deployment).data, status=status.HTTP_201_CREATED)


class ChangeTimelineApi(_ChangeOperation):
    serializer_class = s.AuditEventSerializer

    @extend_schema(
        tags=["changes"],
        summary="The change's audit events, oldest first",
        responses={200: s.AuditEventSerializer(many=True), **errors(401, 404)},
    )
    def get(self, request, pk):
        page = self.paginate_queryset(selectors.timeline(self.change()))
        return self.get_paginated_response(s.AuditEventSerializer(page, many=True).data)
