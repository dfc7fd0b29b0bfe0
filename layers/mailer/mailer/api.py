"""What every HTTP function shares: the caller, problem+json errors, and their OpenAPI description."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Annotated, Any, cast

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Depends, Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.request import Request
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from mailer.errors import FieldError, MailerError
from mailer.identity import Caller, caller_from_claims
from mailer.templating.bounds import TemplateLimitExceeded

PROBLEM_JSON = "application/problem+json"
JSON = "application/json"
# No body of this API nests more than a few levels or needs a number longer than a few digits.
# Deeper or longer JSON is refused before validation: Python's parser and validators recurse per
# level, and int() refuses more than 4300 digits (sys.get_int_max_str_digits).
MAX_JSON_DEPTH = 32
MAX_NUMBER_DIGITS = 1000


class ProblemField(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    errors: list[ProblemField] = []
    category: str | None = None
    stage: str | None = None
    smtp_code: int | None = None
    server_message: str | None = None
    hint: str | None = None
    transient: bool | None = None


class AnswerAsIs(Exception):
    """A complete answer a route raises to have it sent as it is, past response validation: an
    idempotent replay (mailer.idempotency) is the first answer again, whatever its status."""

    def __init__(self, response: Response) -> None:
        super().__init__(f"answered {response.status_code}")
        self.response = response


def problem_responses(*statuses: int, success: int | None = 200) -> dict[int, Any]:
    """OpenAPI `responses` entries for the problem statuses a route can answer, and its success.

    Powertools documents the handler's return type only when a route gives no `responses`: the
    success entry is listed here without content, so Powertools fills in the return type. A route
    whose success is not 200 passes success=None and documents its own (201, 204).
    """
    descriptions = {
        400: "Bad request",
        401: "Not signed in",
        403: "Not allowed for this caller",
        404: "Not found",
        409: "Conflict",
        410: "Gone: the attachment is no longer kept",
        413: "Attachments too large",
        415: "The body is not sent as application/json",
        429: "A sending limit of the account is reached; nothing was sent (Retry-After says when to retry)",
        422: "Invalid request; `errors` names each field (`body` when it is not usable JSON)",
        502: "The mail server refused the send",
        503: "A backing service is unavailable; retry",
    }
    responses: dict[int, Any] = {
        s: {"description": descriptions[s], "content": {PROBLEM_JSON: {"model": Problem}}}
        for s in (401, 403, 415, 422, 503, *statuses)
    }
    if success is not None:
        responses[success] = {"description": "Success"}
    return responses


def problem(
    status: int,
    title: str,
    detail: str,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    body = problem_body(status, title, detail, errors, **extra)
    return Response(status_code=status, content_type=PROBLEM_JSON, body=json.dumps(body), headers=headers)


def problem_body(
    status: int, title: str, detail: str, errors: list[FieldError] | None = None, **extra: Any
) -> dict[str, Any]:
    """An RFC 9457 problem document, as every error answer carries it."""
    return {
        "type": f"https://errors.company-mail.dev/{status}",
        "title": title,
        "status": status,
        "detail": detail,
        "errors": [{"field": e.field, "message": e.message} for e in errors or []],
        **extra,
    }


def problem_of(exc: MailerError | RequestValidationError, prefix: str = "") -> dict[str, Any]:
    """The problem document an error would be answered with; `prefix` names where in a larger
    body the fields are (`items[3]`), for answers that carry one problem per item."""
    if isinstance(exc, RequestValidationError):
        errors = [
            FieldError(f"{prefix}.{e.field}" if prefix else e.field, e.message)
            for e in validation_errors(exc)
        ]
        return problem_body(
            422, "Invalid request", "; ".join(f"{e.field}: {e.message}" for e in errors), errors
        )
    errors = [FieldError(f"{prefix}.{e.field}" if prefix else e.field, e.message) for e in exc.errors]
    return problem_body(exc.status, exc.title, exc.detail, errors, **exc.extra())


def _refused_body(kind: str, message: str) -> RequestValidationError:
    return RequestValidationError([{"type": kind, "loc": ("body",), "msg": message, "input": None}])


def _number(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        if len(text) > MAX_NUMBER_DIGITS:
            raise _refused_body(
                "json_number_too_long", f"has a number of more than {MAX_NUMBER_DIGITS} digits"
            )
        return kind(text)

    return parse


def _too_deep(value: Any) -> bool:
    """Whether arrays and objects nest more than MAX_JSON_DEPTH levels; no recursion."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if depth > MAX_JSON_DEPTH:
            return True
        children = item.values() if isinstance(item, dict) else item
        pending.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def request_json(text: str) -> Any:
    """The resolver's JSON reader: json.loads, refusing with a `body` validation error (422) what
    would otherwise raise past the resolver's own JSON error (RecursionError, ValueError)."""
    deep = _refused_body("json_too_deep", f"is nested more than {MAX_JSON_DEPTH} levels deep")
    try:
        value = json.loads(text, parse_int=_number(int), parse_float=_number(float))
    except RecursionError:
        raise deep from None
    if isinstance(value, (dict, list)) and _too_deep(value):
        raise deep
    return value


