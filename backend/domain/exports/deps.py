from advanced_alchemy.extensions.litestar.providers import create_service_provider

from backend.domain.exports.services import ExportService

provide_export_service = create_service_provider(ExportService)
