"""5. Latency: SMTP with the server 25 and 50 ms away, where round trips, not CPU, set the pace.

Real submission servers are 20-150 ms from a Lambda function. A client that waits for every reply pays
MAIL, each RCPT, DATA and the content: four round trips or more a message on an open connection.
smtp.office365.com and smtp.gmail.com offer PIPELINING and CHUNKING, with which SmtpTransport sends a
message in one.

The server is tests.support.smtp_extended.ExtendedSmtpServer (aiosmtpd offering PIPELINING and
CHUNKING, STARTTLS + AUTH, trustme certificates) with bench.smtp_sink's counting handler, in a process
of its own; bench.latency_proxy.LatencyProxy sits in front of it and delays every chunk by half the
round trip each way. The contenders, alternating round by round:

  - the project's SmtpTransport (pipelining on, as deployed),
  - the same with pipelining=False (smtplib's sendmail, one command at a time),
  - Django's SMTP backend (bench.django_peer),
  - plain smtplib (SMTP, starttls, login, sendmail).

(a) messages per second over one open connection (200 reminders each, HTML + text); (b) one document
email (HTML + text + 100 KB PDF) on a new connection: connect, EHLO, STARTTLS, EHLO, AUTH, send, QUIT;
(c) the round trips the proxy counted for each. Run alone: python -m bench.latency
"""

from __future__ import annotations

import argparse
import smtplib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.common import (
    ACCOUNT,
    BODY_HTML,
    BODY_TEXT,
    PASSWORD,
    ROOT,
    SUBJECT,
    Report,
    TlsFiles,
    contexts,
    fake_aws_environment,
    fmt,
    interleaved,
    median_ratio,
    pdf_bytes,
    table,
)
from bench.latency_proxy import LatencyProxy
from bench.send_throughput import render_and_build
from bench.smtp_sink import SinkServer

MESSAGES = 200
ROUNDS = 4
SINGLES = 5
ROUND_TRIPS_MS = (50, 25)
PDF_SIZE = 100 * 1024
HOST = "127.0.0.1"
TARGET_RTT_MS = 50  # where the targets are judged
TARGET_THROUGHPUT = 3.0  # x Django's messages per second, one connection, at 50 ms
TARGET_SINGLE = 0.7  # x Django's time, one document email on a new connection, at 50 ms

# --- the server, in a process of its own ----------------------------------------------------------------


def serve(server_chain: str) -> None:
    """The child: the extended server with the counting handler; the `count` protocol of smtp_sink."""
    import logging
    import ssl

    from bench.smtp_sink import CountingSink
    from local.smtp_server import quiet_aiosmtpd
    from tests.support.smtp_extended import ExtendedSmtpServer

    quiet_aiosmtpd()
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(server_chain)
    handler = CountingSink()
    server = ExtendedSmtpServer(
        mode="starttls",
        server_context=context,
        users={ACCOUNT: PASSWORD},
        handler=handler,
        data_size_limit=64 * 1024 * 1024,
        record=False,
    ).start()
    print(f"PORT {server.port}", flush=True)
    try:
        for line in sys.stdin:
            if line.strip() == "count":
                print(handler.count, flush=True)
            elif line.strip() == "stop":
                break
    finally:
        server.stop()


class ExtendedSink(SinkServer):
    """SinkServer whose child runs the server offering PIPELINING and CHUNKING (`serve` above)."""

    def __enter__(self) -> ExtendedSink:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.latency", "--serve", self.tls.server_chain],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert self._process.stdout is not None
        first = self._process.stdout.readline()
        if not first.startswith("PORT "):
            self.__exit__()
            raise RuntimeError(f"the extended SMTP server did not start: {first!r}")
        self.port = int(first.split()[1])
        return self


# --- the contenders: open, send a list, close ----------------------------------------------------------


