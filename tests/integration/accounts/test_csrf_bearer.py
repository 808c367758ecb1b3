"""CSRF is skipped only for a request a bearer token authenticated: an `Authorization` header that
authenticates nobody must not switch off the check for the session cookie riding along with it.

On a live server, so that the header's raw bytes reach the app as a browser or script sends them
(the test client re-encodes header values as UTF-8).
"""

from __future__ import annotations

import pytest

from backend.lib.settings import Settings
from tests.fixtures.live import Account


@pytest.fixture
def live_settings(settings: Settings) -> Settings:
    return settings


async def tokens_of(owner: Account) -> list[str]:
    return [t["name"] for t in (await owner.http.get("/api/tokens")).json()]


async def test_a_blank_bearer_beside_the_session_cookie_still_needs_the_csrf_token(owner: Account) -> None:
    blank = b"Bearer \xa0"  # a no-break space: Python's str.strip() leaves no token
    r = await owner.http.post("/api/tokens", json={"name": "forged"}, headers={"authorization": blank})
    assert r.status_code == 403
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"] == "CSRF token verification failed"
    assert await tokens_of(owner) == ["tests"]


async def test_an_unknown_bearer_beside_the_session_cookie_is_401_not_the_cookie_user(owner: Account) -> None:
    r = await owner.http.post(
        "/api/tokens", json={"name": "forged"}, headers={"authorization": "Bearer vx_" + "a" * 43}
    )
    assert r.status_code == 401
    assert r.json()["detail"] == "invalid or revoked API token"
    assert await tokens_of(owner) == ["tests"]
