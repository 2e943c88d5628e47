"""How domain objects look in JSON."""

from __future__ import annotations

from typing import Any

from server.store.models import ApiToken, User, iso
from server.users import public_user



def user_json(user: User, *, private: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        **public_user(user),
        "bio": user.bio,
        "is_moderator": user.is_moderator,
        "created_at": iso(user.created_at),
    }
    if private:
        data["email"] = user.email
    return data


def token_json(token: ApiToken) -> dict[str, Any]:
    return {
        "id": token.id,
        "name": token.name,
        "prefix": token.prefix,
        "created_at": iso(token.created_at),
        "last_used_at": iso(token.last_used_at),
    }
