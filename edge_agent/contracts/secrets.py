"""Where a secret comes from: a reference in the configuration, never the value itself.

Loading the configuration resolves every reference once, before any service starts (and on a
reload, before anything is swapped); drivers and sinks then read the value with `resolve()`,
which no longer touches the file or the environment. An error names the reference, never the
value.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import PrivateAttr, model_validator

from edge_agent.contracts.section import Section


class SecretRef(Section):
    """Where a secret comes from; exactly one of the three.

    `credential` is a name under `$CREDENTIALS_DIRECTORY`, which systemd's LoadCredential= fills.
    """

    file: Path | None = None
    env: str | None = None
    credential: str | None = None
    # The value, once resolved: private, so it is in no dump, repr or comparison of fields.
    _value: str | None = PrivateAttr(None)

    @model_validator(mode="before")
    @classmethod
    def _refuse_inline(cls, data: Any) -> Any:
        if isinstance(data, str):
            raise ValueError(
                "secrets are not written inline; give a reference: "
                '{ file = "/path" }, { env = "VAR" } or { credential = "name" }'
            )
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        given = [k for k in ("file", "env", "credential") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of file, env or credential")
        return self

    def resolve(self) -> str:
        """The secret's value: read once (at configuration load), then kept.

        Raises `SecretError` naming the reference, never the value."""
        if self._value is None:
            self._value = self._read()
        return self._value

    def _read(self) -> str:
        if self.env is not None:
            value = os.environ.get(self.env)
            if value is None:
                raise SecretError(f"environment variable {self.env} is not set")
            return value
        if self.credential is not None:
            directory = os.environ.get("CREDENTIALS_DIRECTORY")
            if not directory:
                raise SecretError(
                    f"credential {self.credential!r}: $CREDENTIALS_DIRECTORY is not set "
                    "(run under systemd with LoadCredential=)"
                )
            path = Path(directory) / self.credential
        else:
            assert self.file is not None
            path = self.file
        try:
            return path.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise SecretError(f"cannot read secret file {path}: {exc.strerror}") from exc


class SecretError(Exception):
    """A secret reference could not be resolved."""
