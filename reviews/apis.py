"""REST API of the review-collaboration app (mounted under ``/api/v1/``).

Thin views: parse, call one service or selector scoped to ``request.user``, render. Domain
errors become 400/403/409 centrally (``changes.errors.api_exception_handler``).
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from . import selectors, services


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

    @extend_schema(tags=["notifications"], responses={200: NotificationSerializer(many=True)})
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
        responses={200: inline_serializer("MarkedRead", {"marked": serializers.IntegerField()})},
    )
    def post(self, request):
        data = request.data if isinstance(request.data, dict) else {}
        ids = None if data.get("all") is True else data.get("ids")
        if ids is None and data.get("all") is not True:
            from changes.errors import ValidationFailed

            raise ValidationFailed('ids: give a list of ids, or {"all": true}.')
        if ids is not None and not isinstance(ids, list):
            from changes.errors import ValidationFailed

            raise ValidationFailed("ids: must be a list of notification ids.")
        marked = services.notifications_mark_read(actor=request.user, ids=ids)
        return Response({"marked": marked, "unread": selectors.unread_count(request.user)})


class NotificationPreferencesApi(APIView):
    """Per-kind channels for the acting user: ``{kind: {"in_app": bool, "email": bool}}``."""

    @extend_schema(tags=["notifications"], responses={200: dict})
    def get(self, request):
        return Response(services.preferences_for(request.user))

    @extend_schema(tags=["notifications"], request=dict, responses={200: dict})
    def put(self, request):
        return Response(services.preferences_set(actor=request.user, choices=request.data))
