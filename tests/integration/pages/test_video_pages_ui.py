"""The web UI's accounts and videos pages through the test client: thumbnails made at upload, the
player's source with byte ranges, the video page's DOM contract, deleting from the list, API tokens,
and the 404 page for other users' ids."""

from __future__ import annotations

import io
import re
from fractions import Fraction
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import av
import httpx
import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.lib.settings import Settings
from backend.server.asgi import create_app
from gpu_worker.store import StoreSettings
from tests.fixtures.app import csrf_headers, make_settings, register
from tests.media import make_video, read_frame_index

ROW_ID = re.compile(r'<tr id="video-([0-9a-f-]{36})">')


class Elements(HTMLParser):
    """Every start tag of a page with its attributes, and the text of each <h1>."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.h1: list[str] = []
        self._in_h1 = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_h1 = tag == "h1"
        if self._in_h1:
            self.h1.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "h1":
            self._in_h1 = False

    def handle_data(self, data: str) -> None:
        if self._in_h1:
            self.h1[-1] += data

    def by_id(self, ident: str) -> tuple[str, dict[str, str | None]]:
        found = [(tag, attrs) for tag, attrs in self.tags if attrs.get("id") == ident]
        assert len(found) == 1, f"exactly one #{ident}"
        return found[0]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s, 25 fps, 320x180 H.264 + AAC: the thumbnail (at 0.2 s) shows frame 5."""
    return make_video(tmp_path_factory.mktemp("ui-media") / "beach day.mp4", seconds=2, fps=25).path


