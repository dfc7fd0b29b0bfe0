"""Passwords in Secrets Manager, read through Powertools Parameters with a cache."""

from __future__ import annotations

import logging
from functools import cached_property

from aws_lambda_powertools.utilities.parameters import SecretsProvider
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError, SetSecretError
from botocore.exceptions import BotoCoreError, ClientError

from mailer.dal import clients
from mailer.errors import Conflict, ServiceUnavailable

# botocore logs whole request bodies at DEBUG, SecretString included: never let it, whatever
# level the root logger is set to.
for _name in ("botocore", "boto3", "urllib3"):
    logging.getLogger(_name).setLevel(max(logging.getLogger(_name).getEffectiveLevel(), logging.INFO))


class SecretMissing(Conflict):
    title = "Saved password missing"


class SecretStore:
    def __init__(self, prefix: str, *, max_age_seconds: int = 300) -> None:
        self.prefix = prefix.rstrip("/")
        self.max_age_seconds = max_age_seconds

    @cached_property
    def _provider(self) -> SecretsProvider:
        return SecretsProvider(boto3_client=clients.client("secretsmanager"))

    def name_for(self, tenant_id: str, profile_key: str) -> str:
        return f"{self.prefix}/{tenant_id}/{profile_key}"

    def get(self, name: str, *, force_fetch: bool = False) -> str:
        """The password; `force_fetch` skips the cache (after the server refused the cached one)."""
        try:
            value = self._provider.get(name, max_age=self.max_age_seconds, force_fetch=force_fetch)
        except GetParameterError as exc:
            cause = exc.__cause__ or exc.__context__
            if (
                isinstance(cause, ClientError)
                and cause.response["Error"]["Code"] == "ResourceNotFoundException"
            ):
                raise SecretMissing(
                    "The saved password for these settings is gone. "
                    "Save the settings again with the password."
                ) from None
            raise ServiceUnavailable("The password store could not be read; try again shortly.") from None
        return value if isinstance(value, str) else str(value)

    def put(self, name: str, password: str) -> None:
        try:
            self._provider.set(name, password)
        except SetSecretError:
            raise ServiceUnavailable("The password could not be stored; nothing was saved.") from None
        self._provider.clear_cache()

    def put_version(self, name: str, value: str, version_token: str) -> bool:
        """Write `value` as the version named `version_token`; False when another writer already wrote
        a different value under that name. Secrets Manager refuses a ClientRequestToken that names an
        existing version with other content, which makes this a conditional write: of two containers
        storing version n+1 of a rotated refresh token, exactly one wins."""
        try:
            self._provider.set(name, value, client_request_token=version_token)
        except SetSecretError as exc:
            cause = exc.__cause__
            if (
                isinstance(cause, ClientError)
                and cause.response["Error"]["Code"] == "ResourceExistsException"
            ):
                self._provider.clear_cache()
                return False
            raise ServiceUnavailable("The sign-in token could not be stored; try again.") from None
        self._provider.clear_cache()
        return True

    def delete(self, name: str) -> None:
        """Delete at once (no recovery window), so the same settings can be saved again right away."""
        try:
            clients.client("secretsmanager").delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceNotFoundException":
                raise ServiceUnavailable("The saved password could not be removed; try again.") from None
        except BotoCoreError:
            raise ServiceUnavailable("The password store is unreachable; try again.") from None
        self._provider.clear_cache()
