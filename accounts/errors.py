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


class InvalidToken(ApplicationError):
    code = "invalid_token"
    status = 401
    default_message = "The token is invalid, expired or revoked."
