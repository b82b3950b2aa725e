"""Accounts: registration and login for seeds 000 (`/v1/...`), 003 (`/register`, `/token`) and
004 (`/api/v1/auth/...`), token refresh and logout, the caller's profile, account erasure.

A successful login also sets the signed device cookie (`LOGIN_DEVICE_COOKIE_NAME`): a later
login that sends it for the same username has its own failure allowance (see
`app.services.accounts.login_throttle`); the response bodies are the seeds' own."""

from __future__ import annotations

from typing import Annotated

from fastapi import Form, Request
from starlette.responses import Response

from app.api.deps import AccountsDep, EraserDep, LoginsDep, OptionalPrincipal, UserPrincipal
from app.api.routing import DeclaredRouter, Policy
from app.db.models import User
from app.schemas.auth import (
    Credentials,
    LogoutRequest,
    RefreshRequest,
    RegisterWithName,
    RegisterWithRole,
    TokenRead,
    UserRead,
)
from app.schemas.problems import UNAUTHORIZED, problem_docs
from app.services.accounts.logins import Logins
from app.services.accounts.service import TokenPair

# Per client address: the caller is not known yet (logins are also limited per username)
router = DeclaredRouter(Policy(rate_limit="auth", per_caller=False), tags=["accounts"])

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
REGISTER_ERRORS = problem_docs(
    (400, "validation_error", "Invalid request: password: 8 to 128 characters"),
    (403, "forbidden", "Only an admin can create an admin account"),
    (409, "username_taken", "This username is already registered"),
)
LOGIN_ERRORS = problem_docs(
    (401, "unauthorized", "Incorrect username or password"),
    (429, "too_many_requests", "Too many failed logins; try again later"),
    (503, "service_unavailable", "Too many logins are being checked; try again shortly"),
)


def _user(user: User) -> UserRead:
    return UserRead.model_validate(user, from_attributes=True)


def _tokens(pair: TokenPair, response: Response) -> TokenRead:
    response.headers.update(NO_STORE)
    return TokenRead(**pair.__dict__)


async def _login(
    logins: Logins, request: Request, response: Response, username: str, password: str
) -> TokenRead:
    """Log in (see `Logins.sign_in`) and set the new device cookie."""
    cookie = logins.cookie
    signed_in = await logins.sign_in(
        username,
        password,
        address=request.client.host if request.client else None,
        device_cookie=request.cookies.get(cookie.name),
    )
    response.set_cookie(
        cookie.name,
        signed_in.device_cookie,
        max_age=signed_in.max_age,
        path="/",
        secure=cookie.secure_for(request.url.scheme),
        httponly=True,
        samesite=cookie.samesite,
    )
    return _tokens(signed_in.tokens, response)


@router.post(
    "/v1/register",
    status_code=201,
    response_model=UserRead,
    summary="Register (seed 000)",
    responses=REGISTER_ERRORS,
)
async def register_v1(body: Credentials, accounts: AccountsDep) -> UserRead:
    """A new user with INITIAL_CREDITS credits."""
    return _user(await accounts.register(username=body.username, password=body.password))


@router.post(
    "/register",
    status_code=201,
    response_model=UserRead,
    summary="Register (seed 003)",
    responses=REGISTER_ERRORS,
)
async def register_seed003(
    body: RegisterWithRole, accounts: AccountsDep, caller: OptionalPrincipal
) -> UserRead:
    """`is_admin: true` needs an admin's token, or is the first admin while none exists
    (ADMIN_BOOTSTRAP, on by default outside production): the seed let anyone become admin."""
    user = await accounts.register(
        username=body.username, password=body.password, is_admin=body.is_admin, requested_by=caller
    )
    return _user(user)


@router.post(
    "/api/v1/auth/register",
    status_code=201,
    response_model=UserRead,
    summary="Register (seed 004)",
    responses=REGISTER_ERRORS,
)
async def register_seed004(body: RegisterWithName, accounts: AccountsDep) -> UserRead:
    """A new user (the username may be an e-mail address)."""
    user = await accounts.register(username=body.username, password=body.password, full_name=body.full_name)
    return _user(user)


@router.post(
    "/v1/login",
    response_model=TokenRead,
    summary="Log in (seed 000)",
    operation_id="login_v1",
    responses=LOGIN_ERRORS,
)
@router.post(
    "/api/v1/auth/login",
    response_model=TokenRead,
    summary="Log in (seed 004)",
    operation_id="login_seed004",
    responses=LOGIN_ERRORS,
)
async def login(body: Credentials, request: Request, response: Response, logins: LoginsDep) -> TokenRead:
    """An access token and a refresh token (and a device cookie, see README, Accounts)."""
    return await _login(logins, request, response, body.username, body.password)


@router.post(
    "/token",
    response_model=TokenRead,
    summary="Log in, OAuth2 password form (seed 003)",
    responses=LOGIN_ERRORS,
)
async def token(
    username: Annotated[str, Form(max_length=150)],
    password: Annotated[str, Form(max_length=4096)],
    request: Request,
    response: Response,
    logins: LoginsDep,
) -> TokenRead:
    """The OAuth2 password flow (Swagger UI's *Authorize* uses it); sets a device cookie too."""
    return await _login(logins, request, response, username, password)


@router.post(
    "/api/v1/auth/refresh",
    response_model=TokenRead,
    summary="Rotate a refresh token",
    responses=problem_docs(UNAUTHORIZED),
)
async def refresh(body: RefreshRequest, response: Response, accounts: AccountsDep) -> TokenRead:
    """A new token pair; the refresh token sent is used up. Sending a used one again revokes
    its whole family (someone else has a copy)."""
    return _tokens(await accounts.refresh(body.refresh_token), response)


@router.post(
    "/api/v1/auth/logout",
    status_code=204,
    response_class=Response,
    summary="Log out",
    responses=problem_docs(UNAUTHORIZED),
)
async def logout(
    principal: UserPrincipal, accounts: AccountsDep, body: LogoutRequest | None = None
) -> Response:
    """Revoke the access token sent (and the refresh token's family, if one is given)."""
    await accounts.logout(principal, body.refresh_token if body else None)
    return Response(status_code=204, headers=NO_STORE)


@router.get(
    "/v1/me",
    response_model=UserRead,
    summary="Your profile and credits",
    responses=problem_docs(UNAUTHORIZED),
)
async def me(principal: UserPrincipal, accounts: AccountsDep, response: Response) -> UserRead:
    """Who you are and your credit balance."""
    assert principal.user_id is not None
    response.headers.update(NO_STORE)
    return _user(await accounts.profile(principal.user_id))


@router.delete(
    "/api/v1/auth/me",
    status_code=204,
    response_class=Response,
    summary="Delete your account",
    responses=problem_docs(UNAUTHORIZED),
)
async def delete_me(principal: UserPrincipal, eraser: EraserDep) -> Response:
    """Delete the account and everything it uploaded (images, analyses, jobs); its request
    history is kept without the link to you."""
    await eraser.erase(principal)
    return Response(status_code=204)
