"""`python3 -m local.pixel_of [mail dir]`: the open-tracking pixel's URL in the newest mail of the
local mail folder (var/mail), as a mail client would find it in the HTML; nothing when it has none."""

from __future__ import annotations

import re
import sys
from email import message_from_bytes, policy
from pathlib import Path

PIXEL = re.compile(r'<img src="(http[^"]+/t/[^"]+\.gif)"')


def pixel_url(mail_dir: Path) -> str | None:
    for path in sorted(mail_dir.glob("*.eml"), reverse=True):
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        body = message.get_body(("html",))  # type: ignore[attr-defined]
        if body is None:
            continue
        found = PIXEL.search(body.get_content())
        return found.group(1) if found else None
    return None


if __name__ == "__main__":
    url = pixel_url(Path(sys.argv[1] if len(sys.argv) > 1 else "var/mail"))
    if url:
        print(url)
