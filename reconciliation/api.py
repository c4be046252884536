"""GET /reconciliation?from=&to= : billed beside observed per day and model (own project only)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from dashboard.views import today_utc
from projects.access import request_project_id
from reconciliation.selectors import reconciliation_report
from reconciliation.views import RangeError, date_range_parse, figures_as_dict


class ReconciliationView(APIView):
    @extend_schema(
        summary="What OpenAI billed beside what llmobserve observed, per UTC day and model",
        parameters=[
            OpenApiParameter("from", OpenApiTypes.DATE, description="first day (UTC), default 13 days before `to`"),
            OpenApiParameter("to", OpenApiTypes.DATE, description="last day (UTC), default today; at most 366 days"),
            OpenApiParameter("project", OpenApiTypes.STR, description="session users: which project"),
        ],
        responses=inline_serializer(
            "Reconciliation",
            {
                "from": serializers.DateField(),
                "to": serializers.DateField(),
                "openai_project_ids": serializers.ListField(child=serializers.CharField()),
                "rows": serializers.ListField(child=serializers.DictField()),
                "totals": serializers.DictField(),
            },
        ),
    )
    def get(self, request: Request) -> Response:
        project_id = request_project_id(request)
        try:
            start, end = date_range_parse(
                request.query_params.get("from"), request.query_params.get("to"), today=today_utc()
            )
        except RangeError as exc:
            raise ValidationError({"detail": str(exc)}) from None
        report = reconciliation_report(project_id=project_id, start=start, end=end)
        totals = figures_as_dict(report.totals)
        totals.pop("date")
        totals.pop("model")
        return Response(
            {
                "from": start.isoformat(),
                "to": end.isoformat(),
                "openai_project_ids": report.links,
                "imported_days": report.imported_days,
                "rows": [figures_as_dict(f) for f in report.rows],
                "totals": totals,
            }
        )
