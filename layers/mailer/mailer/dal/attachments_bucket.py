"""Uploaded attachments in S3, under the tenant's prefix: <tenant>/<upload id>/<file name>."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from mailer.dal import clients
from mailer.errors import ServiceUnavailable


@dataclass(frozen=True)
class StoredUpload:
    key: str
    filename: str
    size: int


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

    def presign_upload(
        self, tenant_id: str, upload_id: str, filename: str, content_type: str
    ) -> PresignedUpload:
        key = f"{tenant_id}/{upload_id}/{filename}"
        try:
            url = self._s3.generate_presigned_url(
                "put_object",
                Params={"Bucket": self.bucket, "Key": key, "ContentType": content_type},
                ExpiresIn=self.url_ttl_seconds,
            )
        except (ClientError, BotoCoreError):
            raise ServiceUnavailable("No upload address could be made; try again.") from None
        expires = datetime.now(UTC) + timedelta(seconds=self.url_ttl_seconds)
        return PresignedUpload(
            url=url,
            headers={"Content-Type": content_type},
            expires_at=expires.isoformat(timespec="seconds").replace("+00:00", "Z"),
        )

    def find(self, tenant_id: str, upload_id: str) -> StoredUpload | None:
        """The upload under this tenant's prefix only, so another tenant's id finds nothing."""
        prefix = f"{tenant_id}/{upload_id}/"
        try:
            listed = self._s3.list_objects_v2(Bucket=self.bucket, Prefix=prefix, MaxKeys=1)
        except (ClientError, BotoCoreError):
            raise ServiceUnavailable("The attachment store could not be read; try again.") from None
        for item in listed.get("Contents", []):
            return StoredUpload(key=item["Key"], filename=item["Key"][len(prefix) :], size=int(item["Size"]))
        return None

    def read(self, upload: StoredUpload) -> tuple[bytes, str] | None:
        """The file and the content type it was uploaded with; None when it has expired."""
        try:
            response = self._s3.get_object(Bucket=self.bucket, Key=upload.key)
            return response["Body"].read(), response.get("ContentType") or "application/octet-stream"
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
                return None
            raise ServiceUnavailable("The attachment store could not be read; try again.") from None
        except BotoCoreError:
            raise ServiceUnavailable("The attachment store could not be read; try again.") from None
