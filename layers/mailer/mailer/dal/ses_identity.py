"""Amazon SES identities: the DKIM status of the identity a From address sends as (sesv2 GetEmailIdentity)."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

from mailer.dal import clients


def dkim_status(from_email: str, region: str | None = None) -> str | None:
    """DkimAttributes.Status (SUCCESS, PENDING, FAILED, TEMPORARY_FAILURE, NOT_STARTED) of the From
    domain's identity, or of the address's own when SES has no identity for the domain. None when
    neither can be read: no such identity, no permission, SES not reachable."""
    domain = from_email.rpartition("@")[2]
    for identity in dict.fromkeys(name for name in (domain, from_email) if name):
        try:
            answer = clients.client("sesv2", region).get_email_identity(EmailIdentity=identity)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "NotFoundException":
                continue
            return None
        except BotoCoreError:
            return None
        status = (answer.get("DkimAttributes") or {}).get("Status")
        return str(status) if status else None
    return None
