from advanced_alchemy.extensions.litestar.providers import create_service_provider

from backend.domain.videos.services import VideoService

provide_video_service = create_service_provider(VideoService)
