from core.errors import ApplicationError


class UsernameTaken(ApplicationError):
    code = "username_taken"
    default_message = "This username is already taken."


class WeakPassword(ApplicationError):
    code = "weak_password"
    default_message = "The password is too weak."


class InvalidCredentials(ApplicationError):
    code = "invalid_credentials"
    status = 401
    default_message = "Wrong username or password."


class LoginThrottled(ApplicationError):
    code = "throttled"
    status = 429
    default_message = "Too many failed logins; try again later."


class RegistrationThrottled(ApplicationError):
    code = "throttled"
    status = 429
    default_message = "Too many registrations from this address; try again later."


class PasswordResetThrottled(ApplicationError):
    code = "throttled"
    status = 429
    default_message = "Too many password reset requests; try again later."


class PasswordResetUnavailable(ApplicationError):
    code = "password_reset_unavailable"
    status = 403  # not a fault of the server's (no 5xx alert): a feature this platform turned off
    default_message = "Password reset by mail is not set up here: ask support to reset your password."


class InvalidToken(ApplicationError):
    code = "invalid_token"
    status = 401
    default_message = "The token is invalid, expired or revoked."


class InvalidApiKey(ApplicationError):
    code = "invalid_api_key"
    status = 401
    default_message = "The API key is unknown or was deleted."


class InvalidSignature(ApplicationError):
    code = "invalid_signature"
    status = 401
    default_message = "The request signature does not match (X-API-SIGNATURE, X-API-TIMESTAMP)."


class SignatureExpired(ApplicationError):
    code = "signature_expired"
    status = 401
    default_message = "X-API-TIMESTAMP is more than 5 seconds from the server's clock (GET /api/time)."


class ReplayedRequest(ApplicationError):
    code = "replayed_request"
    status = 401
    default_message = "This signature was already used; sign each request anew."


class ApiKeyReadOnly(ApplicationError):
    code = "api_key_read_only"
    status = 403
    default_message = "This API key has no trade permission."


class ApiKeyNotFound(ApplicationError):
    code = "api_key_not_found"
    status = 404
    default_message = "No such API key."


class TooManyApiKeys(ApplicationError):
    code = "too_many_api_keys"
    default_message = "You have reached the maximum number of API keys; delete one first."


class ApiKeyFormResent(ApplicationError):
    code = "api_key_form_resent"
    status = 409
    default_message = "This form was already sent: its key is in the list (its secret was shown once)."


class WrongPassword(ApplicationError):
    # Pages only (a password asked again): "Wrong username or password." where no username
    # was asked read as a fault of the page's.
    code = "wrong_password"
    status = 401
    default_message = "Wrong password."


class SessionExpired(ApplicationError):
    """A page form posted without a valid session: logged out meanwhile, or its CSRF token
    no longer matches (a login elsewhere rotated it)."""

    code = "session_expired"
    status = 401
    default_message = "Your session expired, log in again."
