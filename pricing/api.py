from __future__ import annotations

import json

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import APIException, NotFound, PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from pricing.selectors import DEFAULT_PROVIDERS, price_as_dict, price_list_current, price_resolve
from pricing.services import PriceVersionExists, PricingError, price_rows_add
from projects.access import may_edit_global_prices, may_edit_pricing, request_project_id
from projects.auth import KeyPrincipal
from projects.models import Project


class Conflict(APIException):
    status_code = 409
    default_detail = "That price version exists already."
    default_code = "conflict"


PriceListSerializer = inline_serializer("PriceList", {"prices": serializers.ListField(child=serializers.DictField())})


def _project_or_none(request: Request) -> int | None:
    try:
        return request_project_id(request)
    except NotFound:
        return None


def _providers(request: Request) -> set[str]:
    raw = request.query_params.get("provider") or ""
    if raw in ("all", "*"):
        return {"*"}
    asked = {p.strip().lower() for p in raw.split(",") if p.strip()}
    return asked or set(DEFAULT_PROVIDERS)


def _listing(request: Request) -> Response:
    project_id = _project_or_none(request)
    rows = price_list_current(project_id=project_id, providers=_providers(request))
    return Response({"prices": [price_as_dict(p) for p in rows]})


class PricingView(APIView):
    @extend_schema(
        summary="The price in effect now for every model, and where it comes from",
        parameters=[
            OpenApiParameter(
                "provider",
                OpenApiTypes.STR,
                description="comma-separated providers of the maintained source to list, or `all` "
                "(default: openai, azure, pinecone); database rows are always listed",
            ),
            OpenApiParameter("project", OpenApiTypes.STR, description="session users: which project"),
        ],
        responses=PriceListSerializer,
    )
    def get(self, request: Request) -> Response:
        return _listing(request)

    @extend_schema(
        summary="Add price versions: an admin API key adds its own project's; a user with the pricing "
        "permissions adds global ones (or, with `project`, that project's). Existing versions are never edited.",
        request=PriceListSerializer,
        responses=PriceListSerializer,
    )
    def put(self, request: Request) -> Response:
        if not may_edit_pricing(request):
            raise PermissionDenied(
                "Only an admin API key (for its project) or a user with the permissions to add and change "
                "prices may change them."
            )
        data = request.data
        items = data.get("prices") if isinstance(data, dict) else data
        if not isinstance(items, list) or not items:
            raise ValidationError({"prices": ["a non-empty list of prices"]})
        project_id = self._target_project(request, data.get("project") if isinstance(data, dict) else None)
        try:
            price_rows_add(items=items, project_id=project_id)
        except PriceVersionExists as exc:
            raise Conflict(str(exc)) from None
        except PricingError as exc:
            try:
                detail = json.loads(str(exc))
            except ValueError:
                detail = {"prices": [str(exc)]}
            raise ValidationError(detail) from None
        return _listing(request)

    @staticmethod
    def _target_project(request: Request, name: object) -> int | None:
        """None: global rows.  An API key writes its own project's rows only
        (prices are global to every project, keys belong to one)."""
        user = request.user
        if name is not None and (not isinstance(name, str) or not name):
            raise ValidationError({"project": ["a project name"]})
        if isinstance(user, KeyPrincipal):
            project = Project.objects.filter(id=user.project_id).first()
            if project is None or (name is not None and project.name != name):
                raise PermissionDenied("An API key may set prices for its own project only.")
            return project.id
        if name is None:
            if not may_edit_global_prices(user):
                raise PermissionDenied("Global prices need the permissions to add and change prices.")
            return None
        project_id = Project.objects.filter(name=name).values_list("id", flat=True).first()
        if project_id is None:
            raise ValidationError({"project": [f"no project named {name!r}"]})
        return project_id


class PricingResolveView(APIView):
    @extend_schema(
        summary="The price a call with this model would get now, with its source and the matched id",
        parameters=[
            OpenApiParameter("model", OpenApiTypes.STR, required=True),
            OpenApiParameter("provider", OpenApiTypes.STR, description="openai, azure, pinecone, …"),
            OpenApiParameter("service_tier", OpenApiTypes.STR, description="flex, priority, default, …"),
            OpenApiParameter("processing", OpenApiTypes.STR, description="batch"),
            OpenApiParameter("host", OpenApiTypes.STR, description="the API host, when no provider is given"),
            OpenApiParameter("project", OpenApiTypes.STR, description="session users: which project"),
        ],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        model = (params.get("model") or "").strip()
        if not model or len(model) > 128 or "\x00" in model:
            raise ValidationError({"model": ["required, a model id of at most 128 characters"]})
        for key in ("provider", "service_tier", "processing", "host"):
            value = params.get(key) or ""
            if len(value) > 255 or "\x00" in value:
                raise ValidationError({key: ["at most 255 characters"]})
        return Response(
            price_resolve(
                provider=params.get("provider") or None,
                model=model,
                project_id=_project_or_none(request),
                service_tier=params.get("service_tier") or None,
                processing=params.get("processing") or None,
                host=params.get("host") or None,
            )
        )
