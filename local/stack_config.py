"""What the local stack is told by its environment: ports, folders, the SMTP account, the log file,
the API's worker processes."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from local.template import ROOT

HOST = "127.0.0.1"


def _count(env: Mapping[str, str], name: str, default: int) -> int:
    raw = (env.get(name) or str(default)).strip()
    if not raw.isdigit():
        raise ValueError(f"{name}={raw!r} is not a number of processes")
    return int(raw)


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name) or str(default)
    if not raw.isdigit() or int(raw) > 65535:
        raise ValueError(f"{name}={raw!r} is not a port number")
    return int(raw)


@dataclass(frozen=True)
class StackConfig:
    api_port: int = 3000
    smtp_port: int = 1025
    moto_port: int = 5055
    imap_port: int = 1993  # the local IMAP server (Dovecot), IMAPS
    imap_starttls_port: int = 1143  # the same, IMAP with STARTTLS
    dns_port: int = 1053  # the local DNS server (UDP), the resolver of the test send's SPF and DMARC checks
    bounce_seconds: float = 3.0  # how often the bounce reader runs (the deployed schedule: 15 minutes)
    mail_dir: Path = ROOT / "var" / "mail"
    tls_dir: Path = ROOT / "var" / "tls"
    smtp_username: str = "billing@demo.test"
    smtp_password: str = "demo-app-password"
    operator_ca_bundle: str | None = None  # MAILER_EXTRA_CA_BUNDLE given by the operator wins
    retry_seconds: int = 2  # a failed outbox record comes back after this, not the queue's 12 minutes
    # The most processes serving the API at once (LOCAL_API_WORKERS); 0 runs it in the stack's process.
    api_workers: int = 4
    # Where the handlers' JSON output goes (LAMBDA_LOG_FILE); None leaves it on stdout as it is.
    lambda_log: Path | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StackConfig:
        env = os.environ if env is None else env
        return cls(
            api_port=_port(env, "API_PORT", cls.api_port),
            smtp_port=_port(env, "SMTP_PORT", cls.smtp_port),
            moto_port=_port(env, "MOTO_PORT", cls.moto_port),
            imap_port=_port(env, "IMAP_PORT", cls.imap_port),
            imap_starttls_port=_port(env, "IMAP_STARTTLS_PORT", cls.imap_starttls_port),
            dns_port=_port(env, "DNS_PORT", cls.dns_port),
            mail_dir=Path(env.get("MAIL_DIR") or cls.mail_dir).resolve(),
            tls_dir=Path(env.get("TLS_DIR") or cls.tls_dir).resolve(),
            smtp_username=env.get("SMTP_USERNAME") or cls.smtp_username,
            smtp_password=env.get("SMTP_PASSWORD") or cls.smtp_password,
            operator_ca_bundle=env.get("MAILER_EXTRA_CA_BUNDLE") or None,
            api_workers=_count(env, "LOCAL_API_WORKERS", cls.api_workers),
            lambda_log=Path(env.get("LAMBDA_LOG_FILE") or ROOT / "var" / "log" / "lambda.jsonl").resolve(),
        )


class EnvOverlay:
    """Process-wide variables (boto3 and the handlers read os.environ), put back as they were on restore."""

    def __init__(self) -> None:
        self._saved: dict[str, str | None] = {}

    def set(self, values: Mapping[str, str]) -> None:
        for key, value in values.items():
            self._saved.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    def unset(self, *keys: str) -> None:
        for key in keys:
            self._saved.setdefault(key, os.environ.get(key))
            os.environ.pop(key, None)

    def point_aws_at(self, endpoint_url: str) -> None:
        """boto3 in this process (the handlers' too) calls moto, with fake keys and past any proxy."""
        no_proxy = ",".join(filter(None, [os.environ.get("NO_PROXY") or os.environ.get("no_proxy"), HOST]))
        self.unset(
            "AWS_PROFILE",
            "AWS_DEFAULT_PROFILE",
            "AWS_SESSION_TOKEN",
            *[key for key in os.environ if key.startswith("AWS_ENDPOINT_URL_")],
        )
        self.set(
            {
                "AWS_ENDPOINT_URL": endpoint_url,
                "AWS_ACCESS_KEY_ID": "local",
                "AWS_SECRET_ACCESS_KEY": "local",
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_REGION": "us-east-1",
                "NO_PROXY": no_proxy,
                "no_proxy": no_proxy,
            }
        )

    def restore(self) -> None:
        for key, value in self._saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved.clear()


def ensure_free(name: str, port: int, *, udp: bool = False) -> None:
    """Fail with the variable to change; moto's server thread would otherwise hang on a taken port.
    `udp` checks a UDP port (the DNS server's) instead of a TCP one."""
    if port == 0:
        return
    with socket.socket(type=socket.SOCK_DGRAM if udp else socket.SOCK_STREAM) as sock:
        if not udp:  # on UDP, SO_REUSEADDR would let the bind share a port that is taken
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError as exc:
            raise OSError(
                f"port {port} on {HOST} is taken ({exc.strerror}); set {name} to another port"
            ) from None
