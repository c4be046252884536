from __future__ import annotations

import json

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from pricing.selectors import price_as_dict, price_list_current
from pricing.services import PricingError, price_rows_upsert
from projects.access import may_edit_pricing

PriceListSerializer = inline_serializer("PriceList", {"prices": serializers.ListField(child=serializers.DictField())})


class PricingView(APIView):
    @extend_schema(summary="The price in effect now for every model", responses=PriceListSerializer)
    def get(self, request: Request) -> Response:
        return Response({"prices": [price_as_dict(p) for p in price_list_current()]})

    @extend_schema(
        summary="Add price versions (staff session or admin API key)",
        request=PriceListSerializer,
        responses=PriceListSerializer,
    )
    def put(self, request: Request) -> Response:
        if not may_edit_pricing(request):
            raise PermissionDenied("Only staff or an admin API key may change prices.")
        data = request.data
        items = data.get("prices") if isinstance(data, dict) else data
        if not isinstance(items, list) or not items:
            raise ValidationError({"prices": ["a non-empty list of prices"]})
        try:
            price_rows_upsert(items=items)
        except PricingError as exc:
            try:
                detail = json.loads(str(exc))
            except ValueError:
                detail = {"prices": [str(exc)]}
            raise ValidationError(detail) from None
        return Response({"prices": [price_as_dict(p) for p in price_list_current()]})