def _media_type(event: Mapping[str, Any]) -> Mapping[str, Any]:
    """The event with its Content-Type in lower case: media types are case-insensitive, Powertools
    compares them as written (`Application/JSON` would be refused as not JSON)."""
    headers = event.get("headers")
    if not isinstance(headers, dict):
        return event
    given = headers.get("content-type")
    if not isinstance(given, str) or given == given.lower():
        return event
    return {**event, "headers": {**headers, "content-type": given.lower()}}


class JsonHttpResolver(APIGatewayHttpResolver):
    """The HTTP API resolver, reading bodies with request_json and media types in any case."""

    def __init__(self) -> None:
        super().__init__(enable_validation=True, json_body_deserializer=request_json)

    def resolve(self, event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
        return super().resolve(_media_type(event), context)


def _field_name(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [p for p in loc if p not in ("body", "path", "query", "header")]
    name = ""
    for part in parts:
        if isinstance(part, int):
            name = f"{name}[{part}]" if name else "body"
        else:
            name = f"{name}.{part}" if name else str(part)
    return name or "body"


def validation_errors(exc: RequestValidationError) -> list[FieldError]:
    found: list[FieldError] = []
    for error in exc.errors():
        loc = tuple(error.get("loc") or ())
        kind = error.get("type")
        if kind == "json_invalid":
            found.append(FieldError("body", "is not valid JSON"))
            continue
        message = str(error.get("msg") or "is not valid").removeprefix("Value error, ")
        if kind == "missing":
            message = "is required"
        elif kind == "extra_forbidden":
            message = "is not a known field"
        found.append(FieldError(_field_name(loc), message))
    return found


def install_problem_handlers(app: APIGatewayHttpResolver, logger: Logger) -> None:
    """Map every error to problem+json once, for all routes of the function."""

    @app.exception_handler(MailerError)
    def _mailer_error(exc: MailerError) -> Response:
        return problem(exc.status, exc.title, exc.detail, exc.errors, exc.headers(), **exc.extra())

    @app.exception_handler(AnswerAsIs)
    def _as_is(exc: AnswerAsIs) -> Response:
        return exc.response

    @app.exception_handler(TemplateLimitExceeded)
    def _template_over_a_bound(exc: TemplateLimitExceeded) -> Response:
        # Saved wording that only real values make too big to fill in (a preview, a document
        # email): the caller's to fix. Not a MailerError, for the outbox worker's sake.
        logger.info("template over a bound", extra={"field": exc.field})
        return problem(422, "Invalid request", exc.detail, [FieldError(exc.field, exc.message)])

    @app.exception_handler(RequestValidationError)
    def _invalid(exc: RequestValidationError) -> Response:
        errors = validation_errors(exc)
        logger.info("request rejected", extra={"fields": [e.field for e in errors]})
        detail = "; ".join(f"{e.field}: {e.message}" for e in errors)
        return problem(422, "Invalid request", detail, errors)

    @app.exception_handler(RequestUnsupportedContentType)
    def _not_json(_exc: RequestUnsupportedContentType) -> Response:
        # Not parsed as JSON: a text/plain body (fetch()'s default for a string) is a "simple"
        # cross-origin request that skips the CORS preflight.
        given = (app.current_event.headers.get("content-type") or "").split(";")[0].strip()
        message = f"must be sent with Content-Type: {JSON}"
        detail = f"The body was sent as {given}; send it as JSON with Content-Type: {JSON}."
        return problem(415, "Unsupported media type", detail, [FieldError("body", message)])

    @app.exception_handler(UnicodeDecodeError)
    def _undecodable(exc: UnicodeDecodeError) -> Response:
        # API Gateway hands a body that is not UTF-8 over base64-encoded; Powertools decodes it as
        # UTF-8 before validation and raises this.
        errors = [FieldError("body", "is not valid UTF-8 JSON")]
        return problem(422, "Invalid request", "body: is not valid UTF-8 JSON", errors)

    @app.not_found
    def _not_found(_exc: NotFoundError) -> Response:
        event = app.current_event
        return problem(404, "Not found", f"No route for {event.http_method} {event.path}.")

    @app.exception_handler(Exception)
    def _unexpected(exc: Exception) -> Response:
        logger.exception("unexpected error")
        return problem(500, "Internal error", "Something went wrong on our side; it has been logged.")


def current_caller(request: Request) -> Caller:
    """The caller, from the JWT authorizer's claims; a route takes it as `caller: CurrentCaller`."""
    event = cast(APIGatewayProxyEventV2, request.resolved_event)  # the HTTP API resolver's event
    return caller_from_claims(event.request_context.authorizer.jwt_claim)


CurrentCaller = Annotated[Caller, Depends(current_caller)]


def http_app(
    *routers: Router, logger: Logger, services: Callable[[], Any] | None = None
) -> APIGatewayHttpResolver:
    """One function's HTTP app: validation on, problem+json for every error, the domain routers, and
    the function's own services behind the routes' `Depends`."""
    from mailer import services as wiring

    app = JsonHttpResolver()
    install_problem_handlers(app, logger)
    if services is not None:
        app.dependency_overrides[wiring.services] = services
    for router in routers:
        app.include_router(router)
    return app
