"""Open tracking: a signed token naming one sent-log entry, the pixel that carries it, and the GIF.

An open is a hint, never proof: some mail clients and security scanners load every image (an
"open" that nobody saw), others load none (an open that is never counted).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property

from mailer.delivery.message import OutgoingMessage
from mailer.ids import new_id

# The smallest transparent 1x1 GIF: the same bytes whatever the token, so an answer says nothing.
PIXEL_GIF = base64.b64decode(b"R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
MAC_BYTES = 16  # 128 bits: forging a token means guessing them
MAX_TOKEN = 400
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{4,300}\.[A-Za-z0-9_-]{22}$")
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class OpenTokens:
    """Signs and reads pixel tokens with the stack's key (read once, when first needed)."""

    key_source: Callable[[], str]

    @cached_property
    def _key(self) -> bytes:
        return hashlib.sha256(b"open-pixel\x00" + self.key_source().encode()).digest()

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:MAC_BYTES]

    def token(self, tenant_id: str, entry_id: str) -> str:
        payload = f"{tenant_id}\n{entry_id}".encode()
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def read(self, token: str) -> tuple[str, str] | None:
        """(tenant, entry id) of a token this stack signed, else None; never raises."""
        if len(token) > MAX_TOKEN or not _TOKEN.match(token):
            return None
        body, mac = token.split(".")
        try:
            payload = _unb64(body)
            given = _unb64(mac)
        except ValueError:
            return None
        if not hmac.compare_digest(given, self._mac(payload)):
            return None
        tenant_id, _, entry_id = payload.decode("utf-8", "replace").partition("\n")
        return (tenant_id, entry_id) if tenant_id and entry_id else None


@dataclass(frozen=True)
class OpenPixel:
    """Adds the pixel to an email's HTML when the company tracks opens."""

    tokens: OpenTokens
    base_url: str  # the public API URL: https://<api id>.execute-api.<region>.amazonaws.com

    def url(self, tenant_id: str, entry_id: str) -> str:
        return f"{self.base_url.rstrip('/')}/t/{self.tokens.token(tenant_id, entry_id)}.gif"

    def add(self, outgoing: OutgoingMessage, tenant_id: str, entry_id: str) -> OutgoingMessage:
        """The message with the pixel at the end of its HTML part; a text-only message is left
        as it is (it has nowhere to show an image)."""
        for part in outgoing.message.walk():
            if part.get_content_type() == "text/html" and not part.is_attachment():
                html = part.get_content()
                part.set_content(self.add_to(html, tenant_id, entry_id), subtype="html", charset="utf-8")
                return replace(outgoing, _bytes=None)
        return outgoing

    def add_to(self, html: str, tenant_id: str, entry_id: str) -> str:
        tag = (
            f'<img src="{self.url(tenant_id, entry_id)}" width="1" height="1" alt="" '
            'style="display:block;width:1px;height:1px;border:0" />'
        )
        ends = list(_BODY_END.finditer(html))
        if ends:
            at = ends[-1].start()
            return html[:at] + tag + html[at:]
        return html + tag


def tracked(
    pixel: OpenPixel | None, outgoing: OutgoingMessage, tenant_id: str, *, tracks_opens: bool
) -> tuple[str, OutgoingMessage]:
    """The id the send's entry will have, and the message with that entry's pixel when the company
    tracks opens (and the stack has a pixel to point at)."""
    entry_id = new_id()
    if pixel is not None and tracks_opens:
        outgoing = pixel.add(outgoing, tenant_id, entry_id)
    return entry_id, outgoing


def token_of_path(name: str) -> str:
    """`<token>.gif` as the route receives it -> the token."""
    return name.removesuffix(".gif")