class ProjectPeer:
    def __init__(self, port: int, ca_bundle: str, *, pipelining: bool) -> None:
        self.port, self.ca_bundle, self.pipelining = port, ca_bundle, pipelining
        self.transport: Any = None

    def prepare(self, ctxs: Sequence[dict[str, Any]], attachment: Any) -> list[Any]:
        return [render_and_build(c, attachment) for c in ctxs]  # serialized in send, as the worker does

    def open(self) -> None:
        from mailer.delivery.guard import AddressGuard
        from mailer.delivery.transports.smtp import SmtpServer, SmtpTransport

        self.transport = SmtpTransport(
            SmtpServer(HOST, self.port, "starttls", ACCOUNT),
            PASSWORD,
            extra_ca_bundle=self.ca_bundle,
            from_email=ACCOUNT,
            guard=AddressGuard.allowing("127.0.0.1/32"),
            pipelining=self.pipelining,
        )
        self.transport.open()

    def send(self, items: list[Any]) -> None:
        from mailer.delivery.transports.base import Delivery

        bad = [o for o in self.transport.send_messages(items) if not isinstance(o, Delivery) or o.refused]
        if bad:
            raise RuntimeError(f"the project's transport failed to send: {bad[0]}")

    def close(self) -> None:
        self.transport.close()


class DjangoPeer:
    def __init__(self, port: int, ca_bundle: str) -> None:
        from bench import django_peer

        django_peer.backend(HOST, port, ACCOUNT, PASSWORD, ca_bundle)  # settings, setup, the CA to trust
        # An instance of its own: a backend configured earlier in this process (benchmark 1) has
        # another port.
        self.backend = django_peer.TrustingEmailBackend(
            alias="latency",
            host=HOST,
            port=port,
            username=ACCOUNT,
            password=PASSWORD,
            use_tls=True,
            timeout=15,
        )

    def prepare(self, ctxs: Sequence[dict[str, Any]], attachment: Any) -> list[Any]:
        from django.core.mail import EmailMultiAlternatives

        from mailer.templating.engine import render, render_subject

        messages = []
        for context in ctxs:
            message = EmailMultiAlternatives(
                subject=render_subject(SUBJECT, context),
                body=render(BODY_TEXT, context, html=False),
                from_email=f"Acme Plumbing <{ACCOUNT}>",
                to=[context["customer"]["email"]],
                headers={"Auto-Submitted": "auto-generated"},
            )
            message.attach_alternative(render(BODY_HTML, context, html=True), "text/html")
            if attachment:
                message.attach(attachment.filename, attachment.content, attachment.content_type)
            messages.append(message)
        return messages

    def open(self) -> None:
        self.backend.open()

    def send(self, items: list[Any]) -> None:
        if self.backend.send_messages(items) != len(items):
            raise RuntimeError("Django sent fewer messages than it was given")

    def close(self) -> None:
        self.backend.close()


class SmtplibPeer:
    def __init__(self, port: int, ca_bundle: str) -> None:
        from mailer.delivery.tls import client_context

        self.port, self.context = port, client_context(ca_bundle)
        self.conn: smtplib.SMTP | None = None

    def prepare(self, ctxs: Sequence[dict[str, Any]], attachment: Any) -> list[Any]:
        built = [render_and_build(c, attachment) for c in ctxs]
        return [(m.envelope_from, list(m.recipients), m.as_bytes()) for m in built]

    def open(self) -> None:
        self.conn = smtplib.SMTP(HOST, self.port, timeout=15)
        self.conn.starttls(context=self.context)
        self.conn.login(ACCOUNT, PASSWORD)

    def send(self, items: list[Any]) -> None:
        assert self.conn is not None
        for sender, recipients, data in items:
            self.conn.sendmail(sender, recipients, data)

    def close(self) -> None:
        assert self.conn is not None
        self.conn.quit()
        self.conn = None


CONTENDERS = (
    ("project SmtpTransport, pipelining (as deployed)", "project"),
    ("project SmtpTransport, pipelining=False", "project_plain"),
    ("Django SMTP backend", "django"),
    ("smtplib: starttls, login, sendmail", "smtplib"),
)


def peers(port: int, ca_bundle: str) -> dict[str, Any]:
    return {
        "project": ProjectPeer(port, ca_bundle, pipelining=True),
        "project_plain": ProjectPeer(port, ca_bundle, pipelining=False),
        "django": DjangoPeer(port, ca_bundle),
        "smtplib": SmtplibPeer(port, ca_bundle),
    }


# --- measuring -----------------------------------------------------------------------------------------


