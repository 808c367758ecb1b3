"""The OpenAPI document at /schema/openapi.json tells the truth about errors, the upload and auth.

(tests/e2e/test_openapi_fuzz.py holds the running API to it; these pin what it must say.)
"""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import AsyncTestClient

PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
EITHER_CREDENTIAL = [{"bearerToken": []}, {"sessionCookie": []}]
PUBLIC = {"health", "ready", "register", "login", "logout", "downloadSignedFile"}


@pytest.fixture
async def document(client: AsyncTestClient[Any]) -> dict[str, Any]:
    r = await client.get("/schema/openapi.json")
    assert r.status_code == 200
    return r.json()


def operations(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every operation by its operationId."""
    return {op["operationId"]: op for path in document["paths"].values() for op in path.values()}


def test_every_error_of_the_api_is_documented_as_problem_json(document: dict[str, Any]) -> None:
    errors = {
        (name, status): response.get("content")
        for name, op in operations(document).items()
        for status, response in op["responses"].items()
        # /ready answers its checks; a signed file link answers browsers with error pages.
        if status >= "400" and name not in ("ready", "downloadSignedFile")
    }
    assert errors
    assert {key: content for key, content in errors.items() if content != PROBLEM} == {}


def test_the_problem_schema_is_rfc_9457_with_field_errors(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert sorted(schemas["Problem"]["required"]) == ["detail", "status", "title", "type"]
    assert schemas["FieldError"]["required"] == ["field", "message"]


def test_the_upload_documents_its_multipart_body_with_a_binary_file_field(document: dict[str, Any]) -> None:
    body = operations(document)["uploadVideo"]["requestBody"]
    assert body["required"] is True
    assert body["content"] == {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {"type": "string", "format": "binary", "description": "the video file"}
                },
            }
        }
    }


@pytest.mark.parametrize("operation", ["uploadVideo", "requestExport", "createToken", "register"])
def test_bodies_document_unreadable_too_large_and_contract_errors(
    document: dict[str, Any], operation: str
) -> None:
    assert {"400", "413", "422"} <= set(operations(document)[operation]["responses"])


def test_operations_that_need_a_user_take_a_bearer_token_or_the_session_cookie(
    document: dict[str, Any],
) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API token (`POST /api/tokens`) as `Authorization: Bearer <token>`.",
    }
    assert (schemes["sessionCookie"]["type"], schemes["sessionCookie"]["in"]) == ("apiKey", "cookie")
    security = {name: op.get("security") for name, op in operations(document).items()}
    assert {name for name, required in security.items() if required is None} == PUBLIC
    assert {name: required for name, required in security.items() if name not in PUBLIC} == dict.fromkeys(
        set(security) - PUBLIC, EITHER_CREDENTIAL
    )
    assert "security" not in document
