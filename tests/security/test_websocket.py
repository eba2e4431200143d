"""The live websocket: a session and this site's Origin, and each role's own fragments."""

from __future__ import annotations

from support import put_mode

from .conftest import create_user, no_controls, refused_handshake, sign_in


def test_the_websocket_needs_a_session_and_this_sites_origin(estate, live_pages):
    server = estate.server
    a_id = estate.a_id
    viewer_session, _ = sign_in(server, create_user(server, "viewer"))
    operator_session, _ = sign_in(server, create_user(server, "operator"))

    assert refused_handshake(server) == 401  # no session
    assert refused_handshake(server, headers=[f"Authorization: Bearer {server.token}"]) == 401  # tokens are no session
    assert refused_handshake(server, session=operator_session, origin="http://evil.example") == 403
    assert refused_handshake(server, session=operator_session, origin=f"{server.url}.evil.example") == 403
    assert refused_handshake(server, session=operator_session, origin=f"http://localhost:{server.port}") == 403
    assert refused_handshake(server, session=operator_session, origin="null") == 403
    assert refused_handshake(server, session=operator_session, origin=None) == 403  # no Origin at all

    topics = f"dashboard,deployment:{a_id}"
    operator = live_pages(server, topics, session=operator_session)
    viewer = live_pages(server, topics, session=viewer_session)
    # A viewer asking for the operators' fragments gets its own (or nothing), never theirs.
    sneaky = live_pages(server, f"dashboard|operate,deployment:{a_id}|operate,dashboard", session=viewer_session)

    def settled(mode):
        return lambda text: (f'id="mode-{a_id}"' in text and f'data-mode="{mode}"' in text
                             and "Changing mode" not in text)

    for mode in ("Maintenance", "Normal"):
        assert put_mode(server, a_id, mode, server.headers, reason=f"push {mode}").status_code == 200
        pushed = operator.wait_for(settled(mode), what=f"the operator's {mode} fragment")
        assert "mode-actions" in pushed and "/mode-change" in pushed
        viewer.wait_for(settled(mode), what=f"the viewer's {mode} fragment")
        sneaky.wait_for(lambda text, mode=mode: f'id="deployment-{a_id}"' in text and f'data-mode="{mode}"' in text,
                        what=f"the viewer's dashboard fragment ({mode})")
    operator.wait_for(lambda text: f'id="deployment-{a_id}"' in text and "mode-actions" in text,
                      what="the operator's dashboard row with buttons")
    for page in (viewer, sneaky):
        assert page.messages
        for text in page.messages:
            assert not no_controls(text), no_controls(text)
