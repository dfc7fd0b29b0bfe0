"""/t/{token}.gif: the open-tracking pixel, public (a mail client fetches it, with no sign-in)."""

from __future__ import annotations

import base64
from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path

from mailer.errors import MailerError
from mailer.observability import logger
from mailer.routes import Wired
from mailer.tracking.opens import PIXEL_GIF, token_of_path

PIXEL_GIF_BASE64 = base64.b64encode(PIXEL_GIF).decode()

router = Router()
# Every answer is this one: a forged, expired or unknown token learns nothing from it.
PIXEL_HEADERS = {"Cache-Control": "no-store, no-cache, max-age=0, private", "Referrer-Policy": "no-referrer"}


@router.get(
    "/t/<name>",
    summary="The open-tracking pixel (a 1x1 GIF); a valid token records an open of its email",
    tags=["tracking"],
    operation_id="openPixel",
    responses={
        200: {"description": "A 1x1 transparent GIF, whatever the token", "content": {"image/gif": {}}}
    },
)
def open_pixel(name: Annotated[str, Path()], svc: Wired) -> Response[str]:
    try:
        svc.tracking.record_open(token_of_path(name))
    except MailerError:  # the sent log was unavailable: the open is lost, the image is not
        logger.warning("open not recorded")
    # Base64 for API Gateway, already: response validation would try to read raw bytes as text.
    answer = Response(status_code=200, content_type="image/gif", body=PIXEL_GIF_BASE64, headers=PIXEL_HEADERS)
    answer.base64_encoded = True
    return answer