@pytest.fixture(scope="module")
def broken_tail(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 s whose start decodes (so the probe accepts it) but whose video packets from 0.5 s on are
    undecodable (each one's first NAL length is absurd): no frame exists at the thumbnail time, 1 s."""
    path = make_video(
        tmp_path_factory.mktemp("ui-media") / "broken tail.mp4",
        seconds=10,
        width=160,
        height=96,
        gop=5,
        audio=False,
    ).path
    with av.open(str(path)) as container:
        spots = [
            p.pos
            for p in container.demux(video=0)
            if p.size and p.pts is not None and p.pts * p.time_base >= Fraction(1, 2)
        ]
    data = bytearray(path.read_bytes())
    for pos in spots:
        data[pos : pos + 4] = b"\xff\xff\xff\xff"
    path.write_bytes(bytes(data))
    return path


async def upload_on_page(c: httpx.AsyncClient, path: Path) -> str:
    """Upload the way the page's script does; answers the new video's id (from the row it returns)."""
    r = await c.post(
        "/videos/upload",
        files={"file": (path.name, path.read_bytes(), "video/mp4")},
        headers={**await csrf_headers(c), "accept": "application/json"},
    )
    assert r.status_code == 201, r.text
    match = ROW_ID.search(r.text)
    assert match, r.text
    return match.group(1)


def stored_files(settings: Settings) -> list[str]:
    root = settings.core.storage.local_root
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def decode_jpeg(data: bytes) -> av.VideoFrame:
    with av.open(io.BytesIO(data)) as container:
        assert container.format.name == "jpeg_pipe"
        return next(container.decode(video=0))


def assert_not_found_page(r: httpx.Response) -> None:
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")
    assert Elements(r.text).h1 == ["Not found"]


# Thumbnails ----------------------------------------------------------------------------------


async def test_an_upload_gets_a_320_px_jpeg_thumbnail_of_the_frame_at_a_tenth(
    client: AsyncTestClient[Any], clip: Path
) -> None:
    await register(client, "thumb@example.com")
    video_id = await upload_on_page(client, clip)
    r = await client.get(f"/videos/{video_id}/thumbnail")
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/jpeg"
    assert r.headers["cache-control"] == "private, max-age=3600"
    frame = decode_jpeg(r.content)
    assert (frame.width, frame.height) == (320, 180)
    assert read_frame_index(frame) == 5


async def test_the_list_shows_the_thumbnail_with_its_alt_text(
    client: AsyncTestClient[Any], clip: Path
) -> None:
    await register(client, "list@example.com")
    video_id = await upload_on_page(client, clip)
    page = Elements((await client.get("/videos")).text)
    images = [attrs for tag, attrs in page.tags if tag == "img"]
    assert images == [
        {
            "src": f"/videos/{video_id}/thumbnail",
            "alt": "Thumbnail of beach day.mp4",
            "width": "160",
            "height": "90",
            "loading": "lazy",
        }
    ]


async def test_another_users_thumbnail_is_the_404_page(make_client: Any, clip: Path) -> None:
    owner, other = await make_client(), await make_client()
    await register(owner, "owner@example.com")
    await register(other, "other@example.com")
    video_id = await upload_on_page(owner, clip)
    assert_not_found_page(await other.get(f"/videos/{video_id}/thumbnail"))


async def test_a_video_whose_thumbnail_frame_cannot_be_decoded_is_still_accepted(
    client: AsyncTestClient[Any], settings: Settings, broken_tail: Path
) -> None:
    await register(client, "broken@example.com")
    video_id = await upload_on_page(client, broken_tail)
    assert [key.split("/")[0] for key in stored_files(settings)] == ["videos"]
    assert_not_found_page(await client.get(f"/videos/{video_id}/thumbnail"))
    row = (await client.get("/videos")).text
    assert 'alt="Thumbnail of broken tail.mp4"' in row
    assert f'src="/videos/{video_id}/thumbnail"' not in row


# The player's source ---------------------------------------------------------------------------


async def test_the_source_is_the_uploaded_file_with_ranges_announced(
    client: AsyncTestClient[Any], clip: Path
) -> None:
    await register(client, "source@example.com")
    video_id = await upload_on_page(client, clip)
    r = await client.get(f"/videos/{video_id}/source")
    assert r.status_code == 200
    assert r.content == clip.read_bytes()
    assert r.headers["accept-ranges"] == "bytes"
    assert r.headers["content-type"] == "video/mp4"


async def test_a_range_request_on_the_source_answers_206_with_exactly_those_bytes(
    client: AsyncTestClient[Any], clip: Path
) -> None:
    await register(client, "range@example.com")
    video_id = await upload_on_page(client, clip)
    data = clip.read_bytes()
    r = await client.get(f"/videos/{video_id}/source", headers={"range": "bytes=1000-1999"})
    assert r.status_code == 206
    assert r.content == data[1000:2000]
    assert r.headers["content-range"] == f"bytes 1000-1999/{len(data)}"
    assert r.headers["content-length"] == "1000"


async def test_another_users_source_is_the_404_page(make_client: Any, clip: Path) -> None:
    owner, other = await make_client(), await make_client()
    await register(owner, "owner@example.com")
    await register(other, "other@example.com")
    video_id = await upload_on_page(owner, clip)
    assert_not_found_page(await other.get(f"/videos/{video_id}/source"))


async def test_on_s3_the_source_redirects_to_a_presigned_url_of_the_file(
    tmp_path: Path,
    database_url: str,
    redis_url: str,
    s3_store_settings: StoreSettings,
    db_engine: AsyncEngine,
    clip: Path,
) -> None:
    settings = make_settings(tmp_path, database_url, redis_url, s3_store_settings)
    async with AsyncTestClient(app=create_app(settings)) as c:
        await register(c, "s3@example.com")
        video_id = await upload_on_page(c, clip)
        r = await c.get(f"/videos/{video_id}/source", follow_redirects=False)
    assert r.status_code == 302
    location = r.headers["location"]
    assert location.startswith(f"{s3_store_settings.endpoint_url}/{s3_store_settings.bucket}/videos/")
    async with httpx.AsyncClient() as s3:
        assert (await s3.get(location)).content == clip.read_bytes()


# The video page ----------------------------------------------------------------------------------


async def test_the_video_page_renders_the_editor_contract(client: AsyncTestClient[Any], clip: Path) -> None:
    await register(client, "page@example.com")
    video_id = await upload_on_page(client, clip)
    r = await client.get(f"/videos/{video_id}")
    assert r.status_code == 200
    page = Elements(r.text)
    assert page.by_id("player") == (
        "video",
        {
            "id": "player",
            "controls": None,
            "preload": "metadata",
            "playsinline": None,
            "src": f"/videos/{video_id}/source",
            "poster": f"/videos/{video_id}/thumbnail",
        },
    )
    assert page.by_id("segments")[0] == "ol"
    assert page.by_id("segments-total")[0] == "output"
    assert page.by_id("segments-field") == (
        "input",
        {"type": "hidden", "id": "segments-field", "name": "segments", "form": "export-form", "value": "[]"},
    )
    assert page.by_id("open-export")[0] == "button"
    assert page.by_id("exports") == (
        "section",
        {"id": "exports", "aria-label": "Exports of this video", "data-video-id": video_id},
    )
    assert page.by_id("mark-in")[1]["aria-keyshortcuts"] == "I"
    assert page.by_id("mark-out")[1]["aria-keyshortcuts"] == "O"
    assert page.by_id("editor")[1]["data-video-id"] == video_id


async def test_the_video_page_shows_this_videos_exports_newest_first(
    client: AsyncTestClient[Any], clip: Path
) -> None:
    await register(client, "history@example.com")
    video_id, other_id = await upload_on_page(client, clip), await upload_on_page(client, clip)
    body = {"resolution": "360p", "segments": [{"start": "0.5", "end": "1.5"}]}
    made = []
    for target in (video_id, other_id, video_id):
        r = await client.post(f"/api/videos/{target}/export", json=body, headers=await csrf_headers(client))
        assert r.status_code == 202, r.text
        made.append(r.json()["id"])
    html = (await client.get(f"/videos/{video_id}")).text
    cards = re.findall(r'<article id="export-([0-9a-f-]{36})"', html)
    assert cards == [made[2], made[0]]


async def test_the_video_page_names_the_container_and_frame_rate_for_people(
    client: AsyncTestClient[Any], clip: Path
) -> None:
    await register(client, "meta@example.com")
    video_id = await upload_on_page(client, clip)
    html = (await client.get(f"/videos/{video_id}")).text
    assert "<dt>Container</dt><dd>MP4/MOV</dd>" in html
    assert "<dt>Frame rate</dt><dd>25 fps</dd>" in html
    assert "mov,mp4" not in html


async def test_another_users_video_page_is_the_404_page_with_navigation(make_client: Any, clip: Path) -> None:
    owner, other = await make_client(), await make_client()
    await register(owner, "owner@example.com")
    await register(other, "other@example.com")
    video_id = await upload_on_page(owner, clip)
    r = await other.get(f"/videos/{video_id}")
    assert_not_found_page(r)
    assert 'href="/tokens"' in r.text


# Deleting from the list ----------------------------------------------------------------------


async def test_deleting_from_the_list_removes_the_video_its_file_and_its_thumbnail(
    client: AsyncTestClient[Any], settings: Settings, clip: Path
) -> None:
    await register(client, "delete@example.com")
    keep = await upload_on_page(client, clip)
    gone = await upload_on_page(client, clip)
    assert len(stored_files(settings)) == 4
    r = await client.delete(f"/videos/{gone}", headers=await csrf_headers(client))
    assert r.status_code == 200
    assert r.text.strip().endswith('<span id="video-count" hx-swap-oob="true">1</span>')
    assert (await client.get(f"/api/videos/{gone}")).status_code == 404
    assert sorted(key.split("/")[0] for key in stored_files(settings)) == ["thumbnails", "videos"]
    page = (await client.get("/videos")).text
    assert f'id="video-{gone}"' not in page
    assert f'id="video-{keep}"' in page


async def test_every_row_has_a_confirmed_delete_button(client: AsyncTestClient[Any], clip: Path) -> None:
    await register(client, "confirm@example.com")
    video_id = await upload_on_page(client, clip)
    page = Elements((await client.get("/videos")).text)
    (attrs,) = [a for tag, a in page.tags if tag == "button" and a.get("hx-delete")]
    assert attrs["hx-delete"] == f"/videos/{video_id}"
    assert attrs["hx-target"] == "closest tr"
    assert attrs["hx-confirm"] == "Delete “beach day.mp4” and all its exports? This cannot be undone."


# API tokens -------------------------------------------------------------------------------------


def form_token(html: str) -> str:
    match = re.search(r'name="_csrf_token" value="([^"]+)"', html)
    assert match, "the form carries a CSRF token"
    return match.group(1)


async def create_token_on_page(c: httpx.AsyncClient, name: str) -> httpx.Response:
    page = await c.get("/tokens")
    return await c.post("/tokens", data={"name": name, "_csrf_token": form_token(page.text)})


async def test_a_new_token_is_shown_once_and_works_on_the_api(make_client: Any) -> None:
    browser = await make_client()
    await register(browser, "tokens@example.com")
    r = await create_token_on_page(browser, "nightly script")
    assert r.status_code == 201
    match = re.search(r'<output id="new-token" for="token-name">(vx_[^<]+)</output>', r.text)
    assert match, r.text
    token = match.group(1)
    script = await make_client()
    me = await script.get("/api/auth/me", headers={"authorization": f"Bearer {token}"})
    assert me.json()["email"] == "tokens@example.com"
    later = (await browser.get("/tokens")).text
    assert token not in later
    assert 'id="new-token"' not in later
    assert "nightly script" in later
    assert f"<code>{token[:10]}…</code>" in later


async def test_revoking_a_token_removes_it_from_the_page_and_the_api(make_client: Any) -> None:
    browser = await make_client()
    await register(browser, "revoke@example.com")
    token = re.findall(r"vx_[A-Za-z0-9_-]+", (await create_token_on_page(browser, "old laptop")).text)[0]
    token_id = re.findall(r'<tr id="token-([0-9a-f-]{36})">', (await browser.get("/tokens")).text)[0]
    page = await browser.get("/tokens")
    r = await browser.post(f"/tokens/{token_id}/revoke", data={"_csrf_token": form_token(page.text)})
    assert r.status_code == 200
    assert f'id="token-{token_id}"' not in r.text
    assert "No tokens yet." in r.text
    script = await make_client()
    assert (await script.get("/api/auth/me", headers={"authorization": f"Bearer {token}"})).status_code == 401


async def test_a_token_without_a_name_is_refused_next_to_the_field(client: AsyncTestClient[Any]) -> None:
    await register(client, "noname@example.com")
    r = await create_token_on_page(client, "   ")
    assert r.status_code == 422
    page = Elements(r.text)
    assert page.by_id("token-name")[1]["aria-invalid"] == "true"
    assert page.by_id("token-name")[1]["aria-describedby"] == "error-name"
    assert "Give the token a name of 1 to 100 characters." in r.text
    assert 'id="new-token"' not in r.text


# Layout: assets, navigation, sign-up ---------------------------------------------------------------


NAV = ["/videos", "/exports", "/tokens", "/operators"]


def nav_links(html: str) -> list[str | None]:
    return [
        attrs.get("href") for tag, attrs in Elements(html).tags if tag == "a" and attrs.get("href") in NAV
    ]


async def test_the_nav_shows_operators_only_to_operators(make_client: Any, db_engine: AsyncEngine) -> None:
    editor, operator = await make_client(), await make_client()
    await register(editor, "editor@example.com")
    await register(operator, "ops@example.com")
    async with db_engine.begin() as conn:
        await conn.execute(text("UPDATE users SET is_operator = true WHERE email = 'ops@example.com'"))
    assert nav_links((await editor.get("/videos")).text) == ["/videos", "/exports", "/tokens"]
    assert nav_links((await operator.get("/videos")).text) == NAV


async def test_the_sign_up_page_has_labelled_fields_and_a_sign_up_button(
    client: AsyncTestClient[Any],
) -> None:
    html = (await client.get("/signup")).text
    assert '<label for="email">Email</label>' in html
    assert '<label for="password">Password</label>' in html
    assert '<button type="submit" class="primary">Sign up</button>' in html
    assert 'action="/signup"' in html
