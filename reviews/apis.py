"""REST API of the review-collaboration app (mounted under ``/api/v1/``).

Thin views: parse, call one service or selector scoped to ``request.user``, render. Domain
errors become 400/403/409 centrally (``core.errors.api_exception_handler``).
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import errors, or_404

from . import discussion, rules, selectors, services, snapshots, webhooks
from . import requests as review_requests

#: The error answers every endpoint here may give (``{"detail", "code"}``).
ERRORS = errors(400, 401, 403, 404, 409)


class NotificationSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    title = serializers.CharField()
    body = serializers.CharField()
    url = serializers.CharField()
    change = serializers.IntegerField(source="change_id", allow_null=True)
    created_at = serializers.DateTimeField()
    read_at = serializers.DateTimeField(allow_null=True)
    email_state = serializers.CharField()


class NotificationListApi(APIView):
    """The acting user's inbox, newest first, with the unread count."""

    @extend_schema(
        tags=["notifications"],
        responses={200: NotificationSerializer(many=True), **ERRORS},
    )
    def get(self, request):
        rows = selectors.inbox(request.user)
        if request.query_params.get("unread") in ("1", "true"):
            rows = rows.filter(read_at__isnull=True)
        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(rows, request, view=self)
        response = paginator.get_paginated_response(NotificationSerializer(page, many=True).data)
        response.data["unread"] = selectors.unread_count(request.user)
        return response


class NotificationReadApi(APIView):
    """Mark notifications read: ``{"ids": [..]}``, or ``{"all": true}``."""

    @extend_schema(
        tags=["notifications"],
        request=inline_serializer(
            "MarkRead",
            {"ids": serializers.ListField(child=serializers.IntegerField(), required=False)},
        ),
        responses={
            200: inline_serializer("MarkedRead", {"marked": serializers.IntegerField()}),
            **ERRORS,
        },
    )
    def post(self, request):
        data = request.data if isinstance(request.data, dict) else {}
        ids = None if data.get("all") is True else data.get("ids")
        if ids is None and data.get("all") is not True:
            from core.errors import ValidationFailed

            raise ValidationFailed('ids: give a list of ids, or {"all": true}.')
        if ids is not None and not isinstance(ids, list):
            from core.errors import ValidationFailed

            raise ValidationFailed("ids: must be a list of notification ids.")
        marked = services.notifications_mark_read(actor=request.user, ids=ids)
        return Response({"marked": marked, "unread": selectors.unread_count(request.user)})


class NotificationPreferencesApi(APIView):
    """Per-kind channels for the acting user: ``{kind: {"in_app": bool, "email": bool}}``."""

    @extend_schema(tags=["notifications"], responses={200: dict, **ERRORS})
    def get(self, request):
        return Response(services.preferences_for(request.user))

    @extend_schema(
        tags=["notifications"],
        request=dict,
        responses={200: dict, **ERRORS},
    )
    def put(self, request):
        return Response(services.preferences_set(actor=request.user, choices=request.data))


def _visible_change(request, pk):
    from changes import selectors as change_selectors

    return or_404(change_selectors.change_for, request.user, pk)


class ReviewRequestsApi(APIView):
    """Requested reviewers of a change: who was asked, who answered, who is pending.

    POST ``{"reviewers": ["username" | id, ...]}`` asks them (again, after an edit); an
    author or an ineligible reviewer is refused with 400 and every reason.
    """

    @extend_schema(tags=["reviews"], responses={200: dict, **ERRORS})
    def get(self, request, pk):
        change = _visible_change(request, pk)
        return Response(
            {
                "change": change.pk,
                "content_sha256": change.content_sha256,
                "requests": [s.as_dict() for s in review_requests.statuses(change)],
            }
        )

    @extend_schema(
        tags=["reviews"],
        request=inline_serializer(
            "RequestReviewers", {"reviewers": serializers.ListField(child=serializers.CharField())}
        ),
        responses={201: dict, **ERRORS},
    )
    def post(self, request, pk):
        change = _visible_change(request, pk)
        data = request.data if isinstance(request.data, dict) else {}
        review_requests.review_request(
            actor=request.user, change_request=change, reviewers=data.get("reviewers")
        )
        body = {"requests": [s.as_dict() for s in review_requests.statuses(change)]}
        return Response(body, status=201)


