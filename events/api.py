"""The read API over runs (SPEC §4), thin views over events.selectors."""

from __future__ import annotations

import datetime as dt

from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from events.selectors import BadCursor, RunFilters, run_get, run_list, run_root_sections, run_summary, run_tree_detail
from projects.access import request_project_id


def _moment(value: str | None, name: str) -> dt.datetime | None:
    if not value:
        return None
    moment = parse_datetime(value)
    if moment is None:
        raise ValidationError({name: ["an ISO 8601 date-time"]})
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment


class RunsLatestView(APIView):
    @extend_schema(
        summary="Runs, newest first",
        parameters=[
            OpenApiParameter("limit", OpenApiTypes.INT, description="1 to 200, default 50"),
            OpenApiParameter("cursor", OpenApiTypes.STR, description="the `next` of the previous page"),
            OpenApiParameter("section", OpenApiTypes.STR, description="runs that contain this section label"),
            OpenApiParameter("service", OpenApiTypes.STR),
            OpenApiParameter("status", OpenApiTypes.STR, enum=["ok", "error"]),
            OpenApiParameter("since", OpenApiTypes.DATETIME),
            OpenApiParameter("until", OpenApiTypes.DATETIME),
            OpenApiParameter("min_cost", OpenApiTypes.FLOAT),
            OpenApiParameter("project", OpenApiTypes.STR, description="session users: which project"),
        ],
        responses=inline_serializer(
            "RunList",
            {
                "runs": serializers.ListField(child=serializers.DictField()),
                "next": serializers.CharField(allow_null=True),
            },
        ),
    )
    def get(self, request: Request) -> Response:
        project_id = request_project_id(request)
        params = request.query_params
        try:
            limit = int(params.get("limit", 50))
        except ValueError:
            raise ValidationError({"limit": ["an integer from 1 to 200"]}) from None
        if not 1 <= limit <= 200:
            raise ValidationError({"limit": ["an integer from 1 to 200"]})
        status = params.get("status") or None
        if status not in (None, "ok", "error"):
            raise ValidationError({"status": ["ok or error"]})
        min_cost = None
        if params.get("min_cost"):
            try:
                min_cost = float(params["min_cost"])
            except ValueError:
                raise ValidationError({"min_cost": ["a number"]}) from None
        filters = RunFilters(
            section=params.get("section") or None,
            service=params.get("service") or None,
            status=status,
            since=_moment(params.get("since"), "since"),
            until=_moment(params.get("until"), "until"),
            min_cost=min_cost,
        )
        try:
            runs, next_cursor = run_list(
                project_id=project_id, filters=filters, limit=limit, cursor=params.get("cursor") or None
            )
        except BadCursor as exc:
            raise ValidationError({"cursor": [str(exc)]}) from None
        roots = run_root_sections(project_id=project_id, run_ids=[r.run_id for r in runs])
        return Response({"runs": [run_summary(r, roots[r.run_id]) for r in runs], "next": next_cursor})


class RunDetailView(APIView):
    @extend_schema(
        summary="One run with its section tree and rolled-up costs",
        parameters=[OpenApiParameter("project", OpenApiTypes.STR, description="session users: which project")],
        responses=inline_serializer(
            "RunDetail",
            {
                "run_id": serializers.CharField(),
                "tree": serializers.ListField(child=serializers.DictField()),
                "truncated": serializers.BooleanField(),
                "tree_calls": serializers.IntegerField(),
                "omitted_calls": serializers.IntegerField(),
                "omitted_sections": serializers.IntegerField(),
            },
        ),
    )
    def get(self, request: Request, run_id: str) -> Response:
        project_id = request_project_id(request)
        run = run_get(project_id=project_id, run_id=run_id)
        if run is None:
            raise NotFound("No such run.")
        roots = run_root_sections(project_id=project_id, run_ids=[run.run_id])
        body = run_summary(run, roots[run.run_id])
        body.update(run_tree_detail(run))
        return Response(body)
