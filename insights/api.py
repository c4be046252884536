"""GET /insights/daily (SPEC §4): the latest computation of the project."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from events.selectors import iso
from insights.selectors import insight_as_dict, insight_computation_latest, insight_list_latest
from projects.access import request_project_id


class InsightsDailyView(APIView):
    @extend_schema(
        summary="The latest insights: the last 24 h against the 7 days before",
        parameters=[
            OpenApiParameter("limit", OpenApiTypes.INT, description="at most this many insights (1 to 500)"),
            OpenApiParameter("project", OpenApiTypes.STR, description="session users: which project"),
        ],
        responses=inline_serializer(
            "InsightsDaily",
            {
                "window_start": serializers.DateTimeField(allow_null=True),
                "window_end": serializers.DateTimeField(allow_null=True),
                "generated_at": serializers.DateTimeField(allow_null=True),
                "insights": serializers.ListField(child=serializers.DictField()),
            },
        ),
    )
    def get(self, request: Request) -> Response:
        project_id = request_project_id(request)
        limit = None
        if request.query_params.get("limit"):
            try:
                limit = int(request.query_params["limit"])
            except ValueError:
                raise ValidationError({"limit": ["an integer from 1 to 500"]}) from None
            if not 1 <= limit <= 500:
                raise ValidationError({"limit": ["an integer from 1 to 500"]})
        computation = insight_computation_latest(project_id=project_id)
        insights = insight_list_latest(project_id=project_id, limit=limit) if computation else []
        return Response(
            {
                "window_start": iso(computation.window_start) if computation else None,
                "window_end": iso(computation.window_end) if computation else None,
                "generated_at": iso(computation.generated_at) if computation else None,
                "insights": [insight_as_dict(i) for i in insights],
            }
        )
