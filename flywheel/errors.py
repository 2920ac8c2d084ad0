from core.errors import ApplicationError, NotFound


class TtxNotConfigured(ApplicationError):
    code = "ttx_not_configured"
    status = 503
    default_message = "The TTX token is not configured on this platform, so holder figures are unavailable."


class CompetitorNotFound(NotFound):
    code = "competitor_not_found"
    default_message = "No fee data for this competitor."
