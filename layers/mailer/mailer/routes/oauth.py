"""/oauth/{provider}/start and /oauth/callback: connecting a Microsoft 365 or Google account."""

from __future__ import annotations

from typing import Annotated, Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query

from mailer.api import CurrentCaller, problem_responses
from mailer.routes import Wired
from mailer.settings.connect import CallbackQuery, OAuthStart, OAuthStartInput

router = Router()


@router.post(
    "/oauth/<provider>/start",
    summary="Start connecting a Microsoft 365 or Google account (OAuth)",
    tags=["settings"],
    operation_id="startOAuth",
    responses=problem_responses(409),
)
def start_oauth(
    provider: Literal["microsoft", "google"], body: OAuthStartInput, caller: CurrentCaller, svc: Wired
) -> OAuthStart:
    return svc.oauth_connect.start(caller, provider, body)


@router.get(
    "/oauth/callback",
    summary="Where the provider sends the browser back (no JWT: the state identifies the caller)",
    tags=["settings"],
    operation_id="completeOAuth",
    responses={
        302: {"description": "Back to return_to, with oauth=connected or oauth=error", "content": {}},
        200: {"description": "A page saying whether the account is connected", "content": {"text/html": {}}},
    }
    | problem_responses(400, success=None),
)
def complete_oauth(
    svc: Wired,
    state: Annotated[str | None, Query(max_length=200)] = None,
    code: Annotated[str | None, Query(max_length=2048)] = None,
    error: Annotated[str | None, Query(max_length=100)] = None,
    error_description: Annotated[str | None, Query(max_length=500)] = None,
) -> Response[str]:
    answer = svc.oauth_connect.callback(CallbackQuery(state=state, code=code, error=error))
    headers = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
    if answer.location:
        return Response(status_code=302, body="", headers=headers | {"Location": answer.location})
    return Response(
        status_code=200, content_type="text/html; charset=utf-8", body=answer.html or "", headers=headers
    )
