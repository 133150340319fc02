"""API for environments: the live registry and its history per system, rollback, rebase and
staged-rollout stages per change. Thin: one selector or service per call."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from . import env_selectors, env_services, selectors
from . import env_serializers as es
from . import serializers as s
from .apis import AdminWrites, _ChangeOperation, change_detail, errors, parse


class _SystemRead(GenericAPIView):
    serializer_class = es.EnvironmentLiveSerializer
    filter_backends = []
    pagination_class = None

    def system(self):
        return get_object_or_404(selectors.visible_systems(self.request.user), pk=self.kwargs["pk"])


class AdminEditsEnvironments(AdminWrites):
    message = "Only admins configure environments."


def _one(system, name) -> dict:
    row = next((r for r in env_selectors.registry(system) if r["name"] == name), None)
    if row is None:
        raise NotFound("No such environment on this system.")
    return es.EnvironmentLiveSerializer(row).data


class SystemEnvironmentsApi(_SystemRead):
    permission_classes = [IsAuthenticated, AdminEditsEnvironments]

    @extend_schema(
        tags=["environments"],
        summary="The live registry: what runs in each environment, since when, through what",
        responses={200: es.EnvironmentLiveSerializer(many=True), **errors(401, 404)},
    )
    def get(self, request, pk):
        return Response(
            es.EnvironmentLiveSerializer(env_selectors.registry(self.system()), many=True).data
        )

    @extend_schema(
        tags=["environments"],
        summary="Add an environment to a system's promotion path (admin)",
        description="400 for malformed or overlapping blackout windows, an unknown time zone "
        "or approvals below the criticality floor at the end of the path; 409 `exists` or "
        "`order_taken`. Audited as `environment.saved`.",
        request=es.EnvironmentWriteSerializer,
        responses={201: es.EnvironmentLiveSerializer, **errors(400, 401, 403, 404, 409)},
    )
    def post(self, request, pk):
        system = self.system()
        data = parse(es.EnvironmentWriteSerializer, request.data, request)
        env = env_services.environment_save(
            actor=request.user, system=system, mode="create", **data
        )
        return Response(_one(system, env.name), status=status.HTTP_201_CREATED)


class EnvironmentDetailApi(_SystemRead):
    permission_classes = [IsAuthenticated, AdminEditsEnvironments]

    @extend_schema(
        tags=["environments"],
        summary="One environment: its settings and what is live there",
        responses={200: es.EnvironmentLiveSerializer, **errors(401, 404)},
    )
    def get(self, request, pk, env):
        return Response(_one(self.system(), env))

    @extend_schema(
        tags=["environments"],
        summary="Edit an environment: order, approvals, blackout windows, staged rollout (admin)",
        description="Only the fields sent change; the name is fixed (the history names it). "
        "400/409 as for creation, and 400 for an unknown environment. Audited.",
        request=es.EnvironmentUpdateSerializer,
        responses={200: es.EnvironmentLiveSerializer, **errors(400, 401, 403, 404, 409)},
    )
    def patch(self, request, pk, env):
        system = self.system()
        data = parse(es.EnvironmentUpdateSerializer, request.data, request)
        env_services.environment_save(
            actor=request.user, system=system, name=env, mode="update", **data
        )
        return Response(_one(system, env))

    @extend_schema(
        tags=["environments"],
        summary="Delete an environment nothing was ever deployed to (admin)",
        description="409 `deployed_here` once anything was deployed there (its history "
        "stays), 409 `last_environment` for the only one. Audited as `environment.deleted`.",
        request=None,
        responses={204: None, **errors(400, 401, 403, 404, 409)},
    )
    def delete(self, request, pk, env):
        env_services.environment_delete(actor=request.user, system=self.system(), name=env)
        return Response(status=status.HTTP_204_NO_CONTENT)


class EnvironmentHistoryApi(_SystemRead):
    serializer_class = es.HistoryEntrySerializer

    @extend_schema(
        tags=["environments"],
        summary="Every deployment to one environment, oldest first",
        responses={200: es.HistoryEntrySerializer(many=True), **errors(401, 404)},
    )
    def get(self, request, pk, env):
        environment = env_selectors.environment_named(self.system(), env)
        if environment is None:
            raise NotFound("No such environment on this system.")
        rows = env_selectors.history(environment)
        return Response(es.HistoryEntrySerializer(rows, many=True).data)


class ChangeRollbackApi(_ChangeOperation):
    serializer_class = es.RollbackSerializer

    @extend_schema(
        tags=["environments"],
        summary="File the rollback of a deployed change (base = live, proposed = before)",
        description="409 `not_deployed` or `not_live` when there is nothing of it to undo.",
        request=es.RollbackSerializer,
        responses={201: s.ChangeDetailSerializer, **errors(400, 401, 403, 404, 409)},
    )
    def post(self, request, pk):
        data = parse(es.RollbackSerializer, request.data, request)
        rollback = env_services.change_request_rollback(
            actor=request.user, change_request=self.change(), emergency=data["emergency"]
        )
        return Response(change_detail(request, rollback.pk), status=status.HTTP_201_CREATED)


class ChangeRebaseApi(_ChangeOperation):
    serializer_class = es.RebaseSerializer

    @extend_schema(
        tags=["environments"],
        summary="Preview the three-way merge of a stale change onto the live version",
        parameters=[OpenApiParameter("environment", OpenApiTypes.STR, required=False)],
        responses={200: es.RebasePreviewSerializer, **errors(400, 401, 404, 409)},
    )
    def get(self, request, pk):
        preview = env_services.rebase_preview(
            self.change(), request.query_params.get("environment")
        )
        preview["onto_version"] = preview.pop("onto").version
        return Response(es.RebasePreviewSerializer(preview).data)

    @extend_schema(
        tags=["environments"],
        summary="Rebase a stale change onto the live version (new proposed version)",
        description="409 `not_stale` when the base is live; 409 `merge_conflict` with the "
        "marked-up text in `fields` until the engineer sends a resolution without markers.",
        request=es.RebaseSerializer,
        responses={200: s.ChangeDetailSerializer, **errors(400, 401, 403, 404, 409)},
    )
    def post(self, request, pk):
        data = parse(es.RebaseSerializer, request.data, request)
        env_services.change_request_rebase(actor=request.user, change_request=self.change(), **data)
        return Response(change_detail(request, pk))


class ChangeStagesApi(_ChangeOperation):
    serializer_class = es.StagesSerializer

    @extend_schema(
        tags=["environments"],
        summary="Declare the rollout stages of a change (signed with its content)",
        request=es.StagesSerializer,
        responses={200: s.ChangeDetailSerializer, **errors(400, 401, 403, 404, 409)},
    )
    def put(self, request, pk):
        data = parse(es.StagesSerializer, request.data, request)
        env_services.change_request_set_stages(
            actor=request.user, change_request=self.change(), stages=data["stages"]
        )
        return Response(change_detail(request, pk))


class ChangeStageApi(_ChangeOperation):
    serializer_class = es.StageStartSerializer

    def _args(self, request):
        try:
            return request.query_params["environment"], int(request.query_params["stage"])
        except (KeyError, ValueError):
            from core.errors import ValidationFailed

            raise ValidationFailed("environment and stage (a number) are required.") from None

    @extend_schema(
        tags=["environments"],
        summary='"May stage N start?" for the deployment tool',
        parameters=[
            OpenApiParameter("environment", OpenApiTypes.STR, required=True),
            OpenApiParameter("stage", OpenApiTypes.INT, required=True),
        ],
        responses={200: es.StageGateSerializer, **errors(400, 401, 404)},
    )
    def get(self, request, pk):
        environment, number = self._args(request)
        change = self.change()
        reasons = env_services.stage_gate(change, environment, number)
        percent = change.stages[number - 1] if 1 <= number <= len(change.stages) else None
        body = {"may_start": not reasons, "reasons": reasons, "environment": environment,
                "stage": number, "percent": percent}  # fmt: skip
        return Response(es.StageGateSerializer(body).data)

    @extend_schema(
        tags=["environments"],
        summary='"Stage N started": record it (stage 1 is the deploy, through the full gate)',
        request=es.StageStartSerializer,
        responses={201: es.StageSerializer, **errors(400, 401, 403, 404, 409)},
    )
    def post(self, request, pk):
        data = parse(es.StageStartSerializer, request.data, request)
        stage = env_services.stage_start(
            actor=request.user,
            change_request=self.change(),
            environment=data["environment"],
            number=data["stage"],
        )
        return Response(es.StageSerializer(stage).data, status=status.HTTP_201_CREATED)
