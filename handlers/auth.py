"""Register, log in, log out, who am I, change password."""

from __future__ import annotations

from pydantic import BaseModel

from handlers.base import SESSION_COOKIE, APIHandler
from handlers.render import user_json
from server.auth import NewSession


class RegisterRequest(BaseModel):
    username: str
    password: str
    email: str | None = None


class LoginRequest(BaseModel):
    username: str
    password: str


class PasswordChangeRequest(BaseModel):
    current_password: str
    new_password: str
    revoke_tokens: bool = False


class SessionCookieMixin(APIHandler):
    def start_session(self, session: NewSession) -> None:
        self.set_signed_cookie(
            SESSION_COOKIE, session.secret,
            expires_days=self.runtime.settings.session_days,
            httponly=True, samesite="Lax", secure=self.runtime.settings.secure_cookies, path="/",
        )


class RegisterHandler(SessionCookieMixin):
    async def post(self) -> None:
        """Create an account and sign it in."""
        body = self.parse(RegisterRequest)
        user = await self.users.register(body.username, body.password, body.email, ip=self.client_ip)
        self.start_session(await self.auth.open_session(
            user, ip=self.client_ip, user_agent=self.request.headers.get("User-Agent", "")
        ))
        self.write_json({"user": user_json(user, private=True)}, status=201)


class LoginHandler(SessionCookieMixin):
    async def post(self) -> None:
        """Check the password and start a new session."""
        body = self.parse(LoginRequest)
        session = await self.auth.login(
            body.username, body.password,
            ip=self.client_ip, user_agent=self.request.headers.get("User-Agent", ""),
        )
        if self.principal and self.principal.session_id:
            await self.auth.logout(self.principal.session_id)
        self.start_session(session)
        self.write_json({"user": user_json(session.user, private=True)})


class LogoutHandler(APIHandler):
    async def post(self) -> None:
        """Revoke this browser's session."""
        if self.principal and self.principal.session_id:
            await self.auth.logout(self.principal.session_id)
        self.clear_cookie(SESSION_COOKIE, path="/")
        self.set_status(204)
        self.finish()


class LogoutEverywhereHandler(APIHandler):
    async def post(self) -> None:
        """Revoke every session and API token of mine, this browser's too."""
        principal = self.require_user()
        await self.auth.sign_out_everywhere(principal.user.id)
        self.clear_cookie(SESSION_COOKIE, path="/")
        self.set_status(204)
        self.finish()


class PasswordHandler(SessionCookieMixin):
    async def post(self) -> None:
        """Change the password; every other session is signed out."""
        principal = self.require_user()
        body = self.parse(PasswordChangeRequest)
        session = await self.auth.change_password(principal, body.current_password, body.new_password,
                                                  revoke_tokens=body.revoke_tokens)
        if session is not None:
            self.start_session(session)
        self.write_json({"user": user_json(principal.user, private=True)})


default_handlers = [
    (r"/api/auth/register", RegisterHandler),
    (r"/api/auth/login", LoginHandler),
    (r"/api/auth/logout", LogoutHandler),
    (r"/api/auth/logout-everywhere", LogoutEverywhereHandler),
    (r"/api/me/password", PasswordHandler),
]
