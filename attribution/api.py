"""GET /costs: cost, calls and tokens grouped by an attribute, service, model, section or provider."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from attribution.export import breakdown_csv, breakdown_json
from attribution.params import cost_query_parse
from attribution.selectors import CostQueryError, cost_breakdown, cost_query_check
from dashboard.views import today_utc
from projects.access import request_project_id


class JsonOnlyNegotiation(DefaultContentNegotiation):
    """`format=` is our parameter (json|csv), not DRF's renderer override: the
    view writes CSV itself, and every error is JSON."""

    def select_renderer(self, request: Any, renderers: Any, format_suffix: Any = None) -> tuple[Any, str]:
        return renderers[0], renderers[0].media_type


def bad_request(exc: CostQueryError) -> Response:
    return Response({"error": exc.message, exc.param: [exc.message]}, status=400)


class CostsView(APIView):
    content_negotiation_class = JsonOnlyNegotiation

    @extend_schema(
        summary="Costs grouped by an attribute, service, model, section or provider (from rollups)",
        parameters=[
            OpenApiParameter(
                "group_by", OpenApiTypes.STR, description="attribute:<key> | service | model | section | provider"
            ),
            OpenApiParameter("from", OpenApiTypes.DATE, description="first UTC day (default: to - 6 days)"),
            OpenApiParameter("to", OpenApiTypes.DATE, description="last UTC day, included (default: today)"),
            OpenApiParameter("days", OpenApiTypes.INT, description="instead of from: the days up to `to`"),
            OpenApiParameter("section", OpenApiTypes.STR),
            OpenApiParameter("model", OpenApiTypes.STR),
            OpenApiParameter("service", OpenApiTypes.STR),
            OpenApiParameter("provider", OpenApiTypes.STR),
            OpenApiParameter("attribute", OpenApiTypes.STR, description="key:value"),
            OpenApiParameter("limit", OpenApiTypes.INT, description="top N rows, 1 to 1000 (default 10)"),
            OpenApiParameter("format", OpenApiTypes.STR, enum=["json", "csv"]),
            OpenApiParameter("project", OpenApiTypes.STR, description="session users: which project"),
        ],
        responses=inline_serializer(
            "CostBreakdown",
            {
                "group_by": serializers.CharField(),
                "from": serializers.DateField(),
                "to": serializers.DateField(),
                "rows": serializers.ListField(child=serializers.DictField()),
                "other": serializers.DictField(),
                "none": serializers.DictField(allow_null=True),
                "totals": serializers.DictField(),
                "daily": serializers.ListField(child=serializers.DictField()),
            },
        ),
    )
    def get(self, request: Request) -> Response | HttpResponse:
        project_id = request_project_id(request)
        params = request.query_params
        fmt = params.get("format") or "json"
        if fmt not in ("json", "csv"):
            return bad_request(CostQueryError("format", "format must be json or csv"))
        try:
            query = cost_query_parse(params=params, today=today_utc())
            cost_query_check(project_id=project_id, query=query)
        except CostQueryError as exc:
            return bad_request(exc)
        breakdown = cost_breakdown(project_id=project_id, query=query)
        if fmt == "csv":
            response = HttpResponse(breakdown_csv(breakdown), content_type="text/csv; charset=utf-8")
            name = f"costs-{query.group_label.replace(':', '-')}-{query.start}-{query.end}.csv"
            response["Content-Disposition"] = f'attachment; filename="{_safe_filename(name)}"'
            return response
        return Response(breakdown_json(breakdown))


def _safe_filename(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
