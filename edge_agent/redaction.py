"""Keeping secret values out of every line the agent writes.

The configuration never holds a secret, but the running agent does: passwords and tokens are
resolved before the services start, and from then on any exception message, library log line or
traceback could carry one (a client that puts the password into its error text, a URL with
credentials). `SecretMask` is the last step of every log pipeline: it sees the rendered line and
replaces each known secret value, in every spelling a renderer may give it (as is, JSON- or
`repr`-escaped, as bytes), by `<secret>`. It is the safety net behind the rule that nothing logs
locals.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

MASK = "<secret>"


class SecretMask:
    """A structlog processor (use it after the renderer) that masks known secret values."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.learn(values)

    def learn(self, values: Iterable[str]) -> None:
        """Add secret values (on start and on every reload: old values stay masked too)."""
        for value in values:
            if value:
                self._values |= _spellings(value)
        if self._values:
            # Longest first, so that a secret containing another is masked whole.
            ordered = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(map(re.escape, ordered)))

    def mask(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(MASK, text)

    def __call__(self, _logger: Any, _method: str, event: Any) -> Any:
        if isinstance(event, str):
            return self.mask(event)
        if isinstance(event, bytes):
            return self.mask(event.decode("utf-8", "replace")).encode("utf-8")
        if isinstance(event, dict):  # used before a renderer, it masks the values it can see
            return {key: self._masked(value) for key, value in event.items()}
        return event

    def _masked(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.mask(value)
        if isinstance(value, list | tuple):
            return type(value)(self._masked(v) for v in value)
        if isinstance(value, dict):
            return {k: self._masked(v) for k, v in value.items()}
        return value


def _spellings(value: str) -> set[str]:
    """The ways a renderer may write `value`: itself, inside JSON strings, inside a repr, and
    as the repr of its UTF-8 bytes (asyncua's debug log prints ActivateSession's password so)."""
    forms = {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
    forms.add(repr(value)[1:-1])
    forms.add(repr(value.encode("utf-8"))[2:-1])
    forms |= {json.dumps(form)[1:-1] for form in list(forms)}
    return {form for form in forms if form}
