"""/settings/{profile}/test and /settings/test: a real message that says what failed and how to fix it."""

from __future__ import annotations

from aws_lambda_powertools.event_handler.api_gateway import Router

from mailer.api import CurrentCaller, problem_responses
from mailer.observability import metrics
from mailer.routes import Wired
from mailer.settings.check import AccountTestResult
from mailer.settings.models import Profile, TestSavedInput, TestUnsavedInput

router = Router()


def _counted(result: AccountTestResult) -> AccountTestResult:
    metrics.add_metric(name="TestSendOk" if result.ok else "TestSendFailed", unit="Count", value=1)
    return result


@router.post(
    "/settings/<profile>/test",
    summary="Send a test message with saved settings",
    tags=["test"],
    operation_id="testSavedSettings",
    responses=problem_responses(404, 409, 429),
)
def test_saved(
    profile: Profile, body: TestSavedInput, caller: CurrentCaller, svc: Wired
) -> AccountTestResult:
    return _counted(svc.account_test.saved(caller, profile, body.to))


@router.post(
    "/settings/test",
    summary="Send a test message with settings not yet saved",
    tags=["test"],
    operation_id="testUnsavedSettings",
    responses=problem_responses(404, 409, 429),
)
def test_unsaved(body: TestUnsavedInput, caller: CurrentCaller, svc: Wired) -> AccountTestResult:
    return _counted(svc.account_test.unsaved(caller, body))
