"""What each role and each API-token scope may do (README "Users, tokens and security").

One ladder, ``read`` < ``operate`` < ``admin``: a scope grants itself and every scope below
it; a user's role grants what its scope grants.
"""

from __future__ import annotations

SCOPE_PERMISSIONS: dict[str, frozenset[str]] = {
    "read": frozenset({"read"}),
    "operate": frozenset({"read", "operate"}),
    "admin": frozenset({"read", "operate", "admin"}),
}
SCOPES = tuple(SCOPE_PERMISSIONS)

ROLE_SCOPES = {"viewer": "read", "operator": "operate", "admin": "admin"}
ROLES = tuple(ROLE_SCOPES)


def of_role(role: str) -> frozenset[str]:
    return SCOPE_PERMISSIONS[ROLE_SCOPES[role]]


def of_scope(scope: str) -> frozenset[str]:
    return SCOPE_PERMISSIONS[scope]
