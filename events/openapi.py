"""Document POST /events in the OpenAPI schema.

The ingest view is a plain Django view (the hot path skips DRF), so
drf-spectacular cannot see it.  This hook adds it, with the request schema
generated from the same msgspec types that validate the wire format, so the
documentation cannot drift from the validation.
"""

from __future__ import annotations

from typing import Any

import msgspec

from events.schema import Batch, EventIn

RESULT = {
    "type": "object",
    "properties": {
        "accepted": {"type": "integer"},
        "duplicates": {"type": "integer"},
        "rejected": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "index": {"type": "integer"},
                    "event_id": {"type": ["string", "null"]},
                    "errors": {
                        "type": "object",
                        "additionalProperties": {"type": "array", "items": {"type": "string"}},
                    },
                },
            },
        },
    },
}
ERROR = {"type": "object", "properties": {"error": {"type": "string"}}}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def add_ingest_path(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    (batch_schema,), components = msgspec.json.schema_components([Batch], ref_template="#/components/schemas/{name}")
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(components)
    schemes = result["components"].setdefault("securitySchemes", {})
    schemes["ApiKey"] = {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <api key>"}
    event_ref = {"$ref": f"#/components/schemas/{EventIn.__name__}"}
    result.setdefault("paths", {})["/events"] = {
        "post": {
            "operationId": "events_ingest",
            "summary": "Ingest a batch of events (at most 1000 events and 5 MiB; gzip accepted)",
            "tags": ["events"],
            "security": [{"ApiKey": []}],
            "requestBody": {
                "required": True,
                "content": _json({"oneOf": [batch_schema, {"type": "array", "items": event_ref}]}),
            },
            "responses": {
                "200": {"description": "all events stored or duplicates", "content": _json(RESULT)},
                "207": {"description": "some events rejected; the valid ones are stored", "content": _json(RESULT)},
                "400": {
                    "description": "not JSON, not a list of objects, or every event rejected",
                    "content": _json({"oneOf": [RESULT, ERROR]}),
                },
                "401": {"description": "no valid API key", "content": _json(ERROR)},
                "413": {"description": "over 1000 events or 5 MiB; nothing stored", "content": _json(ERROR)},
            },
        }
    }
    return result
