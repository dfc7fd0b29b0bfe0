"""The tests' IMAP server: Dovecot on loopback, as the local stack runs it (local/imap_server.py)."""

from __future__ import annotations

from local.imap_server import PASSWORD, TOKEN, USER, DovecotMissing, ImapServer, start_imap_server

__all__ = ["PASSWORD", "TOKEN", "USER", "DovecotMissing", "ImapServer", "start_imap_server"]
