"""All tables; code imports them as `from backend.db import models as m`."""

from advanced_alchemy.base import orm_registry

from ._export import Export, ExportSegments
from ._token import ApiToken
from ._user import User
from ._video import Video, VideoStatus

metadata = orm_registry.metadata

__all__ = ["ApiToken", "Export", "ExportSegments", "User", "Video", "VideoStatus", "metadata"]
