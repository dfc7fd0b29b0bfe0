"""What the stack's console shows: one short line per event, without the libraries' chatter.

A line per message the local SMTP server received, and a line per log record of a handler (the
record itself, as JSON, goes to the Lambda log file; see local.lambda_log).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from local.smtp_server import ReceivedMessage, quiet_aiosmtpd

# Keys of every Powertools log record: the console line shows the few that matter, not these.
_STANDARD_KEYS = frozenset(
    {
        "level",
        "location",
        "message",
        "timestamp",
        "service",
        "sampling_rate",
        "cold_start",
        "function_name",
        "function_memory_size",
        "function_arn",
        "function_request_id",
        "correlation_id",
        "xray_trace_id",
        "exception",
        "exception_name",
        "stack_trace",
    }
)
_MAX_VALUE = 60  # characters of one extra key's value on the console


class _DropLoginDataNotice(logging.Filter):
    """aiosmtpd warns about its own use of a deprecated attribute on every AUTH; not news to the operator."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "login_data is deprecated" not in record.getMessage()


def quiet_logs() -> None:
    quiet_aiosmtpd()
    mail_log = logging.getLogger("mail.log")
    if not any(isinstance(f, _DropLoginDataNotice) for f in mail_log.filters):
        mail_log.addFilter(_DropLoginDataNotice())
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server: one line per AWS call


def print_message(out: Callable[[str], None]) -> Callable[[ReceivedMessage], None]:
    def on_message(message: ReceivedMessage) -> None:
        subject = message.parsed().get("Subject", "")
        when = datetime.now().strftime("%H:%M:%S")
        out(
            f"[{when}] mail from {message.mail_from} to {', '.join(message.rcpt_tos)}: "
            f"{subject!r} -> {message.path}"
        )

    return on_message


def is_log_record(data: Mapping[str, Any]) -> bool:
    """A Powertools Logger record (the other JSON the handlers print is CloudWatch EMF metrics)."""
    return "level" in data and "message" in data


def _short(value: Any, limit: int = _MAX_VALUE) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, separators=(",", ":"))
    text = " ".join(text.split())  # one line
    return text if len(text) <= limit else text[: limit - 3] + "..."


def log_summary(record: Mapping[str, Any]) -> str:
    """ "[12:00:01] INFO  WorkOrdersFunction: reminders planned (queued=3) [correlation 1a2b3c4d]"."""
    level = str(record.get("level", "")).upper()
    source = record.get("function_name") or record.get("service") or "?"
    extras = [f"{k}={_short(v)}" for k, v in record.items() if k not in _STANDARD_KEYS and v is not None]
    line = f"[{datetime.now():%H:%M:%S}] {level:<5} {source}: {_short(record.get('message'), 200)}"
    if extras:
        line += f" ({', '.join(extras)})"
    if record.get("exception"):
        last = str(record["exception"]).strip().splitlines()[-1:] or [str(record.get("exception_name"))]
        line += f" !! {_short(last[0], 120)}"
    correlation = record.get("correlation_id")
    if correlation:
        line += f" [correlation {str(correlation)[:8]}]"
    return line
