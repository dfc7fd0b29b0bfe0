"""`Idempotency-Key` on the routes that send: a retried request gets the first answer again.

A route takes part with one line, `@idempotent` right under its route decorator:

    @router.post("/documents/email", ..., responses=problem_responses(404, 409, 410, 413, 502))
    @idempotent
    def send_document(body: DocumentEmailRequest, caller: CurrentCaller, svc: Wired) -> SentLogEntry:

The route then takes an optional `Idempotency-Key` header, described in the OpenAPI document with
it. Without the header nothing changes. With it:

- the key is 1-255 visible ASCII characters, else 422 naming `Idempotency-Key`;
- it belongs to the caller's tenant and user: the same key from two users is two keys;
- the first request runs, and its answer is kept for 24 hours. The same key with the same request
  (route, path parameters and body, as validated) answers it again, same status and body, with
  `Idempotent-Replayed: true`, and runs nothing;
- while the first still runs, 409;
- the same key with another request, 422 naming `Idempotency-Key`.

A first request that fails leaves the key free, so a retry with it runs again. Nothing was sent, or
the failure is the caller's to fix (settings saved, a password corrected, an upload finished). A
double click during the request gets the 409; after it, the retry fails or sends as a new request
would. One failure is kept and replayed instead: a send that timed out or lost its connection
after the message was handed over (stage `data`). The server may have taken the message, so a
retry could deliver it twice.

Powertools Idempotency does the bookkeeping: a conditional put claims the key, the answer is saved
on success, and the record is deleted when the route raises. The key record expires 24 hours after
the answer. While it runs, a record holds the key only until the Lambda invocation that wrote it
times out, so a crashed request frees its key then. That time comes from the invocation's context,
which the function's handler registers (`register_lambda_context`).
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar, get_args, get_origin, get_type_hints

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.depends import Depends
from aws_lambda_powertools.event_handler.openapi.params import Header
from aws_lambda_powertools.event_handler.request import Request
from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    BaseError,
    IdempotencyAlreadyInProgressError,
    IdempotencyValidationError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import TypeAdapter
from pydantic_core import to_jsonable_python

from mailer.api import JSON, PROBLEM_JSON, AnswerAsIs, CurrentCaller, problem
from mailer.delivery.classify.categories import Category
from mailer.delivery.failures import DeliveryFailed
from mailer.errors import Conflict, InvalidInput, MailerError, ServiceUnavailable
from mailer.identity import Caller
from mailer.observability import logger
from mailer.services import Services, services

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
KEEP_SECONDS = 24 * 60 * 60
MAX_KEY_LENGTH = 255
KEY_PREFIX = "idempotency"  # one namespace for every route and function: a key is for one request
# Failures after the message was handed over, with no answer from the server: it may have taken it.
OUTCOME_UNKNOWN = frozenset({Category.TIMEOUT, Category.CONNECTION_LOST})

IdempotencyKey = Annotated[
    str,
    Header(
        alias=HEADER,
        description=(
            "Makes the request safe to retry: 1-255 visible ASCII characters, new for each request "
            "(a UUID, say), kept per tenant and user. Within 24 hours the same key with the same "
            f"request gets the first answer again (same status and body, `{REPLAYED}: true`) and "
            "sends nothing. While the first is still running: 409. With another request: 422 naming "
            f"`{HEADER}`. A failed first request leaves the key free for a retry, unless the mail "
            "server may have taken the message (a timeout after it was sent): that 502 is kept."
        ),
        # Checked by `_checked`, which names the header as it is written; the schema says the same.
        json_schema_extra={"minLength": 1, "maxLength": MAX_KEY_LENGTH, "pattern": "^[!-~]+$"},
    ),
]


def _replayed(response: dict[str, Any], idempotent_data: DataRecord) -> AnswerAsIs:
    """Powertools' response hook: the kept answer, sent again as it was, marked as a replay."""
    logger.info("idempotent answer replayed", extra={"status": response["status"]})
    replay = Response(
        status_code=response["status"],
        content_type=response["content_type"],
        body=response["body"],
        headers={REPLAYED: "true"},
    )
    return AnswerAsIs(replay)


CONFIG = IdempotencyConfig(
    event_key_jmespath="scope",  # [tenant, user, key]
    payload_validation_jmespath="request",  # the operation, its path parameters and body
    raise_on_no_idempotency_key=True,
    expires_after_seconds=KEEP_SECONDS,
    hash_function="sha256",
    response_hook=_replayed,
)


def register_lambda_context(context: LambdaContext) -> None:
    """Each invocation's context, so a running request holds its key only until the invocation
    times out (a handler of a function with idempotent routes calls this first)."""
    CONFIG.register_lambda_context(context)


@dataclass(frozen=True)
class KeyScope:
    """Whose key it is and for which route; resolved per request like the route's own dependencies."""

    caller: Caller
    operation: str  # "POST /emails/{email_id}/resend"
    services: Services


def _scope(request: Request, caller: CurrentCaller, svc: Annotated[Services, Depends(services)]) -> KeyScope:
    return KeyScope(caller, f"{request.method} {request.route}", svc)


Scope = Annotated[KeyScope, Depends(_scope)]


def _checked(key: str) -> str:
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not all("!" <= c <= "~" for c in key):
        raise InvalidInput.on(
            HEADER, f"must be 1 to {MAX_KEY_LENGTH} visible ASCII characters, without spaces"
        )
    return key


