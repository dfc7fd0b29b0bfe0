"""Uploaded attachments in S3, under the tenant's prefix: <tenant>/<upload id>/<file name>.

The bucket keeps object versions, so that a resend can attach exactly the version that was sent. Each
upload records the size it was declared with as object metadata (`declared-size`); the presigned address
is signed for that length and content type.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from mailer.dal import clients
from mailer.errors import ServiceUnavailable

DECLARED_SIZE = "declared-size"  # object metadata key: the size the upload was presigned for
_GONE = ("NoSuchKey", "NoSuchVersion", "404")


@dataclass(frozen=True)
class StoredUpload:
    key: str
    filename: str
    size: int  # bytes S3 holds
    declared_size: int | None = None  # bytes the upload was declared with; None when not recorded
    version_id: str | None = None  # the object version described; None when the bucket keeps no versions
    etag: str | None = None


@dataclass(frozen=True)
class PresignedUpload:
    url: str
    headers: dict[str, str]
    expires_at: str


class AttachmentStore:
    def __init__(self, bucket: str, *, url_ttl_seconds: int = 900) -> None:
        self.bucket = bucket
        self.url_ttl_seconds = url_ttl_seconds

    @property
    def _s3(self) -> Any:
        return clients.client("s3")

    @cached_property
    def _signer(self) -> Any:
        """Signature version 4, which signs Content-Length (version 2, botocore's default for presigned S3
        addresses in us-east-1, does not). Presigning is computed here and calls nothing."""
        return boto3.client("s3", config=Config(signature_version="s3v4"))

    def presign_upload(
        self, tenant_id: str, upload_id: str, filename: str, content_type: str, size: int
    ) -> PresignedUpload:
        """An address that takes exactly `size` bytes of `content_type`; the headers are the ones signed."""
        key = f"{tenant_id}/{upload_id}/{filename}"
        try:
            url = self._signer.generate_presigned_url(
                "put_object",
                Params={
                    "Bucket": self.bucket,
                    "Key": key,
                    "ContentType": content_type,
                    "ContentLength": size,
                    "Metadata": {DECLARED_SIZE: str(size)},
                },
                ExpiresIn=self.url_ttl_seconds,
            )
        except (ClientError, BotoCoreError):
            raise ServiceUnavailable("No upload address could be made; try again.") from None
        expires = datetime.now(UTC) + timedelta(seconds=self.url_ttl_seconds)
        return PresignedUpload(
            url=url,
            headers={
                "Content-Type": content_type,
                "Content-Length": str(size),
                f"x-amz-meta-{DECLARED_SIZE}": str(size),
            },
            expires_at=expires.isoformat(timespec="seconds").replace("+00:00", "Z"),
        )

    def find(self, tenant_id: str, upload_id: str, version_id: str | None = None) -> StoredUpload | None:
        """The upload under this tenant's prefix only, so another tenant's id finds nothing; the current
        version, or `version_id` of it. None when it has expired, or that version is no longer kept."""
        prefix = f"{tenant_id}/{upload_id}/"
        try:
            listed = self._s3.list_objects_v2(Bucket=self.bucket, Prefix=prefix, MaxKeys=1)
        except (ClientError, BotoCoreError):
            raise ServiceUnavailable("The attachment store could not be read; try again.") from None
        for item in listed.get("Contents", []):
            key = item["Key"]
            head = self._head(key, version_id)
            if head is None:
                return None
            return StoredUpload(
                key=key,
                filename=key[len(prefix) :],
                size=int(head["ContentLength"]),
                declared_size=_declared_size(head.get("Metadata") or {}),
                version_id=_version(head),
                etag=head.get("ETag"),
            )
        return None

    def read(self, upload: StoredUpload) -> tuple[bytes, str] | None:
        """The file (the version `upload` describes) and the content type it was uploaded with; None when
        it has expired."""
        response = self._fetch("get_object", upload.key, upload.version_id)
        if response is None:
            return None
        try:
            return response["Body"].read(), response.get("ContentType") or "application/octet-stream"
        except BotoCoreError:
            raise ServiceUnavailable("The attachment store could not be read; try again.") from None

    def delete(self, upload: StoredUpload) -> None:
        """Remove the version `upload` describes (its bytes, not only a delete marker over them)."""
        version = {"VersionId": upload.version_id} if upload.version_id else {}
        try:
            self._s3.delete_object(Bucket=self.bucket, Key=upload.key, **version)
        except (ClientError, BotoCoreError):
            raise ServiceUnavailable("The attachment could not be deleted; try again.") from None

    def _head(self, key: str, version_id: str | None) -> dict[str, Any] | None:
        return self._fetch("head_object", key, version_id)

    def _fetch(self, operation: str, key: str, version_id: str | None) -> dict[str, Any] | None:
        """GetObject or HeadObject of one version (the current one without `version_id`); None when gone."""
        version = {"VersionId": version_id} if version_id else {}
        try:
            answer: dict[str, Any] = getattr(self._s3, operation)(Bucket=self.bucket, Key=key, **version)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in _GONE:
                return None
            raise ServiceUnavailable("The attachment store could not be read; try again.") from None
        except BotoCoreError:
            raise ServiceUnavailable("The attachment store could not be read; try again.") from None
        return answer


def _declared_size(metadata: dict[str, str]) -> int | None:
    value = metadata.get(DECLARED_SIZE, "")
    return int(value) if value.isascii() and value.isdigit() else None


def _version(head: dict[str, Any]) -> str | None:
    """S3 answers "null" for an object written while versioning was off or suspended: no version to pin."""
    version = head.get("VersionId")
    return version if version and version != "null" else None
