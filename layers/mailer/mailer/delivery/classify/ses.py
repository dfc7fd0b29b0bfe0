"""Amazon SES error codes -> Failure, through one ordered table (SES_RULES): first match wins."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailer.delivery.classify.categories import Category
from mailer.delivery.classify.hints import Hint, render
from mailer.delivery.failures import Failure

NOT_VERIFIED = r"not verified|did not have authority to send"


@dataclass(frozen=True)
class SesRule:
    """`code` must match the whole SES error code; `message`, if set, must be found in its message
    (any case)."""

    code: str
    category: Category
    hint: Hint
    transient: bool = False
    stage: str = "data"
    message: str | None = None

    def matches(self, code: str, message: str) -> bool:
        return re.fullmatch(self.code, code) is not None and (
            self.message is None or re.search(self.message, message, re.IGNORECASE) is not None
        )


SES_RULES: tuple[SesRule, ...] = (
    SesRule(
        "MessageRejected|BadRequestException",
        Category.SES_IDENTITY_NOT_VERIFIED,
        Hint.SES_IDENTITY_NOT_VERIFIED,
        message=NOT_VERIFIED,
    ),
    SesRule("MessageRejected|BadRequestException", Category.SES_MESSAGE_REJECTED, Hint.SES_MESSAGE_REJECTED),
    SesRule(
        "MailFromDomainNotVerifiedException",
        Category.SES_IDENTITY_NOT_VERIFIED,
        Hint.SES_IDENTITY_NOT_VERIFIED,
    ),
    SesRule("AccessDeniedException", Category.SES_ACCESS_DENIED, Hint.SES_ACCESS_DENIED),
    SesRule(
        "AccountSuspendedException|SendingPausedException",
        Category.SES_SENDING_PAUSED,
        Hint.SES_SENDING_PAUSED,
        stage="connect",
    ),
    SesRule(
        "TooManyRequestsException|LimitExceededException|ThrottlingException",
        Category.THROTTLED,
        Hint.SES_THROTTLED,
        transient=True,
    ),
    SesRule("NotFoundException", Category.SES_CONFIGURATION, Hint.SES_CONFIGURATION),
    SesRule(".*ServiceUnavailable", Category.SES_ERROR, Hint.SES_ERROR, transient=True),
    SesRule(".*", Category.SES_ERROR, Hint.SES_ERROR),
)


def ses_rule_for(code: str, message: str) -> SesRule:
    return next(rule for rule in SES_RULES if rule.matches(code, message))


def classify_ses_error(code: str, message: str, from_email: str) -> Failure:
    rule = ses_rule_for(code, message)
    return Failure(
        stage=rule.stage,
        category=rule.category,
        transient=rule.transient,
        server_message=f"{code}: {message}"[:500],
        hint=render(rule.hint, code=code, message=message, from_email=from_email),
    )
