"""What the local Microsoft and Google servers accept is shown as the local SMTP server's mail is: a
console line and an .eml file in the mail folder, named after the way it came (graph, gmail, smtp)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from local.providers import DeliveredMessage, Providers


def record_deliveries(providers: Providers, mail_dir: Path, out: Callable[[str], None]) -> None:
    mail_dir.mkdir(parents=True, exist_ok=True)
    named = {
        "graph": providers.graph,
        "gmail": providers.gmail,
        "microsoft-smtp": providers.microsoft_smtp,
        "google-smtp": providers.google_smtp,
    }
    for name, server in named.items():
        server.mailbox.subscribe(_recorder(name, mail_dir, out))


def _recorder(name: str, mail_dir: Path, out: Callable[[str], None]) -> Callable[[DeliveredMessage], None]:
    def record(message: DeliveredMessage) -> None:
        now = datetime.now()
        path = mail_dir / f"{now:%Y%m%d-%H%M%S}-{name}-{message.id[:8]}.eml"
        path.write_bytes(message.raw)
        out(
            f"[{now:%H:%M:%S}] {message.via} ({name}) from {message.account} to "
            f"{', '.join(message.recipients)}: {message.subject!r} -> {path}"
        )

    return record
