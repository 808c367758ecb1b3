"""Waiting until the page reaches a state, under the app's Content-Security-Policy.

Playwright's `wait_for_function` compiles its predicate with `eval` inside the page whenever it has
to poll, which the app's CSP (no 'unsafe-eval') refuses: the wait fails, and the violation lands in
the console the browser tests check. `page.evaluate` runs through DevTools, outside the page's CSP,
so the predicate is asked from here until it holds.
"""

from __future__ import annotations

import asyncio
from typing import Any

from playwright.async_api import Page

POLL_S = 0.05


async def until(page: Page, predicate: str, arg: Any = None, *, timeout_ms: float) -> None:
    """Until the JavaScript `predicate` (an expression, or a function of `arg`) is truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_ms / 1000
    while not await page.evaluate(predicate, arg):
        if loop.time() > deadline:
            raise TimeoutError(f"not true within {timeout_ms / 1000:g} s: {predicate}")
        await asyncio.sleep(POLL_S)
