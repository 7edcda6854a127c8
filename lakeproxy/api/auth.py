"""Who is calling the REST API: HTTP Basic credentials (what every lakeFS client sends), or a
session token from `/auth/login` (Bearer header or the `internal_auth_session` cookie).

A session token is `KEY.EXPIRY.SIGNATURE`, signed with the key's own secret: it dies with the
key, and the server keeps no session state.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time

from aiohttp import web

from lakeproxy.api.errors import Unauthorized
from lakeproxy.auth.model import Principal
from lakeproxy.gateway.context import Services

SESSION_COOKIE = "internal_auth_session"
TOKEN_SECONDS = 3600
_MISSING = ("missing credentials: authenticate with HTTP Basic, the access key id as user "
            "name and the secret access key as password")
_WRONG = "the access key id or the secret access key is wrong, or the key was deleted"


async def authenticate(request: web.Request, services: Services) -> Principal:
    """The principal of a request; raises Unauthorized."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "basic":
        access_key_id, secret = _basic(value.strip())
        principal = await services.keys.verify(access_key_id, secret)
        if principal is None:
            raise Unauthorized(_WRONG)
        return principal
    if scheme.lower() == "bearer":
        return await verify_token(services, value.strip())
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        return await verify_token(services, cookie)
    raise Unauthorized(_MISSING)


def _basic(value: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise Unauthorized("malformed HTTP Basic credentials") from None
    access_key_id, sep, secret = decoded.partition(":")
    if not sep or not access_key_id:
        raise Unauthorized("malformed HTTP Basic credentials")
    return access_key_id, secret


def _sign(secret: str, payload: str) -> str:
    digest = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def issue_token(access_key_id: str, secret: str, now: float | None = None) -> tuple[str, int]:
    """A session token for a key whose secret was just verified, and its expiry (epoch s)."""
    expiry = int(now if now is not None else time.time()) + TOKEN_SECONDS
    payload = f"{access_key_id}.{expiry}"
    return f"{payload}.{_sign(secret, payload)}", expiry


async def verify_token(services: Services, token: str) -> Principal:
    access_key_id, _, rest = token.partition(".")
    expiry_text, _, signature = rest.partition(".")
    if not access_key_id or not expiry_text.isdigit() or not signature:
        raise Unauthorized("malformed session token")
    if int(expiry_text) < time.time():
        raise Unauthorized("the session token has expired: log in again")
    found = await services.keys.secret_of(access_key_id)
    if found is None:
        raise Unauthorized(_WRONG)
    secret, principal = found
    expected = _sign(secret, f"{access_key_id}.{expiry_text}")
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise Unauthorized("invalid session token")
    return principal
