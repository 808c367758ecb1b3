from advanced_alchemy.extensions.litestar.providers import create_service_provider

from backend.domain.accounts.services import ApiTokenService, UserService

provide_user_service = create_service_provider(UserService)
provide_token_service = create_service_provider(ApiTokenService)