class SinceMyReviewApi(APIView):
    """What changed since the caller's latest review of a change (or since ``?sha256=``):
    protocol texts, rationale, test plan, plans, expected changes and suites."""

    @extend_schema(tags=["reviews"], responses={200: dict, **ERRORS})
    def get(self, request, pk):
        from changes.models import Review
        from core.errors import ValidationFailed

        change = _visible_change(request, pk)
        sha = request.query_params.get("sha256")
        if sha is None:
            mine = Review.objects.filter(change=change, reviewer=request.user)
            sha = (
                mine.order_by("-created_at", "-id").values_list("content_sha256", flat=True).first()
            )
            if sha is None:
                raise ValidationFailed("You have not reviewed this change; pass ?sha256= instead.")
        result = snapshots.since(change, str(sha))
        if result is None:
            raise NotFound("No snapshot of that content hash.")
        return Response({"change": change.pk, **result})


def comment_dict(comment) -> dict:
    from changes.markdown import render_markdown

    return {
        "id": comment.pk,
        "author": comment.author.username,
        "body": comment.body,
        "html": str(render_markdown(comment.body)),
        "content_sha256": comment.content_sha256,
        "created_at": comment.created_at.isoformat(),
    }


def thread_dict(thread) -> dict:
    return {
        "id": thread.pk,
        "author": thread.author.username,
        "content_sha256": thread.content_sha256,
        "part": thread.part,
        "side": thread.side,
        "line": thread.line,
        "line_text": thread.line_text,
        "blocking": thread.blocking,
        "resolved": thread.resolved_at is not None,
        "resolved_by": thread.resolved_by.username if thread.resolved_by else None,
        "comments": [comment_dict(c) for c in thread.comments.all()],
    }


def _visible_thread(request, pk):
    from .models import Thread

    thread = Thread.objects.select_related("change").filter(pk=pk).first()
    if thread is None:
        raise NotFound()
    _visible_change(request, thread.change_id)
    return thread


class ThreadListApi(APIView):
    """Discussion threads of a change; POST opens one: ``{"body", "part", "side", "line",
    "blocking"}`` (``part`` empty for the change, ``system_prompt``/``body`` for a diff line)."""

    @extend_schema(tags=["discussion"], responses={200: dict, **ERRORS})
    def get(self, request, pk):
        change = _visible_change(request, pk)
        return Response(
            {
                "counts": discussion.counts(change),
                "threads": [thread_dict(t) for t in discussion.threads_of(change)],
            }
        )

    @extend_schema(tags=["discussion"], request=dict, responses={201: dict, **ERRORS})
    def post(self, request, pk):
        change = _visible_change(request, pk)
        data = request.data if isinstance(request.data, dict) else {}
        thread = discussion.thread_open(
            actor=request.user,
            change=change,
            body=data.get("body"),
            part=data.get("part", ""),
            side=data.get("side", ""),
            line=data.get("line"),
            blocking=data.get("blocking", False),
        )
        return Response(thread_dict(thread), status=201)


class ThreadCommentApi(APIView):
    """Reply in a thread: ``{"body": "..."}``."""

    @extend_schema(tags=["discussion"], request=dict, responses={201: dict, **ERRORS})
    def post(self, request, pk):
        thread = _visible_thread(request, pk)
        data = request.data if isinstance(request.data, dict) else {}
        comment = discussion.comment_add(actor=request.user, thread=thread, body=data.get("body"))
        return Response(comment_dict(comment), status=201)


class ThreadResolveApi(APIView):
    """Resolve or reopen a thread: ``{"resolved": true|false}``."""

    @extend_schema(tags=["discussion"], request=dict, responses={200: dict, **ERRORS})
    def post(self, request, pk):
        thread = _visible_thread(request, pk)
        data = request.data if isinstance(request.data, dict) else {}
        thread = discussion.thread_resolve(
            actor=request.user, thread=thread, resolved=data.get("resolved", True)
        )
        return Response(thread_dict(thread))


def _admin_only(request):
    from core.errors import NotAllowed

    from .permissions import may_manage_webhooks

    if not may_manage_webhooks(request.user):
        raise NotAllowed("Only admins manage webhook endpoints.")


def endpoint_dict(endpoint, *, secret: bool = False) -> dict:
    out = {
        "id": endpoint.pk,
        "name": endpoint.name,
        "url": endpoint.url,
        "system": endpoint.system_id,
        "events": endpoint.events,
        "active": endpoint.active,
        "created_at": endpoint.created_at.isoformat(),
    }
    if secret:
        out["secret"] = endpoint.secret  # shown once, on creation
    return out


