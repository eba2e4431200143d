"""Who is asking, and may they: principals, accounts, API tokens, the security log, sign-in throttling
and the Flask wiring of sessions and security headers (docs/design.md#security)."""
