"""The session cookie's flags and the secret key file."""

from __future__ import annotations

from pathlib import Path

import requests

from support import ADMIN_PASSWORD, ADMIN_USER

from .conftest import cookie_flags, csrf_in


def test_the_session_cookie_is_httponly_samesite_lax_and_secure_when_configured(make_server):
    plain = make_server().start()
    secure = make_server(Path(plain.env["RSGO_DATA_DIR"]).parent / "secure-data", RSGO_SECURE_COOKIES="true").start()
    for server, want_secure in ((plain, False), (secure, True)):
        form = requests.get(f"{server.url}/login", timeout=10)
        flags = cookie_flags(form)
        assert {"httponly", "samesite=lax", "path=/"} <= flags, flags
        assert ("secure" in flags) is want_secure, flags
        # The cookie of the signed-in session too (sent by hand: a client keeps Secure cookies off plain http).
        signed_in = requests.post(f"{server.url}/login", timeout=30, allow_redirects=False,
                                  headers={"Cookie": form.headers["Set-Cookie"].split(";")[0]},
                                  data={"username": ADMIN_USER, "password": ADMIN_PASSWORD,
                                        "csrf_token": csrf_in(form.text)})
        assert signed_in.status_code == 302, signed_in.text
        flags = cookie_flags(signed_in)
        assert {"httponly", "samesite=lax"} <= flags and ("secure" in flags) is want_secure, flags
        assert any(f.startswith("expires=") for f in flags)
    key = Path(plain.env["RSGO_DATA_DIR"]) / "secret_key"
    assert key.stat().st_mode & 0o777 == 0o600
