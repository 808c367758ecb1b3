"""htmx, its websocket extension and Swagger UI are vendored (the UI and /schema/swagger work with no
internet): the committed copies are the versions frontend/package.json pins, the app serves them,
every page loads them, and the CSRF header every htmx request sends is one the server accepts."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
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
    assert set(pins) == {"htmx.org", "htmx-ext-ws", "swagger-ui-dist"}
    assert all(re.fullmatch(r"\d+\.\d+\.\d+", version) for version in pins.values())
    assert pins["htmx.org"].startswith("2.")
    assert pins["htmx-ext-ws"].startswith("2.0.")
    assert pins["swagger-ui-dist"].startswith("5.")


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


def test_the_vendored_swagger_ui_is_the_pinned_version() -> None:
    version = pinned()["swagger-ui-dist"]
    bundle = (VENDOR / "swagger-ui-bundle.js").read_text()
    assert re.findall(r'PACKAGE_VERSION:"([^"]+)"', bundle) == [version]
    for name in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert banner(VENDOR / name) == expected_banner("swagger-ui-dist", version)


async def test_the_app_serves_the_vendored_files(client: AsyncTestClient[Any]) -> None:
    for name in ("htmx.min.js", "ws.js", "swagger-ui-bundle.js"):
        r = await client.get(f"/static/vendor/{name}")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/javascript")
        assert r.content == (VENDOR / name).read_bytes()
    r = await client.get("/static/vendor/swagger-ui.css")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/css")
    assert r.content == (VENDOR / "swagger-ui.css").read_bytes()


class Assets(HTMLParser):
    """What a page makes the browser load or run: every src/href, and inline scripts and styles."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline: list[str] = []
        self._open: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]
        if tag == "style" or (tag == "script" and "src" not in found):
            self._open = tag
        self.inline += [f"{tag} {name}" for name, _ in attrs if name == "style" or name.startswith("on")]

    def handle_data(self, data: str) -> None:
        if self._open and data.strip():
            self.inline.append(f"{self._open}: {data.strip()[:60]}")

    def handle_endtag(self, tag: str) -> None:
        self._open = None


async def test_the_swagger_page_loads_only_the_apps_own_files_and_runs_no_inline_code(
    client: AsyncTestClient[Any],
) -> None:
    r = await client.get("/schema/swagger")
    assert r.status_code == 200
    page = Assets()
    page.feed(r.text)
    assert page.urls == [
        "/static/vendor/swagger-ui.css",
        "/static/vendor/swagger-ui-bundle.js",
        "/static/swagger.js",
    ]
    assert page.inline == []
    assert 'data-spec-url="/schema/openapi.json"' in r.text


async def test_the_swagger_page_starter_is_served(client: AsyncTestClient[Any]) -> None:
    r = await client.get("/static/swagger.js")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/javascript")
    assert "SwaggerUIBundle({" in r.text


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
