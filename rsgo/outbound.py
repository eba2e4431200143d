"""Where rsgo's own outbound requests (http observers, webhook deliveries) may go: ``RSGO_OUTBOUND_DENY``
(README "Users, tokens and security" and "Settings").

Loopback and private targets are allowed by default: observers exist to read internal
systems. An admin can deny networks (CIDRs, single addresses) and host names (a name
denies itself and its subdomains). The check happens at request time, for every hop of a
redirect: the host name against the denied names, then every address it resolves to
against the denied networks; and once more on the socket itself, against the address it
actually connected to (a name that resolves differently a moment later is still caught).
The config loader checks literal addresses and names too, so a denied target is a config
problem before anything is sent.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

SETTING = "RSGO_OUTBOUND_DENY"
_HOST_NAME = re.compile(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*")


class OutboundDenied(Exception):
    """A target the deny list refuses; the message names the host and the rule, never a URL's path or query."""


def _address(text: str):
    """An IP address from a literal or a resolved address (IPv6 scope and brackets dropped), else None."""
    try:
        address = ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


@dataclass(frozen=True)
class OutboundPolicy:
    networks: tuple = ()
    hosts: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        return bool(self.networks or self.hosts)

    def _denied_network(self, address):
        return next((network for network in self.networks if address in network), None)

    def _denied_host(self, host: str) -> str | None:
        name = host.lower().rstrip(".")
        return next((entry for entry in self.hosts if name == entry or name.endswith("." + entry)), None)

    def static_refusal(self, host: str | None) -> str | None:
        """Why a host is refused without resolving it (a denied name or a literal address), else None."""
        if not self.active or not host:
            return None
        address = _address(host)
        if address is not None:
            network = self._denied_network(address)
            return f"{address} is in the denied network {network}" if network is not None else None
        entry = self._denied_host(host)
        if entry is not None:
            return f"host {host} is denied" + ("" if entry == host.lower().rstrip(".") else f" (by {entry})")
        return None

    def check_host(self, host: str | None, port: int | None) -> None:
        """At request time: refuse a denied name, or a name any of whose addresses is in a denied network."""
        if not self.active or not host:
            return
        reason = self.static_refusal(host)
        if reason is None and _address(host) is None and self.networks:
            try:
                resolved = {info[4][0] for info in socket.getaddrinfo(host, port or 80, type=socket.SOCK_STREAM)}
            except (OSError, UnicodeError):
                resolved = set()  # the request itself fails with "could not be resolved" (or a proxy resolves it)
            for text in sorted(resolved):
                address = _address(text)
                network = self._denied_network(address) if address is not None else None
                if network is not None:
                    reason = f"{host} resolves to {address}, in the denied network {network}"
                    break
        if reason is not None:
            raise OutboundDenied(f"refused by {SETTING}: {reason}")

    def check_peer(self, text: str) -> None:
        """On the connected socket: the address really reached."""
        address = _address(text)
        network = self._denied_network(address) if address is not None and self.networks else None
        if network is not None:
            raise OutboundDenied(f"refused by {SETTING}: connected to {address}, in the denied network {network}")

    def url_refusal(self, url: str) -> str | None:
        """For the config loader and forms: the static reason a URL is refused, else None."""
        try:
            host = urlsplit(url).hostname
        except ValueError:
            return None
        reason = self.static_refusal(host)
        return f"refused by {SETTING}: {reason}" if reason else None


NO_POLICY = OutboundPolicy()


def parse_deny(text: str) -> OutboundPolicy:
    """``10.0.0.0/8, 169.254.169.254, metadata.internal`` → a policy; a malformed entry is a ValueError."""
    networks, hosts = [], []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            continue
        except ValueError:
            pass
        name = entry.lower().removeprefix("*.").lstrip(".").rstrip(".")
        if "/" in entry or not _HOST_NAME.fullmatch(name):
            raise ValueError(f"{entry!r} is neither a network (10.0.0.0/8, fd00::/8, 192.0.2.7) nor a host name")
        hosts.append(name)
    return OutboundPolicy(tuple(networks), tuple(hosts))


def _checked_pool(base_pool, base_connection, policy: OutboundPolicy):
    """A pool whose connections check the address they connected to."""

    class CheckedConnection(base_connection):
        def _new_conn(self):
            sock = super()._new_conn()
            try:
                peer = sock.getpeername()[0]
                policy.check_peer(peer)
            except OutboundDenied:
                sock.close()
                raise
            return sock

    return type(f"Checked{base_pool.__name__}", (base_pool,), {"ConnectionCls": CheckedConnection})


class OutboundAdapter(HTTPAdapter):
    """requests' adapter with the deny list applied before each request (each redirect is one) and on connect."""

    def __init__(self, policy: OutboundPolicy, **kwargs):
        self.policy = policy
        super().__init__(**kwargs)

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        if self.policy.networks:
            self.poolmanager.pool_classes_by_scheme = {
                "http": _checked_pool(HTTPConnectionPool, HTTPConnection, self.policy),
                "https": _checked_pool(HTTPSConnectionPool, HTTPSConnection, self.policy),
            }

    def send(self, request, *args, **kwargs):
        parts = urlsplit(request.url)
        self.policy.check_host(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
        return super().send(request, *args, **kwargs)


def guard(session: requests.Session, policy: OutboundPolicy) -> requests.Session:
    """Apply ``policy`` to every request ``session`` sends."""
    if policy.active:
        for prefix in ("http://", "https://"):
            session.mount(prefix, OutboundAdapter(policy))
    return session