def _settled(proxy: LatencyProxy) -> int:
    """The proxy's count once what the client wrote last (a QUIT not waited for) has reached it."""
    time.sleep(2 * proxy.delay + 0.05)
    return proxy.turns


def _check(sink: SinkServer, before: int, sent: int) -> None:
    if sink.count - before != sent:
        raise RuntimeError(f"the server counted {sink.count - before} messages, expected {sent}")


def one_connection(
    sink: SinkServer, proxy: LatencyProxy, contenders: dict[str, Any], messages: int, rounds: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """(a): seconds per round and round trips per message for each contender; each sends `messages`
    in all, `messages // rounds` a round over a connection opened (and closed) outside the clock."""
    size = messages // rounds
    ctxs = contexts(size * rounds)
    slices = [ctxs[i * size : (i + 1) * size] for i in range(rounds)]
    prepared = {name: [peer.prepare(part, None) for part in slices] for name, peer in contenders.items()}
    for peer in contenders.values():  # warm-up: imports, TLS contexts, the first connection's caches
        peer.open()
        peer.send(peer.prepare(ctxs[:2], None))
        peer.close()
    turns: dict[str, list[float]] = {name: [] for name in contenders}
    current = [0]

    def sending(name: str) -> Callable[[], float]:
        def run() -> float:
            peer, items = contenders[name], prepared[name][current[0]]
            peer.open()
            counted, turns_before = sink.count, proxy.turns
            started = time.perf_counter()
            peer.send(items)
            elapsed = time.perf_counter() - started
            turns[name].append((proxy.turns - turns_before) / len(items))
            peer.close()
            _check(sink, counted, len(items))
            return elapsed

        return run

    seconds = interleaved(
        {name: sending(name) for name in contenders},
        rounds,
        warmup=0,
        on_round=lambda index: current.__setitem__(0, index),
    )
    return seconds, turns


def new_connection(
    sink: SinkServer, proxy: LatencyProxy, contenders: dict[str, Any], rounds: int
) -> tuple[dict[str, list[float]], dict[str, list[tuple[int, int, int]]]]:
    """(b): seconds for one document email on a new connection, and the round trips of its three
    phases (sign-in: connect .. AUTH; the send; the close: QUIT), per round and contender."""
    from mailer.delivery.message import Attachment

    attachment = Attachment("INV-1042.pdf", pdf_bytes(PDF_SIZE), "application/pdf")
    ctxs = contexts(rounds)
    prepared = {name: [peer.prepare([c], attachment) for c in ctxs] for name, peer in contenders.items()}
    phases: dict[str, list[tuple[int, int, int]]] = {name: [] for name in contenders}
    current = [0]

    def sending(name: str) -> Callable[[], float]:
        def run() -> float:
            peer, items = contenders[name], prepared[name][current[0]]
            counted, start_turns = sink.count, _settled(proxy)
            started = time.perf_counter()
            peer.open()
            signed_in = proxy.turns
            peer.send(items)
            sent = proxy.turns
            peer.close()
            elapsed = time.perf_counter() - started
            closed = _settled(proxy)
            phases[name].append((signed_in - start_turns, sent - signed_in, closed - sent))
            _check(sink, counted, len(items))
            return elapsed

        return run

    seconds = interleaved(
        {name: sending(name) for name in contenders},
        rounds,
        warmup=1,
        on_round=lambda index: current.__setitem__(0, index),
    )
    return seconds, {name: rows[1:] for name, rows in phases.items()}  # without the warm-up round


def _median_phases(rows: list[tuple[int, int, int]]) -> tuple[int, int, int]:
    a, b, c = zip(*rows, strict=True)
    return int(statistics.median(a)), int(statistics.median(b)), int(statistics.median(c))


def measure(
    report: Report,
    sink: SinkServer,
    proxy: LatencyProxy,
    contenders: dict[str, Any],
    rtt_ms: int,
    messages: int,
    rounds: int,
    singles: int,
) -> None:
    proxy.delay = rtt_ms / 2000
    seconds, turns = one_connection(sink, proxy, contenders, messages, rounds)
    size = messages // rounds
    rows = []
    for title, key in CONTENDERS:
        rate = size / statistics.median(seconds[key])
        vs_django = median_ratio(seconds["django"], seconds[key])
        rows.append([title, fmt(rate, 1), fmt(vs_django), fmt(statistics.median(turns[key]))])
        report.figures[f"msgs_per_s_{key}_{rtt_ms}ms"] = rate
    report.add(
        table(
            f"5. Latency, {rtt_ms} ms round trip: one connection, {messages} messages per contender "
            f"in {rounds} interleaved rounds of {size}; medians",
            ["contender", "msg/s", "x Django", "round trips/message"],
            rows,
        )
    )
    throughput = median_ratio(seconds["django"], seconds["project"])

    single, phases = new_connection(sink, proxy, contenders, singles)
    rtt = rtt_ms / 1000
    rows = []
    for title, key in CONTENDERS:
        ms = statistics.median(single[key]) * 1000
        sign_in, send, close = _median_phases(phases[key])
        vs_django = median_ratio(single[key], single["django"])
        rows.append(
            [
                title,
                fmt(ms, 0),
                fmt(vs_django),
                sign_in,
                send,
                close,
                sign_in + send + close,
                fmt(ms / rtt_ms, 1),
            ]
        )
        report.figures[f"single_send_ms_{key}_{rtt_ms}ms"] = ms
    report.add(
        table(
            f"5. Latency, {rtt_ms} ms round trip: one document email (100 KB PDF) on a new connection, "
            f"{singles} interleaved rounds; medians; round trips as the proxy counted them",
            ["contender", "ms", "x Django", "sign-in", "send", "close", "round trips", "time in round trips"],
            rows,
        )
    )
    if rtt_ms != TARGET_RTT_MS:
        return
    report.judge(
        f"{rtt_ms} ms: one connection, project >= {TARGET_THROUGHPUT:g}x Django's msg/s",
        f"{throughput:.2f}x",
        throughput >= TARGET_THROUGHPUT,
    )
    ratio = median_ratio(single["project"], single["django"])
    sign_in, send, close = _median_phases(phases["project"])
    d_sign_in, d_send, d_close = _median_phases(phases["django"])
    measured = f"{ratio:.2f}x ({statistics.median(single['project']) / rtt:.1f} vs "
    measured += f"{statistics.median(single['django']) / rtt:.1f} round trips of time)"
    if ratio > TARGET_SINGLE:
        measured += (
            f"; sign-in takes {sign_in} of the project's {sign_in + send + close} round trips "
            f"(Django: {d_sign_in} of {d_sign_in + d_send + d_close}), besides TCP's own"
        )
    report.judge(
        f"{rtt_ms} ms: one document email on a new connection <= {TARGET_SINGLE:g}x Django's time",
        measured,
        ratio <= TARGET_SINGLE,
    )


def run(
    messages: int = MESSAGES,
    rounds: int = ROUNDS,
    singles: int = SINGLES,
    round_trips_ms: Sequence[int] = ROUND_TRIPS_MS,
    report: Report | None = None,
) -> Report:
    fake_aws_environment()
    report = report or Report("5. latency")
    with tempfile.TemporaryDirectory() as tmp:
        tls = TlsFiles.create(Path(tmp))
        with ExtendedSink(tls) as sink, LatencyProxy(sink.port, delay=0.0) as proxy:
            contenders = peers(proxy.port, tls.ca_bundle)
            for rtt_ms in round_trips_ms:
                measure(report, sink, proxy, contenders, rtt_ms, messages, rounds, singles)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=MESSAGES, help="per contender, over one connection")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--singles", type=int, default=SINGLES, help="rounds of the new-connection send")
    parser.add_argument("--rtt", type=int, nargs="+", default=list(ROUND_TRIPS_MS), help="round trips, ms")
    parser.add_argument("--quick", action="store_true", help="smoke run: 40 messages, 3 single sends")
    parser.add_argument("--serve", metavar="CHAIN", help=argparse.SUPPRESS)  # the server's child process
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    if args.quick:
        args.messages, args.rounds, args.singles = 40, 2, 3
    report = run(args.messages, args.rounds, args.singles, args.rtt)
    print(
        table(
            "Targets", ["benchmark", "target", "measured", "verdict"], [v.row() for v in report.verdicts], 2
        )
    )


if __name__ == "__main__":
    main()
