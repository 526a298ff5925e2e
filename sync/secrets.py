"""Secrets (certificate password, API tokens): referenced by the config, never stored in it.

A reference is `{ env = "NAME" }` or `{ file = "path" }`. A secret file must be private to
its owner on POSIX (like ssh keys); values are never logged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from sync.errors import DteSyncError
from sync.exposure import loose


@dataclass(frozen=True)
class SecretRef:
    """Where a secret lives: `{"env": "NAME"}` or `{"file": "path"}`; never the value itself."""

    env: str | None = None
    file: Path | None = None

    @classmethod
    def of(cls, ref: Any) -> "SecretRef":
        """Accept a mapping from the config, or any object with `env`/`file` attributes."""
        if isinstance(ref, Mapping):
            env, file = ref.get("env"), ref.get("file")
            if set(ref) - {"env", "file"} or (env is None) == (file is None):
                raise DteSyncError(
                    "CONFIG_INVALID",
                    field="password",
                    params={"detail": 'use { env = "VARIABLE" } o { file = "ruta" }, uno de los dos'},
                )
        else:
            env, file = getattr(ref, "env", None), getattr(ref, "file", None)
        return cls(env=str(env) if env else None, file=Path(file) if file else None)


def read_secret(ref: Any, *, name: str = "password", environ: Mapping[str, str] | None = None) -> str:
    """Resolve a SecretRef; a file must be private to its owner on POSIX (like ssh keys)."""
    ref = SecretRef.of(ref)
    if ref.env:
        value = (os.environ if environ is None else environ).get(ref.env)
        if value is None:
            raise DteSyncError(
                "SECRET_MISSING", field=name, params={"detail": f"la variable de entorno {ref.env} no está definida"}
            )
        return value
    assert ref.file is not None
    exposed = loose(ref.file, "secret")  # the same rule `dtesync check` reports
    if exposed is not None:
        raise DteSyncError("SECRET_FILE_INSECURE", field=name, found=str(ref.file), params={"mode": oct(exposed.mode)})
    try:
        text: str = ref.file.read_text(encoding="utf-8")
        return text.rstrip("\r\n")
    except OSError as exc:
        raise DteSyncError("SECRET_MISSING", field=name, params={"detail": f"{ref.file}: {exc.strerror}"}) from None


