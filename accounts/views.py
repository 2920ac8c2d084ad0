"""Session pages: log in, register, log out. Credentials, throttling and password
rules live in accounts.services; these views only move data in and out of forms."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, cast
from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, logout, update_session_auth_hash
from django.contrib.auth.models import User
from django.contrib.auth.views import PasswordResetConfirmView, redirect_to_login
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_safe
from django_htmx.http import HttpResponseClientRedirect

from accounts.errors import ApiKeyNotFound
from accounts.forms import (
    ApiKeyCreateForm,
    LoginForm,
    PasswordChangeForm,
    PasswordResetRequestForm,
    RegisterForm,
    ServiceForm,
)
from accounts.models import PERMISSION_READ, PERMISSION_TRADE
from accounts.selectors import api_key_list_for_user
from accounts.services import (
    api_key_create_from_form,
    api_key_delete,
    client_address,
    user_authenticate,
    user_password_change,
    user_password_confirm,
    user_password_reset_done,
    user_password_reset_request,
    user_register,
    user_register_rate_check,
)
from core.errors import ApplicationError
from core.text import path_id

View = Callable[..., HttpResponse]


def page_login_required(view: View) -> View:
    """login_required for pages and their htmx requests: an htmx request whose session
    has expired makes the whole page go to the login form instead of swapping it in."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.user.is_authenticated:
            return view(request, *args, **kwargs)
        if getattr(request, "htmx", False):
            current = request.htmx.current_url_abs_path or reverse("home")  # type: ignore[attr-defined]
            return HttpResponseClientRedirect(f"{reverse(settings.LOGIN_URL)}?{urlencode({'next': current}, safe='/')}")
        return redirect_to_login(_back_after_login(request))

    return wrapper


def form_address(page: str, *, keep: tuple[str, ...] = ()) -> Callable[[View], View]:
    """require_POST for an address that only takes a form's post (a cancel, a key's delete, the
    logout). Opened as a page (GET or HEAD: the address bar, the `next` of a login from a page
    shown there, such as the expired form's 403) it redirects to `page`, given the URL
    arguments named in `keep`, where it was an empty 405; other methods are still 405."""

    def decorator(view: View) -> View:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method in ("GET", "HEAD"):
                return redirect(page, **{name: kwargs[name] for name in keep})
            if request.method != "POST":
                return HttpResponseNotAllowed(["POST"])
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


def _back_after_login(request: HttpRequest) -> str:
    """Where the login sends a trader back: the page asked for; for a form posted (a cancel, a
    key's delete) the page it was on, as its `next` or this site's Referer says, else its
    address as before. A POST-only address is no page: opened after the login, it was an
    empty 405."""
    if request.method in ("GET", "HEAD"):
        return request.get_full_path()
    referer = request.headers.get("Referer", "")
    if url_has_allowed_host_and_scheme(referer, allowed_hosts={request.get_host()}, require_https=False):
        parts = urlsplit(referer)
        referer = parts.path + (f"?{parts.query}" if parts.query else "")
    else:
        referer = ""
    return safe_next(request, referer or request.get_full_path())


def form_page(request: HttpRequest, template: str, *, form: ServiceForm, context: dict[str, Any]) -> HttpResponse:
    """A page with a service form: the status of the error it shows, and Retry-After when
    the error says when to try again (a throttle, a lockout)."""
    response = render(request, template, context, status=form.error_status)
    if form.error_retry_after is not None:
        response["Retry-After"] = str(form.error_retry_after)
    return response


def page_user(request: HttpRequest) -> User:
    """The logged-in trader of a view behind page_login_required."""
    user = request.user
    if not isinstance(user, User) or not user.is_authenticated:
        raise PermissionError("page_login_required must guard this view")
    return user


def safe_next(request: HttpRequest, default: str) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    allowed = url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return target if target and allowed else default


@sensitive_post_parameters("password")
@csrf_protect
@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def login_page(request: HttpRequest) -> HttpResponse:
    next_url = safe_next(request, reverse(settings.LOGIN_REDIRECT_URL))
    form = LoginForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = user_authenticate(
                request=request, username=form.cleaned_data["username"], password=form.cleaned_data["password"]
            )
        except ApplicationError as exc:
            form.add_application_error(exc)
        else:
            login(request, cast(User, user))
            return HttpResponseRedirect(next_url)
    return form_page(request, "accounts/login.html", form=form, context={"form": form, "next": next_url})


