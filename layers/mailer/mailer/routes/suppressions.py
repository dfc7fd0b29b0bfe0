"""/suppressions: the addresses the company's mail does not go to.

The address is the last path segment (`/suppressions/dana%40example.com`, or with a plain `@`); it
is decoded once and checked as an email address, so a malformed one is a 422 naming `email`.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path

from mailer.api import CurrentCaller, problem_responses
from mailer.errors import InvalidInput
from mailer.routes import Wired
from mailer.suppression.models import Suppression, SuppressionInput, SuppressionList
from mailer.work_orders.models import valid_address

router = Router()
AddressPath = Annotated[str, Path(max_length=400, description="The address, URL-encoded or not.")]


def _address(raw: str) -> str:
    address = unquote(raw)
    if not valid_address(address):
        raise InvalidInput.on("email", "not a valid email address")
    return address


@router.get(
    "/suppressions",
    summary="The addresses the company's mail does not go to",
    tags=["suppressions"],
    operation_id="listSuppressions",
    responses=problem_responses(),
)
def list_suppressions(caller: CurrentCaller, svc: Wired) -> SuppressionList:
    return SuppressionList(items=svc.suppressions.list(caller))


@router.put(
    "/suppressions/<email>",
    summary="Put an address on the suppression list (admin)",
    tags=["suppressions"],
    operation_id="putSuppression",
    responses=problem_responses(),
)
def put_suppression(
    email: AddressPath, body: SuppressionInput, caller: CurrentCaller, svc: Wired
) -> Suppression:
    return svc.suppressions.add_manual(caller, _address(email))


@router.delete(
    "/suppressions/<email>",
    summary="Take an address off the suppression list (admin)",
    tags=["suppressions"],
    operation_id="deleteSuppression",
    responses={204: {"description": "Off the list", "content": {}}, **problem_responses(404, success=None)},
)
def delete_suppression(email: AddressPath, caller: CurrentCaller, svc: Wired) -> Response[str]:
    svc.suppressions.remove(caller, _address(email))
    return Response(status_code=204, body="")