def _outcome_unknown(exc: Exception) -> bool:
    return (
        isinstance(exc, DeliveryFailed)
        and exc.failure.stage == "data"
        and exc.failure.category in OUTCOME_UNKNOWN
    )


def _kept_problem(exc: MailerError) -> dict[str, Any]:
    """The problem answer as the app's MailerError handler writes it (mailer.api)."""
    response = problem(exc.status, exc.title, exc.detail, exc.errors, **exc.extra())
    return {"status": response.status_code, "content_type": PROBLEM_JSON, "body": response.body}


@dataclass(frozen=True)
class Accepted:
    """A route's answer that is 202 Accepted (queued) rather than 200, with the same body type."""

    value: Any


def _answered(result: Any, answer: TypeAdapter[Any]) -> Any:
    """What the app sends: an Accepted answer as a 202 response (raised as is, past the response
    validation that expects the 200 model), anything else as the route gave it."""
    if isinstance(result, Accepted):
        body = json.dumps(answer.dump_python(result.value, mode="json", by_alias=True), separators=(",", ":"))
        raise AnswerAsIs(Response(status_code=202, content_type=JSON, body=body))
    return result


def _run_once(
    scope: KeyScope, key: str, request: dict[str, Any], call: Callable[[], Any], answer: TypeAdapter[Any]
) -> Any:
    """The route's answer: its own on the first run under the key, else the kept one raised as is."""
    first: dict[str, Any] = {}

    def first_run(request: dict[str, Any]) -> dict[str, Any]:
        """What Powertools keeps: the answer as the app sends it (JSON as Powertools serializes it)."""
        try:
            first["result"] = result = call()
        except MailerError as exc:
            if not _outcome_unknown(exc):
                raise  # Powertools deletes the record: a retry runs again
            first["error"] = exc
            return _kept_problem(exc)
        status, value = (202, result.value) if isinstance(result, Accepted) else (200, result)
        body = json.dumps(answer.dump_python(value, mode="json", by_alias=True), separators=(",", ":"))
        return {"status": status, "content_type": JSON, "body": body}

    data = {"scope": [scope.caller.tenant_id, scope.caller.user_id, key], "request": request}
    once = idempotent_function(
        first_run,
        data_keyword_argument="request",
        persistence_store=scope.services.idempotency,
        config=CONFIG,
        key_prefix=KEY_PREFIX,
    )
    try:
        outcome = once(request=data)
    except IdempotencyAlreadyInProgressError:
        logger.info("idempotency key in use", extra={"operation": scope.operation})
        raise Conflict(
            f"A request with this {HEADER} is still running. Retry in a few seconds: once it is done, "
            "its answer is given again."
        ) from None
    except IdempotencyValidationError:
        logger.info("idempotency key reused for another request", extra={"operation": scope.operation})
        raise InvalidInput.on(
            HEADER, "was used for another request in the last 24 hours; send a new key with a new request"
        ) from None
    except BaseError as exc:  # the idempotency table: unreachable, throttled, or missing
        logger.warning("idempotency table unavailable", extra={"error": str(exc)[:300]})
        raise ServiceUnavailable(
            "Idempotency keys cannot be checked right now; retry with the same key."
        ) from None
    if isinstance(outcome, AnswerAsIs):
        raise outcome
    if "error" in first:
        raise first["error"]
    return _answered(first["result"], answer)


def _injected(hint: Any) -> bool:
    """A parameter the resolver supplies (Depends, Request), as opposed to one the request carries."""
    if hint is Request:
        return True
    return get_origin(hint) is Annotated and any(isinstance(m, Depends) for m in get_args(hint)[1:])


Route = TypeVar("Route", bound=Callable[..., Any])


def idempotent(route: Route) -> Route:
    """Make a POST route idempotent under the `Idempotency-Key` header (see the module docstring).

    The route keeps its own signature; the handler Powertools sees adds the header and the scope.
    It answers 200 with the route's return type, which must be a model or JSON, not a Response.
    """
    hints = get_type_hints(route, include_extras=True)
    signature = inspect.signature(route)
    if {"idempotency_key", "idempotency"} & signature.parameters.keys():
        raise TypeError(f"{route.__qualname__} already has a parameter named idempotency_key or idempotency")
    inputs = [name for name in signature.parameters if not _injected(hints.get(name))]
    returns: Any = hints["return"]  # required: the answer is kept as this type serializes
    answer: TypeAdapter[Any] = TypeAdapter(returns)

    @functools.wraps(route)
    def handler(*, idempotency_key: str | None, idempotency: KeyScope, **arguments: Any) -> Any:
        if idempotency_key is None:
            return _answered(route(**arguments), answer)
        key = _checked(idempotency_key)
        given = {name: to_jsonable_python(arguments[name]) for name in inputs}
        request = {"operation": idempotency.operation, "arguments": given}
        return _run_once(idempotency, key, request, lambda: route(**arguments), answer)

    added = {"idempotency_key": IdempotencyKey, "idempotency": Scope}
    parameters = [
        p.replace(annotation=hints.get(p.name, p.annotation)) for p in signature.parameters.values()
    ]
    parameters += [
        inspect.Parameter(
            "idempotency_key", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=IdempotencyKey
        ),
        inspect.Parameter("idempotency", inspect.Parameter.KEYWORD_ONLY, annotation=Scope),
    ]
    # Powertools reads parameters from the signature and Depends from the annotations.
    handler.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=parameters, return_annotation=returns
    )
    handler.__annotations__ = hints | added
    return handler  # type: ignore[return-value]