@sensitive_post_parameters("password", "password_confirm")
@csrf_protect
@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def register_page(request: HttpRequest) -> HttpResponse:
    next_url = safe_next(request, reverse("home"))  # back to the page that offered the registration
    form = RegisterForm(request.POST or None)
    if request.method == "POST":
        try:  # every attempt counts, as at POST /api/auth/register
            user_register_rate_check(address=client_address(request=request))
        except ApplicationError as exc:
            form.add_application_error(exc)
    if request.method == "POST" and form.error_code is None and form.is_valid():
        try:
            user = user_register(
                username=form.cleaned_data["username"],
                password=form.cleaned_data["password"],
                email=form.cleaned_data["email"],
            )
        except ApplicationError as exc:
            form.add_application_error(exc)
        else:
            login(request, cast(User, user), backend="django.contrib.auth.backends.ModelBackend")
            messages.success(request, f"Welcome, {user.get_username()}. Your account is ready.")
            return HttpResponseRedirect(next_url)
    return form_page(request, "accounts/register.html", form=form, context={"form": form, "next": next_url})


@form_address("home")  # a GET never logs out (another site could make the browser send one)
def logout_page(request: HttpRequest) -> HttpResponse:
    logout(request)
    messages.info(request, "You are logged out.")
    return redirect(settings.LOGOUT_REDIRECT_URL)


@sensitive_post_parameters("password")
@csrf_protect
@never_cache
@page_login_required
@require_http_methods(["GET", "HEAD", "POST"])
def api_keys_page(request: HttpRequest) -> HttpResponse:
    """Create, list and delete API keys. A new key's secret is in the answer to the POST
    that created it and nowhere else (not in the session, not after a redirect)."""
    user = page_user(request)
    form = ApiKeyCreateForm(request.POST or None)
    created = None
    if request.method == "POST" and form.is_valid():
        try:
            user_password_confirm(request=request, user=user, password=form.cleaned_data["password"])
            api_key, secret = api_key_create_from_form(
                user=user,
                label=form.cleaned_data["label"],
                permissions=[PERMISSION_READ, PERMISSION_TRADE] if form.cleaned_data["trade"] else [PERMISSION_READ],
                form_id=form.cleaned_data["form_id"],
            )
        except ApplicationError as exc:
            form.add_application_error(exc)
        else:
            created = {"key": api_key, "secret": secret}
            form = ApiKeyCreateForm()
    context = {"form": form, "created": created, "keys": api_key_list_for_user(user_id=user.pk)}
    return form_page(request, "accounts/api_keys.html", form=form, context=context)


@sensitive_post_parameters("password", "new_password", "new_password_confirm")
@csrf_protect
@never_cache
@page_login_required
@require_http_methods(["GET", "HEAD", "POST"])
def password_change_page(request: HttpRequest) -> HttpResponse:
    user = page_user(request)
    form = PasswordChangeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user_password_change(
                request=request,
                user=user,
                password=form.cleaned_data["password"],
                new_password=form.cleaned_data["new_password"],
            )
        except ApplicationError as exc:
            form.add_application_error(exc)
        else:
            update_session_auth_hash(request, user)  # this session goes on; every other one ends
            messages.success(
                request,
                "Your password is changed. Your other sessions and every API token issued before are"
                " signed out; your API keys keep working.",
            )
            return redirect("password-change")
    return form_page(request, "accounts/password_change.html", form=form, context={"form": form})


@csrf_protect
@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def password_reset_page(request: HttpRequest) -> HttpResponse:
    """Asks for a reset link by mail; the next page says the same whether or not an account
    has that address."""
    form = PasswordResetRequestForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user_password_reset_request(request=request, email=form.cleaned_data["email"])
        except ApplicationError as exc:
            form.add_application_error(exc)
        else:
            return redirect("password-reset-sent")
    context = {"form": form, "available": settings.PASSWORD_RESET_BY_MAIL}
    return form_page(request, "accounts/password_reset.html", form=form, context=context)


@never_cache
@require_safe
def password_reset_sent_page(request: HttpRequest) -> HttpResponse:
    return render(
        request, "accounts/password_reset_sent.html", {"timeout_hours": settings.PASSWORD_RESET_TIMEOUT // 3600}
    )


class PasswordResetSetPage(PasswordResetConfirmView):
    """The mailed link: Django's view (the token checked, then moved from the address into
    the session before the form shows, so that it leaks through no Referer); the new
    password under the password rules. It logs nobody in: the login page follows."""

    template_name = "accounts/password_reset_set.html"
    success_url = reverse_lazy("login")

    def form_valid(self, form: Any) -> HttpResponse:
        response = super().form_valid(form)
        user_password_reset_done(request=self.request, user=form.user)
        messages.success(self.request, "Your password is set: log in with it.")
        return response


# Django's view answers a link that does not verify before it looks at the method.
password_reset_set_page = require_http_methods(["GET", "HEAD", "POST"])(PasswordResetSetPage.as_view())


@form_address("api-keys-page")
@csrf_protect
@page_login_required
def api_key_delete_page(request: HttpRequest, key_id: str) -> HttpResponse:
    user = page_user(request)
    try:
        api_key_delete(user_id=user.pk, api_key_id=path_id(key_id, not_found=ApiKeyNotFound))
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "The key is deleted; it no longer works.")
    return redirect("api-keys-page")
