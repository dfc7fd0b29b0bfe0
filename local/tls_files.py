"""The local SMTP server's throwaway CA and certificate, written where the handlers can trust them."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme

from local.stack_config import HOST


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path
    server_context: ssl.SSLContext
    authority: trustme.CA | None = None  # issues the local IMAP server's certificate too


def make_tls(directory: Path) -> TlsFiles:
    """A throwaway CA and a certificate for localhost and 127.0.0.1, new on every start."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="company-mail local stack")
    leaf = ca.issue_cert("localhost", HOST)
    ca_file, cert_file, key_file = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca.cert_pem.write_to_path(str(ca_file))
    leaf.cert_chain_pems[0].write_to_path(str(cert_file))
    leaf.private_key_pem.write_to_path(str(key_file))
    key_file.chmod(0o600)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(context)
    return TlsFiles(ca_file, cert_file, key_file, context, authority=ca)
