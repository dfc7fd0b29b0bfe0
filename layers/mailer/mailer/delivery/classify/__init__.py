"""Turn what smtplib, ssl, sockets and SES raise into a category, a stage and a fix-it hint.

smtp.SMTP_RULES and ses.SES_RULES are ordered tables, read top to bottom, first match wins;
categories.Category lists what they produce, hints.HINTS every text the user reads.
"""

from __future__ import annotations

from mailer.delivery.classify.categories import Category
from mailer.delivery.classify.ses import classify_ses_error
from mailer.delivery.classify.smtp import (
    ServerContext,
    classify_smtp_error,
    every_visible_recipient_refused,
    insecure_auth_refused,
    starttls_unavailable,
)

__all__ = [
    "Category",
    "ServerContext",
    "classify_ses_error",
    "classify_smtp_error",
    "every_visible_recipient_refused",
    "insecure_auth_refused",
    "starttls_unavailable",
]
