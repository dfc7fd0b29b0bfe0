"""The idempotency table: Powertools' DynamoDB persistence layer, on this project's DynamoDB client.

One item per (tenant, user, Idempotency-Key), keyed `id` as Powertools writes it:

- `status`: INPROGRESS while the first request runs, then COMPLETED with its answer in `data`;
- `validation`: a SHA-256 of the request the key was first used with;
- `expiration`: epoch seconds, 24 hours after the answer; the table's TTL attribute. An item past it
  counts as absent even before DynamoDB deletes it;
- `in_progress_expiration`: epoch milliseconds at which the first request's Lambda invocation times
  out. After it, an INPROGRESS item no longer holds the key, so a crashed request frees it then.

The table holds no request body and no answer beyond the one the same caller already received.
"""

from __future__ import annotations

from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

from mailer.dal import clients


def idempotency_table(table_name: str) -> DynamoDBPersistenceLayer:
    return DynamoDBPersistenceLayer(table_name=table_name, boto3_client=clients.client("dynamodb"))
