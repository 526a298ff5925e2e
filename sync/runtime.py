"""Wiring from a Config to live objects: certificate, folio store (with the CAF folder
imported), engine. The CLI commands and the daemon share this, so `convert` and `run`
behave identically for the same config.
"""

from __future__ import annotations

import logging
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sync.config import Config
from sync.engine import Engine
from sync.errors import DteSyncError, DteSyncErrors
from sync.folios.caf import Caf
from sync.folios.store import FILE_NAME as FOLIOS_FILE
from sync.folios.store import FolioStore
from sync.signing import Certificate, load_certificate_file

log = logging.getLogger("dtesync.runtime")



@dataclass
class CafImport:
    path: Path
    caf: Caf | None
    error: DteSyncError | None


def trusted_caf_keys(config: Config) -> dict[int, rsa.RSAPublicKey]:
    """Extra CAF signer keys by IDK (the sandbox's fake SII); the real SII keys are built in."""
    keys = {}
    for idk, path in config.trusted_caf_keys.items():
        try:
            key = serialization.load_pem_public_key(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise DteSyncError("CONFIG_INVALID", field=f"caf.trusted_keys.{idk}", params={"detail": str(exc)}) from None
        if not isinstance(key, rsa.RSAPublicKey):
            raise DteSyncError("CONFIG_INVALID", field=f"caf.trusted_keys.{idk}", params={"detail": "no es una clave RSA"})
        keys[idk] = key
    return keys


def open_folio_store(config: Config) -> FolioStore:
    """The folio store; in cluster mode it allocates only from this site's leases (docs/sites.md)."""
    config.folders.state.mkdir(parents=True, exist_ok=True)
    return FolioStore(config.folders.state / FOLIOS_FILE, leased=config.cluster is not None)


def import_caf_folder(store: FolioStore, config: Config, today: date) -> list[CafImport]:
    """Import every CAF file in the configured folder (idempotent: known CAFs are no-ops)."""
    folder = config.folders.caf
    results: list[CafImport] = []
    if not folder.is_dir():
        return results
    keys = trusted_caf_keys(config)
    for path in sorted(folder.glob("*.xml")):
        results.append(import_caf_file(store, config, path, today, keys))
    return results


def import_caf_file(store: FolioStore, config: Config, path: Path, today: date,
                    keys: dict[int, rsa.RSAPublicKey] | None = None) -> CafImport:
    keys = trusted_caf_keys(config) if keys is None else keys
    try:
        caf = store.import_caf(path.read_bytes(), config.company.rut, today, trusted_keys=keys)
        return CafImport(path, caf, None)
    except DteSyncErrors as exc:
        return CafImport(path, None, exc.errors[0])
    except DteSyncError as exc:
        exc.source = exc.source or path.name
        return CafImport(path, None, exc)


def load_certificate(config: Config, now: datetime | None = None) -> Certificate:
    return load_certificate_file(
        config.certificate.path, config.certificate.password, now=now or datetime.now(timezone.utc)
    )


def warn_loose_permissions(config: Config) -> list[str]:
    """Log every key holder others may read (the rule `dtesync check` warns about): a warning,
    not a refusal, so an upgrade never stops a working installation. Returns the paths."""
    from sync.exposure import audit

    found = audit(config)
    for item in found:
        log.warning("loose_permissions path=%s role=%s mode=%o expected=%o (dtesync check: chmod %o %s)",
                    item.path, item.role, item.mode, item.wanted, item.wanted, item.path)
    return [str(item.path) for item in found]


def open_engine(config: Config, *, import_cafs: bool = True, signer: Executor | None = None) -> Engine:
    """Certificate + folio store with the CAF folder imported + engine. In cluster mode a site's
    CAFs come with its leases (docs/sites.md): its CAF folder is not read. An engine process
    (sync.engine_process) passes `import_cafs=False`: the daemon imported them before starting it;
    and its signer thread (Engine.signer)."""
    if not import_cafs:
        return Engine.from_config(config, open_folio_store(config), load_certificate(config), signer=signer)
    warn_loose_permissions(config)
    certificate = load_certificate(config)
    store = open_folio_store(config)
    if config.cluster is not None:
        if config.folders.caf.is_dir() and any(config.folders.caf.glob("*.xml")):
            log.warning("caf_folder_ignored folder=%s (cluster mode: import CAFs with 'dtesync caf import')",
                        config.folders.caf)
        return Engine.from_config(config, store, certificate, signer=signer)
    import_cafs_logged(store, config)
    return Engine.from_config(config, store, certificate, signer=signer)


def import_cafs_logged(store: FolioStore, config: Config) -> None:
    """The CAF folder imported into the folio store, each file that fails logged (once per start)."""
    for result in import_caf_folder(store, config, date.today()):
        if result.error is not None:
            log.warning("caf_import_failed file=%s code=%s", result.path.name, result.error.code)
