"""HTTP routes, one Powertools Router per domain; each function's app includes the routers it serves.

A route parses, calls one service method and returns: the caller and the services come in through
`Depends`, so tests can swap them with `app.dependency_overrides`.
"""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Depends

from mailer.services import Services, services

Wired = Annotated[Services, Depends(services)]
