"""Websocket authentication by `?token=<key>` for clients without a session cookie, and the origin check."""
from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from channels.security.websocket import AllowedHostsOriginValidator


@database_sync_to_async
def _user_for_token(key: str) -> Any:
    from rest_framework.authtoken.models import Token

    token = Token.objects.select_related("user").filter(key=key).first()
    return token.user if token and token.user.is_active else None


class TokenAuthMiddleware(BaseMiddleware):
    """Replaces the session user by the token's user when a valid token is in the query string."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        keys = query.get("token")
        if keys:
            user = await _user_for_token(keys[0])
            if user is not None:
                scope = dict(scope, user=user)
        return await super().__call__(scope, receive, send)


class BrowserOriginValidator:
    """Channels' check of the Origin header, for the requests that carry one.

    A browser sends an Origin with every websocket and attaches the session cookie: from another site's page
    that would be a hijacked session, so the Origin must be one of ALLOWED_HOSTS. A client without an Origin is
    not a browser (a script, the `websockets` command line): it has no one else's cookie to ride on and
    authenticates with `?token=`, so the check does not apply to it.
    """

    def __init__(self, application: Any) -> None:
        self.application = application
        self.checked = AllowedHostsOriginValidator(application)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if any(name == b"origin" for name, _ in scope.get("headers", [])):
            return await self.checked(scope, receive, send)
        return await self.application(scope, receive, send)
