"""Test account settings: POST /settings/{profile}/test and POST /settings/test."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from mailer.api import current_caller, install_problem_handlers, problem_responses
from mailer.config import MailerConfig
from mailer.services import Services
from mailer.settings.check import AccountTestResult, recipient_for_test, run_account_test
from mailer.settings.models import Profile, TestSavedInput, TestUnsavedInput

logger = Logger()
tracer = Tracer()
metrics = Metrics()
app = APIGatewayHttpResolver(enable_validation=True)
install_problem_handlers(app, logger)


@cache
def services() -> Services:
    return Services.from_config(MailerConfig.from_env())


def _record(result: AccountTestResult) -> AccountTestResult:
    metrics.add_metric(name="TestSendOk" if result.ok else "TestSendFailed", unit="Count", value=1)
    return result


@app.post(
    "/settings/<profile>/test",
    summary="Send a test message with saved settings",
    tags=["test"],
    responses=problem_responses(404, 409),
)
def test_saved(profile: Profile, body: TestSavedInput) -> AccountTestResult:
    caller = current_caller(app)
    svc = services()
    to = recipient_for_test(caller, profile, body.to)
    sending = svc.settings.saved_profile(caller, profile)
    return _record(
        run_account_test(caller, sending, to, config=svc.config, sent_log=svc.sent_log, logger=logger)
    )


@app.post(
    "/settings/test",
    summary="Send a test message with settings not yet saved",
    tags=["test"],
    responses=problem_responses(404, 409),
)
def test_unsaved(body: TestUnsavedInput) -> AccountTestResult:
    caller = current_caller(app)
    svc = services()
    to = recipient_for_test(caller, None, body.to)
    sending = svc.settings.unsaved_profile(caller, body, body.profile)
    return _record(
        run_account_test(caller, sending, to, config=svc.config, sent_log=svc.sent_log, logger=logger)
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
