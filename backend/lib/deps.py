"""App-wide dependency types: injected objects that are not request data, so never validated."""

from __future__ import annotations

from litestar.di import NamedDependency
from litestar.params import SkipValidation

from backend.lib.auth import CurrentUser
from backend.lib.settings import Settings
from gpu_worker.store import Store

CurrentUserDep = NamedDependency[SkipValidation[CurrentUser]]
SettingsDep = NamedDependency[SkipValidation[Settings]]
StoreDep = NamedDependency[SkipValidation[Store]]
