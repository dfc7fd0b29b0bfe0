"""How the banner writes a command to try: a curl line, and a titled list of them."""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from typing import Any


def curl(method: str, url: str, body: Any = None, headers: Mapping[str, str] | None = None) -> str:
    parts = ["curl -s"]
    if method != "GET":
        parts.append(f"-X {method}")
    parts.append(shlex.quote(url))
    for name, value in (headers or {}).items():
        parts.append(f"-H {shlex.quote(f'{name}: {value}')}")
    if body is not None:
        parts.append("-H 'content-type: application/json'")
        parts.append(f"-d {shlex.quote(json.dumps(body))}")
    return " ".join(parts)


def examples(titled: list[tuple[str, str]]) -> list[str]:
    lines: list[str] = []
    for title, command in titled:
        lines += [f"  # {title}", f"  {command}", ""]
    return lines
