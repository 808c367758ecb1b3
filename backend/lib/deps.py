"""App-wide dependency types: injected objects that are not request data, so never validated."""

from __future__ import annotations

from typing import Annotated

from litestar.params import Dependency

from backend.lib.settings import Settings
from gpu_worker.store import Store

SettingsDep = Annotated[Settings, Dependency(skip_validation=True)]
StoreDep = Annotated[Store, Dependency(skip_validation=True)]
