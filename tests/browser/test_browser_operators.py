"""The operators' page: an operator (granted with `vexport grant-operator`) sees the deployment's live
worker; anyone else gets the 404 page."""

from __future__ import annotations

import asyncio

import pytest
from click.testing import CliRunner
from playwright.async_api import Page, expect

from backend.__main__ import main as vexport_main
from tests.browser.conftest import LiveService, sign_up
from tests.e2e.conftest import worker_env

pytestmark = pytest.mark.slow


async def test_an_operator_sees_the_live_worker(
    page: Page, service: LiveService, tmp_path_factory: pytest.TempPathFactory
) -> None:
    email = await sign_up(page)
    # As an operator's shell runs it: the deployment's settings in the environment.
    home = tmp_path_factory.mktemp("operator-cli")
    env = worker_env(service.settings, home / "data", home / "scratch")
    result = await asyncio.to_thread(
        CliRunner().invoke, vexport_main, ["grant-operator", email], env=env, catch_exceptions=False
    )
    assert (result.exit_code, result.stdout.strip()) == (0, f"{email} is now an operator")

    response = await page.goto("/operators")
    assert response is not None
    assert response.status == 200
    row = page.locator("#workers tbody tr").filter(has_text=f"pid {service.worker.pid} ")
    await expect(row).to_have_count(1)
    await expect(row).to_contain_text(service.queue_name)
    await expect(row.get_by_role("button", name="Drain")).to_be_enabled()


async def test_anyone_else_gets_the_404_page(page: Page) -> None:
    await sign_up(page)
    response = await page.goto("/operators")
    assert response is not None
    assert response.status == 404
    await expect(page.get_by_role("heading", level=1)).to_have_text("Not found")
