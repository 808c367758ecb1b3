"""htmx and its websocket extension are vendored (the UI works with no internet): the committed copies
are the versions frontend/package.json pins, the app serves them, every page loads them, and the
CSRF header every htmx request sends is one the server accepts."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from litestar.testing import AsyncTestClient

from tests.fixtures.app import register

FRONTEND = Path(__file__).resolve().parents[3] / "frontend"
VENDOR = FRONTEND / "static" / "vendor"


def pinned() -> dict[str, str]:
    return json.loads((FRONTEND / "package.json").read_text())["dependencies"]


def banner(path: Path) -> str:
    """The first line vendor.sh writes: the package and the version it copied."""
    return path.read_text().splitlines()[0]


def expected_banner(package: str, version: str) -> str:
    return f"/* {package} {version}, vendored from npm by frontend/vendor.sh */"


def test_package_json_pins_exact_compatible_versions() -> None:
    pins = pinned()
    assert set(pins) == {"htmx.org", "htmx-ext-ws"}
    assert all(re.fullmatch(r"\d+\.\d+\.\d+", version) for version in pins.values())
    assert pins["htmx.org"].startswith("2.")
    assert pins["htmx-ext-ws"].startswith("2.0.")


def test_the_lock_file_resolves_exactly_the_pins() -> None:
    lock = json.loads((FRONTEND / "package-lock.json").read_text())
    pins = pinned()
    assert lock["packages"][""]["dependencies"] == pins
    for name, version in pins.items():
        assert lock["packages"][f"node_modules/{name}"]["version"] == version


def test_the_vendored_htmx_is_the_pinned_version() -> None:
    version = pinned()["htmx.org"]
    source = (VENDOR / "htmx.min.js").read_text()
    assert re.findall(r'version:"([^"]+)"', source) == [version]
    assert (
        banner(VENDOR / "htmx.min.js") == f"/* htmx.org {version}, vendored from npm by frontend/vendor.sh */"
    )


def test_the_vendored_ws_extension_is_the_pinned_version() -> None:
    version = pinned()["htmx-ext-ws"]
    assert banner(VENDOR / "ws.js") == expected_banner("htmx-ext-ws", version)
    assert "htmx.defineExtension('ws'" in (VENDOR / "ws.js").read_text()


async def test_the_app_serves_the_vendored_files(client: AsyncTestClient[Any]) -> None:
    for name in ("htmx.min.js", "ws.js"):
        r = await client.get(f"/static/vendor/{name}")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/javascript")
        assert r.content == (VENDOR / name).read_bytes()


async def test_every_page_loads_htmx_then_the_ws_extension_deferred(client: AsyncTestClient[Any]) -> None:
    html = (await client.get("/login")).text
    scripts = re.findall(r'<script src="([^"]+)" defer></script>', html)
    assert scripts[:2] == ["/static/vendor/htmx.min.js", "/static/vendor/ws.js"]
    assert '<link rel="stylesheet" href="/static/exports.css">' in html


async def test_the_csrf_header_htmx_sends_is_accepted(client: AsyncTestClient[Any]) -> None:
    await register(client, "htmx@example.com")
    page = (await client.get("/tokens")).text
    match = re.search(r"<body hx-headers='([^']+)'>", page)
    assert match, "the body carries hx-headers"
    headers = json.loads(match.group(1))
    assert list(headers) == ["X-CSRFToken"]
    r = await client.post("/tokens", data={"name": "from htmx"}, headers={**headers, "HX-Request": "true"})
    assert r.status_code == 201
    assert 'id="new-token"' in r.text
