"""Lambda's SQS event source on this machine: feeds the outbox queue to the email worker.

A thread long-polls the queue on moto, hands each batch to the worker's real `lambda_handler` as an
SQS event shaped like Lambda's, then does what Lambda does with the answer: with
ReportBatchItemFailures, the records named in `batchItemFailures` stay in the queue and the others
are deleted; a handler that raises (Powertools raises when every record of a batch failed) leaves the
whole batch. A record left in the queue comes back after `retry_delay` seconds instead of the queue's
visibility timeout (12 minutes), and after the queue's maxReceiveCount receives moto's redrive moves
it to the dead-letter queue, as SQS would.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from local.events import sqs_event
from local.handlers import FunctionImportError, Functions
from local.template import QueueSource, Template

HANDLED_LOG_MESSAGE = "outbox message handled"  # what the worker logs, with `outcome`, per record


@dataclass(frozen=True)
class RecordResult:
    message_id: str
    label: str  # "reminder for WO-1001 (tenant demo)"
    ok: bool
    detail: str  # the worker's outcome, or why the record failed
    receive_count: int


def failed_ids(result: Any, message_ids: list[str]) -> set[str] | None:
    """The records Lambda keeps in the queue after a ReportBatchItemFailures response; None = all.

    Lambda's rules: no response, an empty one or an empty/null list is complete success; a response
    that is not an object, or an item with a missing, empty or unknown itemIdentifier, fails the
    whole batch.
    """
    if result is None:
        return set()
    if not isinstance(result, dict):
        return None
    failures = result.get("batchItemFailures")
    if not failures:
        return set()
    if not isinstance(failures, list):
        return None
    found = set()
    for item in failures:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not identifier or identifier not in message_ids:
            return None
        found.add(identifier)
    return found


def describe(body: str) -> str:
    """ "reminder for WO-1001 (tenant demo)" from a queue message body, as far as it can be read."""
    try:
        data = json.loads(body)
    except ValueError:
        return "an unreadable message"
    if not isinstance(data, dict):
        return "an unreadable message"
    tenant = data.get("tenant_id")
    about = f" (tenant {tenant})" if tenant else ""
    if "date" in data and "automation" not in data:  # the plan queue's: a company's daily run
        return f"daily run of {data['date']}{about}"
    automation = str(data.get("automation") or "message").replace("_", "-")
    record = data.get("record_id") or data.get("work_order_id")
    return f"{automation} for {record or '?'}{about}"


class _OutcomeCapture(logging.Filter):
    """Collects the worker's per-record outcome while the poller invokes it, and keeps that JSON line
    off the console: the poller prints one readable line per record instead."""

    def __init__(self) -> None:
        super().__init__()
        self.active = False
        self.outcomes: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if self.active and record.getMessage() == HANDLED_LOG_MESSAGE:
            self.outcomes.append(str(getattr(record, "outcome", "handled")))
            return False
        return True


class QueuePoller:
    """Start with `start()`; `stop()` returns within about a second (one long poll)."""

    def __init__(
        self,
        functions: Functions,
        template: Template,
        source: QueueSource,
        *,
        endpoint_url: str,
        out: Callable[[str], None] = print,
        retry_delay: int = 2,
        wait_seconds: int = 1,
    ) -> None:
        self.functions = functions
        self.source = source
        self.out = out
        self.retry_delay = retry_delay
        self.wait_seconds = wait_seconds
        names = template.names
        self.region = names.region
        self.queue_url = names.ref(source.queue)
        self.queue_arn = names.attribute(source.queue, "Arn")
        self.dead_letter_queue = (
            names.queue_name(source.dead_letter_queue) if source.dead_letter_queue else None
        )
        self.sqs = boto3.client(
            "sqs",
            endpoint_url=endpoint_url,
            region_name=names.region,
            aws_access_key_id="local",
            aws_secret_access_key="local",
            config=Config(
                retries={"max_attempts": 2, "mode": "standard"},
                connect_timeout=2,
                read_timeout=wait_seconds + 10,
            ),
        )
        self._capture = _OutcomeCapture()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._receive_failing = False
        self._logger: Any = None
        self.batches = 0  # invocations so far

    def start(self) -> QueuePoller:
        module = self.functions.load(self.source.function)
        logger = getattr(module, "logger", None)
        if logger is not None and callable(getattr(logger, "addFilter", None)):
            logger.addFilter(self._capture)
            self._logger = logger
        self._thread = threading.Thread(target=self._run, name=f"poll-{self.source.queue}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
        logger, self._logger = self._logger, None
        if logger is not None:
            logger.removeFilter(self._capture)
        self.sqs.close()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                messages = self._receive()
            except (BotoCoreError, ClientError) as exc:
                if not self._receive_failing:
                    self._say(f"cannot read {self.source.queue} ({exc}); trying again every second")
                self._receive_failing = True
                self._stop.wait(1)
                continue
            if self._receive_failing:
                self._say(f"reading {self.source.queue} again")
                self._receive_failing = False
            if not messages:
                continue
            if self._stop.is_set():  # stopping: give them back rather than hide them for 12 minutes
                self._release(messages)
                return
            try:
                self.handle_batch(messages)
            except Exception:  # noqa: BLE001 - the poller's own trouble: report it and keep polling
                traceback.print_exc(file=sys.stderr)
                self._say("a batch could not be handled (traceback on stderr); it will be delivered again")

    def _receive(self) -> list[dict[str, Any]]:
        response = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=min(self.source.batch_size, 10),
            WaitTimeSeconds=self.wait_seconds,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return list(response.get("Messages") or [])

    def handle_batch(self, messages: list[dict[str, Any]]) -> list[RecordResult]:
        """Invoke the function with one batch and settle every record as Lambda would."""
        records = sqs_event(messages, self.queue_arn, self.region)["Records"]
        ids = [r["messageId"] for r in records]
        reasons: dict[str, str] = {}
        failed: set[str] | None
        with self.functions.lock:
            self._capture.outcomes = []
            self._capture.active = True
            try:
                result = self.functions.invoke(self.source.function, {"Records": records})
            except FunctionImportError as exc:
                failed, reasons = None, dict.fromkeys(ids, str(exc))
            except Exception as exc:  # noqa: BLE001 - an invocation error: the batch stays, the stack runs
                failed = None
                if type(exc).__name__ != "BatchProcessingError":  # every record failed: reasons below
                    traceback.print_exc(file=sys.stderr)
                    reasons = dict.fromkeys(ids, f"the handler raised {_short(exc)}")
            else:
                failed = failed_ids(result, ids) if self.source.report_failures else set()
                if failed is None:
                    reasons = dict.fromkeys(ids, f"invalid batch response {result!r}")
            finally:
                self._capture.active = False
            reasons = self._record_errors() | reasons
            outcomes = list(self._capture.outcomes)
        self.batches += 1
        if failed is None:
            failed = set(ids)
        self._settle(messages, failed)
        results = self._results(records, failed, reasons, outcomes)
        for result in results:
            self._report(result)
        return results

    def _record_errors(self) -> dict[str, str]:
        """Why each failed record failed, from the worker's batch processor (kept until its next batch)."""
        module = self.functions.load(self.source.function)
        processor = getattr(module, "processor", None)
        fail_messages = getattr(processor, "fail_messages", None) or []
        exceptions = getattr(processor, "exceptions", None) or []
        errors = {}
        for record, info in zip(fail_messages, exceptions, strict=False):
            message_id = getattr(record, "message_id", None)
            if message_id and isinstance(info, tuple) and len(info) > 1 and info[1] is not None:
                errors[message_id] = _short(info[1])
        return errors

    def _settle(self, messages: list[dict[str, Any]], failed: set[str]) -> None:
        done = [m for m in messages if m["MessageId"] not in failed]
        retry = [m for m in messages if m["MessageId"] in failed]
        try:
            if done:
                self._check(
                    self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=_entries(done)),
                    "delete",
                )
            if retry:
                entries = [e | {"VisibilityTimeout": self.retry_delay} for e in _entries(retry)]
                self._check(
                    self.sqs.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=entries),
                    "make visible again",
                )
        except (BotoCoreError, ClientError) as exc:
            self._say(f"could not settle a batch on {self.source.queue}: {exc}")

    def _release(self, messages: list[dict[str, Any]]) -> None:
        entries = [e | {"VisibilityTimeout": 0} for e in _entries(messages)]
        try:
            self.sqs.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=entries)
        except (BotoCoreError, ClientError):
            pass  # they come back after the queue's visibility timeout instead

    def _check(self, response: dict[str, Any], action: str) -> None:
        for failure in response.get("Failed") or []:
            self._say(f"could not {action} message {failure.get('Id')}: {failure.get('Message')}")

    def _results(
        self,
        records: list[dict[str, Any]],
        failed: set[str],
        reasons: dict[str, str],
        outcomes: list[str],
    ) -> list[RecordResult]:
        succeeded = [r for r in records if r["messageId"] not in failed]
        # The worker logs one outcome per record it finished, in batch order.
        by_id = (
            dict(zip([r["messageId"] for r in succeeded], outcomes, strict=True))
            if len(outcomes) == len(succeeded)
            else {}
        )
        return [
            RecordResult(
                message_id=r["messageId"],
                label=describe(r["body"]),
                ok=r["messageId"] not in failed,
                detail=(
                    reasons.get(r["messageId"], "failed")
                    if r["messageId"] in failed
                    else by_id.get(r["messageId"], "done")
                ),
                receive_count=int(r["attributes"].get("ApproximateReceiveCount") or 1),
            )
            for r in records
        ]

    def _report(self, result: RecordResult) -> None:
        if result.ok:
            self._say(f"{result.label}: {result.detail}")
            return
        limit = self.source.max_receive_count
        attempt = f"attempt {result.receive_count}" + (f" of {limit}" if limit else "")
        if limit and result.receive_count >= limit and self.dead_letter_queue:
            then = f"no retry left: SQS moves it to the dead-letter queue {self.dead_letter_queue}"
        else:
            then = f"retry in {self.retry_delay} s"
        self._say(f"{result.label}: not done ({attempt}: {result.detail}); {then}")

    def _say(self, text: str) -> None:
        self.out(f"[{datetime.now():%H:%M:%S}] outbox: {text}")


def _entries(messages: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
