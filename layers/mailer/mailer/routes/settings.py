"""/providers and /settings/{profile}."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from pydantic import BaseModel

from mailer.api import CurrentCaller, problem_responses
from mailer.delivery.providers import PROVIDERS
from mailer.observability import metrics
from mailer.routes import Wired
from mailer.settings.models import Profile, SettingsInput, SettingsView

router = Router()


class ProviderLimits(BaseModel):
    """The preset's sending budget: what a null in the settings' `limits` stands for."""

    per_minute: int | None
    per_day: int | None
    connections: int | None


class Provider(BaseModel):
    id: str
    name: str
    host: str
    port: int
    security: str
    hint: str
    limits: ProviderLimits


@router.get(
    "/providers",
    summary="Mail provider presets",
    tags=["settings"],
    operation_id="listProviders",
    responses=problem_responses(),
)
def list_providers(caller: CurrentCaller) -> list[Provider]:
    return [Provider.model_validate(p.public()) for p in PROVIDERS.values()]


@router.get(
    "/settings/<profile>",
    summary="Read email settings",
    tags=["settings"],
    operation_id="getSettings",
    responses=problem_responses(404),
)
def get_settings(profile: Profile, caller: CurrentCaller, svc: Wired) -> SettingsView:
    return svc.settings.describe(caller, profile)


@router.put(
    "/settings/<profile>",
    summary="Save email settings",
    tags=["settings"],
    operation_id="putSettings",
    responses=problem_responses(409),
)
def put_settings(
    profile: Profile, settings: SettingsInput, caller: CurrentCaller, svc: Wired
) -> SettingsView:
    saved = svc.settings.save(caller, profile, settings)
    metrics.add_metric(name="SettingsSaved", unit="Count", value=1)
    return svc.settings.with_usage(caller, saved)


@router.delete(
    "/settings/<profile>",
    summary="Delete email settings and their password",
    tags=["settings"],
    operation_id="deleteSettings",
    responses={204: {"description": "Deleted", "content": {}}, **problem_responses(404, success=None)},
)
def delete_settings(profile: Profile, caller: CurrentCaller, svc: Wired) -> Response[str]:
    svc.settings.delete(caller, profile)
    return Response(status_code=204, body="")
