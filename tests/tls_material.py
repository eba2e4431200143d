"""Certificates for a Docker engine listening with ``--tlsverify``: a CA, a server certificate for
127.0.0.1, and a client certificate, as files (what an operator mounts for a TLS environment).
Made with ``cryptography`` (installed with paramiko), so no openssl command is needed."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

FILES = ("ca.pem", "server-cert.pem", "server-key.pem", "cert.pem", "key.pem")


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def _certificate(subject: str, key, issuer_name: x509.Name, issuer_key, *, ca: bool, usage=None, ip=None):
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(issuer_name).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if ip is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
                                        critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make(directory: Path, name: str = "rsgo test CA") -> dict[str, Path]:
    """CA, server (127.0.0.1) and client certificates and keys in ``directory``; their paths by file name."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    ca = _certificate(name, ca_key, ca_name, ca_key, ca=True)
    server_key, client_key = _key(), _key()
    server = _certificate("127.0.0.1", server_key, ca_name, ca_key, ca=False,
                          usage=ExtendedKeyUsageOID.SERVER_AUTH, ip="127.0.0.1")
    client = _certificate("rsgo", client_key, ca_name, ca_key, ca=False, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    paths = {file: directory / file for file in FILES}
    paths["ca.pem"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["server-cert.pem"].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    _write_key(paths["server-key.pem"], server_key)
    paths["cert.pem"].write_bytes(client.public_bytes(serialization.Encoding.PEM))
    _write_key(paths["key.pem"], client_key)
    return paths
