"""The app's request class: a JSON body the decoder cannot read is always a 400.

Litestar turns msgspec's `DecodeError` into a 400, but msgspec raises two other errors for bodies
that are just as malformed: `RecursionError` for nesting deeper than the interpreter's recursion
limit (a 100k-deep array) and `UnicodeDecodeError` for bytes that are not UTF-8. Raised as
`SerializationException`, they take Litestar's own path to a 400. Mapping them here, where the body
is decoded, rather than app-wide keeps a RecursionError from a real bug a 500.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.exceptions import SerializationException


class AppRequest(Request[Any, Any, Any]):
    async def json(self) -> Any:
        try:
            return await super().json()
        except RecursionError as exc:
            raise SerializationException("JSON is malformed: nested too deeply") from exc
        except UnicodeDecodeError as exc:
            raise SerializationException("JSON is malformed: not valid UTF-8") from exc