def delivery_dict(delivery) -> dict:
    return {
        "id": delivery.pk,
        "msg_id": delivery.msg_id,
        "event_type": delivery.event_type,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error,
        "delivered_at": delivery.delivered_at.isoformat() if delivery.delivered_at else None,
        "log": [
            {"at": a.at.isoformat(), "status_code": a.status_code, "error": a.error}
            for a in delivery.log.all()
        ],
    }


class WebhookListApi(APIView):
    """Webhook endpoints (admins). POST ``{"name", "url", "events": [...], "system": id?}``;
    the response carries the signing ``secret``, shown this once."""

    @extend_schema(tags=["webhooks"], responses={200: dict, **ERRORS})
    def get(self, request):
        from .models import WebhookEndpoint

        _admin_only(request)
        return Response([endpoint_dict(e) for e in WebhookEndpoint.objects.all()])

    @extend_schema(tags=["webhooks"], request=dict, responses={201: dict, **ERRORS})
    def post(self, request):
        from changes.models import AISystem
        from core.errors import ValidationFailed

        _admin_only(request)
        data = request.data if isinstance(request.data, dict) else {}
        system = None
        if data.get("system") is not None:
            system = (
                AISystem.objects.filter(pk=data["system"]).first()
                if str(data["system"]).isdigit()
                else None
            )
            if system is None:
                raise ValidationFailed("system: no such AI system.")
        endpoint = webhooks.endpoint_create(
            actor=request.user,
            name=data.get("name"),
            url=data.get("url"),
            events=data.get("events"),
            system=system,
        )
        return Response(endpoint_dict(endpoint, secret=True), status=201)


class WebhookDeliveryListApi(APIView):
    """The delivery log of one endpoint, newest first, each with its attempts."""

    @extend_schema(tags=["webhooks"], responses={200: dict, **ERRORS})
    def get(self, request, pk):
        from .models import WebhookDelivery

        _admin_only(request)
        rows = WebhookDelivery.objects.filter(endpoint_id=pk).prefetch_related("log")[:100]
        return Response([delivery_dict(d) for d in rows])


class WebhookRedeliverApi(APIView):
    """Send one delivery again (same ``webhook-id``)."""

    @extend_schema(tags=["webhooks"], request=None, responses={202: dict, **ERRORS})
    def post(self, request, pk):
        from .models import WebhookDelivery

        _admin_only(request)
        delivery = WebhookDelivery.objects.filter(pk=pk).first()
        if delivery is None:
            raise NotFound()
        delivery = webhooks.redeliver(actor=request.user, delivery=delivery)
        return Response(delivery_dict(delivery), status=202)


class ReviewerRulesApi(APIView):
    """A system's reviewer rules: the version in force and the history. PUT (admins) saves a
    new version: ``{"rules": [{"name", "kind": team|users|any, "team"|"users", "count"}],
    "author_team_counts": bool}``; a set that can never be met is refused with reasons."""

    def _system(self, request, pk):
        from changes import selectors as change_selectors

        system = change_selectors.visible_systems(request.user).filter(pk=pk).first()
        if system is None:
            raise NotFound()
        return system

    @extend_schema(tags=["reviews"], responses={200: dict, **ERRORS})
    def get(self, request, pk):
        from .models import ReviewerRuleSet

        system = self._system(request, pk)
        versions = ReviewerRuleSet.objects.filter(system=system)
        return Response(
            {
                "system": system.pk,
                "current": ruleset_dict(versions.first()),
                "versions": [ruleset_dict(v) for v in versions],
            }
        )

    @extend_schema(tags=["reviews"], request=dict, responses={200: dict, **ERRORS})
    def put(self, request, pk):
        system = self._system(request, pk)
        data = request.data if isinstance(request.data, dict) else {}
        ruleset = rules.ruleset_save(
            actor=request.user,
            system=system,
            rules=data.get("rules"),
            author_team_counts=data.get("author_team_counts", True),
        )
        return Response(ruleset_dict(ruleset))


def ruleset_dict(ruleset) -> dict | None:
    if ruleset is None:
        return None
    return {
        "version": ruleset.version,
        "rules": [{**r, "description": rules.describe(r)} for r in ruleset.rules],
        "author_team_counts": ruleset.author_team_counts,
        "created_by": ruleset.created_by.username,
        "created_at": ruleset.created_at.isoformat(),
    }
