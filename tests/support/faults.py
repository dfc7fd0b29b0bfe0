"""AWS errors with real error codes, injected below every store and Powertools."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import botocore.client
import pytest
from botocore.exceptions import ClientError

Matcher = Callable[[str, str, dict[str, Any]], bool]


class AwsFaults:
    """Makes chosen AWS calls fail with a real error code, below every store and Powertools.

    Patched at BaseClient._make_api_call, so boto3 resources (Table.get_item), plain clients and
    Powertools' SecretsProvider all meet it; botocore's own retries are inside that method, so a
    fault is one ClientError, immediately.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._rules: list[tuple[Matcher, str, int]] = []
        self.calls: list[tuple[str, str]] = []
        self.failed: list[tuple[str, str]] = []
        original = botocore.client.BaseClient._make_api_call
        faults = self

        def make_api_call(client: Any, operation: str, params: dict[str, Any]) -> Any:
            service = client.meta.service_model.service_name
            faults.calls.append((service, operation))
            for matches, code, status in faults._rules:
                if matches(service, operation, params):
                    faults.failed.append((service, operation))
                    raise ClientError(
                        {
                            "Error": {"Code": code, "Message": f"injected {code}"},
                            "ResponseMetadata": {"HTTPStatusCode": status, "RequestId": "fault-injected"},
                        },
                        operation,
                    )
            return original(client, operation, params)

        monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", make_api_call)

    def fail(
        self,
        service: str,
        code: str,
        *,
        operations: tuple[str, ...] = (),
        when: Matcher | None = None,
        status: int = 400,
    ) -> None:
        def matches(svc: str, operation: str, params: dict[str, Any]) -> bool:
            return (
                svc == service
                and (not operations or operation in operations)
                and (when is None or when(svc, operation, params))
            )

        self._rules.append((matches, code, status))

    def clear(self) -> None:
        self._rules.clear()
