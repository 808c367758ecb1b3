"""What POST /api/videos/{id}/export accepts is what the worker renders: a request body that the
API side parses and validates is stored (JSONB) in a form the worker decodes to the identical
request, and storing that again changes nothing."""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import assume, example, given
from hypothesis import strategies as st
from litestar.exceptions import ClientException

from backend.domain.exports.schemas import ExportCreate
from backend.domain.exports.services import request_json, to_render_request
from gpu_worker.contract import ContractError, RenderRequest, decode_request

# A segment time as clients send it: decimal-like strings and JSON numbers, short and long.
JSON_SECONDS = st.one_of(
    st.from_regex(r"\A[0-9]{1,10}(\.[0-9]{0,12})?(/[0-9]{1,11})?\Z"),
    st.decimals(min_value=0, max_value=10**9, places=9).map(str),
    st.decimals(min_value=0, max_value=10**9, places=9).map(float),
    st.integers(min_value=0, max_value=2 * 10**9),
    st.floats(min_value=0, max_value=2e9),
)
LAST = "999999999.999999999"
"""The latest time the API accepts: the generated time goes in as an end and as a start."""


def api_side(body: bytes) -> RenderRequest:
    """What the API does with a body: decode it as the endpoint does, parse and validate it;
    a refused body discards the example."""
    try:
        render = to_render_request(msgspec.json.decode(body, type=ExportCreate))
        render.validate()
    except (msgspec.ValidationError, ClientException, ContractError):
        assume(False)
        raise
    return render


def stored(render: RenderRequest) -> dict[str, Any]:
    """The request as the worker reads it back from the row's JSONB column."""
    return msgspec.json.decode(msgspec.json.encode(request_json(render)))


@given(JSON_SECONDS)
@example(1.3333333333333333)
@example(1.0000000001)
@example(5e-324)
@example("999999999.5/7")
def test_an_accepted_request_reaches_the_worker_unchanged(seconds: Any) -> None:
    segments = [{"start": 0, "end": seconds}, {"start": seconds, "end": LAST}]
    render = api_side(msgspec.json.encode({"segments": segments}))
    worker = decode_request(stored(render))
    assert worker == render
    assert request_json(worker) == request_json(render)
