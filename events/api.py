"""The read API over runs (SPEC §4), thin views over events.selectors."""

from __future__ import annotations

import datetime as dt
import math

from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from events.selectors import (
    BadCursor,
    RunFilters,
    cursor_decode,
    run_get,
    run_list,
    run_root_sections,
    run_search_parse,
    run_summary,
    run_tree_detail,
)
from projects.access import request_project_id

# What both databases store and Python's datetime can shift by a day or an offset.
FIRST_YEAR, LAST_YEAR = 1, 9998
MOMENT_HELP = (
    "an ISO 8601 date or date-time (UTC unless it has an offset) from 0001-01-01 to 9998-12-31, "
    "e.g. 2026-11-26 or 2026-11-26T09:00:00Z"
)


def moment_parse(value: str) -> dt.datetime | None:
    """`value` as an aware UTC datetime inside the calendar, or None: a bad
    calendar date, an offset past ±23:59 or an instant outside 0001-9998
    (in UTC) is not one."""
    try:
        moment = parse_datetime(value)
        if moment is None:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        moment = moment.astimezone(dt.UTC)
    except (ValueError, OverflowError):
        return None
    return moment if FIRST_YEAR <= moment.year <= LAST_YEAR else None


def cursor_valid(cursor: str) -> bool:
    """A cursor this API could have returned: its time inside the calendar and its id a 64-bit row id."""
    try:
        when, ident = cursor_decode(cursor)
        when = when.astimezone(dt.UTC)
    except (BadCursor, OverflowError):
        return False
    return 0 < ident < 2**63 and FIRST_YEAR <= when.year <= LAST_YEAR


def amount_parse(value: str) -> float | None:
    """A finite amount of dollars, at least 0, or None."""
    try:
        amount = float(value)
    except ValueError:
        return None
    return amount if math.isfinite(amount) and amount >= 0 else None


def _moment(value: str | None, name: str) -> dt.datetime | None:
    if not value:
        return None
    moment = moment_parse(value)
    if moment is None:
        raise ValidationError({name: [MOMENT_HELP]})
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
            OpenApiParameter("model", OpenApiTypes.STR, description="runs with a call to this model"),
            OpenApiParameter(
                "q",
                OpenApiTypes.STR,
                description="a search: `id:PREFIX`, `model:NAME`, `section:PART`, `KEY:VALUE` (an attribute) "
                "or a bare word; a search no index serves tests 5,000 runs a page, so a page may hold fewer "
                "runs than `limit` and still have a `next`",
            ),
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
            min_cost = amount_parse(params["min_cost"])
            if min_cost is None:
                raise ValidationError({"min_cost": ["a number of dollars, 0 or more"]})
        cursor = params.get("cursor") or None
        if cursor is not None and not cursor_valid(cursor):
            raise ValidationError({"cursor": ["cursor is not one this API returned"]})
        filters = RunFilters(
            section=params.get("section") or None,
            service=params.get("service") or None,
            status=status,
            since=_moment(params.get("since"), "since"),
            until=_moment(params.get("until"), "until"),
            min_cost=min_cost,
            model=params.get("model") or None,
            search=run_search_parse(params.get("q") or ""),
        )
        try:
            runs, next_cursor = run_list(project_id=project_id, filters=filters, limit=limit, cursor=cursor)
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
