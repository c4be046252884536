"""The budgets API (SPEC §4 v2): CRUD and GET /budgets/status, thin views.

Who writes: an admin API key of the project (`create_api_key --admin`), or a
logged-in owner of the project; any key of the project, and its members,
read.  Budgets decide alerts and, in hard mode, may make the SDK refuse
calls: the same keys that ship with an application to send events should
not be able to lift a limit.
"""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework import status as http
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from budgets.inputs import InputError, budget_input_of, budget_input_parse
from budgets.models import Budget
from budgets.selectors import (
    budget_as_dict,
    budget_list,
    budget_status_get,
    iso,
    may_edit_budgets,
    status_as_dict,
)
from budgets.services import budget_create, budget_delete, budget_update
from projects.access import request_project_id
from projects.models import Project

PROJECT_PARAM = OpenApiParameter("project", OpenApiTypes.STR, description="session users: which project")
SCOPE = inline_serializer(
    "BudgetScope",
    {
        "section": serializers.CharField(allow_null=True),
        "model": serializers.CharField(allow_null=True),
        "service": serializers.CharField(allow_null=True),
        "attribute": inline_serializer(
            "BudgetScopeAttribute", {"key": serializers.CharField(), "value": serializers.CharField()}, allow_null=True
        ),
    },
)
BUDGET_FIELDS = {
    "id": serializers.IntegerField(),
    "name": serializers.CharField(),
    "amount_usd": serializers.FloatField(),
    "period": serializers.ChoiceField(choices=["day", "week", "month"]),
    "scope": SCOPE,
    "thresholds": serializers.ListField(child=serializers.IntegerField()),
    "mode": serializers.ChoiceField(choices=["soft", "hard"]),
    "hard": serializers.BooleanField(),
    "channels": serializers.ListField(child=serializers.IntegerField()),
    "created_at": serializers.DateTimeField(),
    "updated_at": serializers.DateTimeField(),
}
BUDGET = inline_serializer("Budget", BUDGET_FIELDS)
BUDGET_LIST = inline_serializer("BudgetList", {"budgets": inline_serializer("BudgetInList", BUDGET_FIELDS, many=True)})
STATUS = inline_serializer(
    "BudgetsStatus",
    {
        "budgets": inline_serializer(
            "BudgetStatus",
            {
                "id": serializers.IntegerField(),
                "name": serializers.CharField(),
                "mode": serializers.ChoiceField(choices=["soft", "hard"]),
                "hard": serializers.BooleanField(),
                "period": serializers.ChoiceField(choices=["day", "week", "month"]),
                "period_start": serializers.DateTimeField(),
                "period_end": serializers.DateTimeField(),
                "scope": SCOPE,
                "amount_usd": serializers.FloatField(),
                "spent_usd": serializers.FloatField(),
                "percent": serializers.FloatField(),
                "forecast_usd": serializers.FloatField(),
                "state": serializers.ChoiceField(choices=["ok", "warning", "exceeded"]),
            },
            many=True,
        ),
        "generated_at": serializers.DateTimeField(),
    },
)


def _writer(request: Request, project_id: int) -> None:
    if not may_edit_budgets(user=request.user, project_id=project_id):
        raise PermissionDenied("Changing budgets needs an admin API key of the project or a project owner's login.")


def _budget(project_id: int, budget_id: int) -> Budget:
    budget = Budget.objects.filter(project_id=project_id, id=budget_id).select_related("project").first()
    if budget is None:
        raise NotFound("No such budget.")
    return budget


class BudgetListView(APIView):
    @extend_schema(
        summary="The project's budgets", parameters=[PROJECT_PARAM], responses=BUDGET_LIST, operation_id="budgets_list"
    )
    def get(self, request: Request) -> Response:
        project_id = request_project_id(request)
        return Response({"budgets": [budget_as_dict(b) for b in budget_list(project_id=project_id)]})

    @extend_schema(
        summary="Create a budget (admin key or project owner)",
        parameters=[PROJECT_PARAM],
        request=OpenApiTypes.OBJECT,
        responses={201: BUDGET},
    )
    def post(self, request: Request) -> Response:
        project_id = request_project_id(request)
        _writer(request, project_id)
        try:
            data = budget_input_parse(request.data)
            budget = budget_create(project=Project.objects.get(id=project_id), data=data, user=request.user)
        except InputError as exc:
            raise ValidationError(exc.errors) from None
        return Response(budget_as_dict(budget), status=http.HTTP_201_CREATED)


class BudgetDetailView(APIView):
    @extend_schema(summary="One budget", parameters=[PROJECT_PARAM], responses=BUDGET)
    def get(self, request: Request, budget_id: int) -> Response:
        return Response(budget_as_dict(_budget(request_project_id(request), budget_id)))

    @extend_schema(
        summary="Change a budget (fields not sent are kept; a new scope or period recounts its spend)",
        parameters=[PROJECT_PARAM],
        request=OpenApiTypes.OBJECT,
        responses=BUDGET,
    )
    def put(self, request: Request, budget_id: int) -> Response:
        project_id = request_project_id(request)
        budget = _budget(project_id, budget_id)
        _writer(request, project_id)
        try:
            base = budget_input_of(budget, [c.id for c in budget.channels.all()])
            budget = budget_update(budget=budget, data=budget_input_parse(request.data, base=base))
        except InputError as exc:
            raise ValidationError(exc.errors) from None
        return Response(budget_as_dict(budget))

    @extend_schema(summary="Delete a budget", parameters=[PROJECT_PARAM], responses={204: None})
    def delete(self, request: Request, budget_id: int) -> Response:
        project_id = request_project_id(request)
        budget = _budget(project_id, budget_id)
        _writer(request, project_id)
        budget_delete(budget=budget)
        return Response(status=http.HTTP_204_NO_CONTENT)


class BudgetStatusView(APIView):
    @extend_schema(
        summary="Every budget's period, spend, percent, forecast and state (the SDK guard polls this)",
        parameters=[PROJECT_PARAM],
        responses=STATUS,
    )
    def get(self, request: Request) -> Response:
        project = Project.objects.get(id=request_project_id(request))
        now = timezone.now()
        return Response(
            {
                "budgets": [
                    status_as_dict(budget_status_get(budget=b, tz_name=project.timezone, at=now))
                    for b in budget_list(project_id=project.id)
                ],
                "generated_at": iso(now),
            }
        )
