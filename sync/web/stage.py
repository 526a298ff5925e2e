"""The panel inside the daemon: a stage that runs the HTTP server on its own threads.

The server is cheroot (CherryPy's WSGI server): pure Python, thread-pooled, production-grade,
runs the same inside the Windows service, and serves TLS itself (`[web] tls_cert`/`tls_key`),
which waitress does not. A port already taken does not stop the daemon: documents keep being
signed, the failure is logged and raised as an alert (WEB_LISTEN_FAILED).
"""

from __future__ import annotations

import logging
import threading
from datetime import tzinfo
from typing import TYPE_CHECKING, Any

from sync.stage import Check, Stage
from sync.web.settings import WebConfig

if TYPE_CHECKING:
    from sync.app import App
    from sync.monitor import MonitorStage

log = logging.getLogger("dtesync.web")


class PanelStage(Stage):
    name = "web"

    def __init__(self, web: WebConfig, *, lang: str = "es", tz: tzinfo | None = None,
                 password: str | None = None) -> None:
        super().__init__()
        self.web, self.lang, self.tz = web, lang, tz
        self._password = password  # hashed in attach(), then dropped
        self.panel: Any = None
        self.server: Any = None
        self.url: str | None = None
        self.error: str | None = None
        self.ready = threading.Event()  # set once listening (or once listening failed)
        self._app: App | None = None
        self._monitor: MonitorStage | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def attach(self, app: App, monitor: MonitorStage | None = None) -> None:
        """The App the panel shows, and the monitor whose health and metrics it serves."""
        self._app, self._monitor = app, monitor

    def start(self) -> None:
        """Serve from a thread of its own: importing Flask and binding the port never delay the
        daemon's start (documents are signed while the panel comes up; `ready` tells when)."""
        if self._app is None:
            raise RuntimeError("PanelStage.attach(app) must run before start()")
        self._stopping.clear()
        self.ready.clear()
        self._thread = threading.Thread(target=self._run, name="dtesync-web", daemon=True)
        self._thread.start()

    def wait_ready(self, timeout: float = 30.0) -> bool:
        return self.ready.wait(timeout)

    def _build(self) -> Any:
        from sync.health import HealthView
        from sync.metrics import Metrics
        from sync.web.app import Panel, create_app
        from sync.web.auth import hash_password

        app, monitor = self._app, self._monitor
        assert app is not None
        if monitor is not None and monitor.health is not None:
            health, metrics = monitor.health, monitor.metrics
        else:
            health = HealthView(app, lang=self.lang)
            metrics = Metrics()
            metrics.attach(app, health)
        pw_hash = hash_password(self._password) if self._password else None
        self._password = None
        self.panel = Panel(app=app, web=self.web, health=health, metrics=metrics, lang=self.lang, tz=self.tz,
                           password_hash=pw_hash)
        return create_app(self.panel)

    def _run(self) -> None:
        from cheroot import wsgi

        try:
            server = wsgi.Server((self.web.host, self.web.port), self._build(), numthreads=self.web.threads,
                                 server_name="dtesync", shutdown_timeout=2)
            if self.web.tls:
                from cheroot.ssl.builtin import BuiltinSSLAdapter

                server.ssl_adapter = BuiltinSSLAdapter(str(self.web.tls_cert), str(self.web.tls_key))
            server.prepare()  # binds: a port in use, a bad certificate are known here
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            log.error("web: cannot listen; the daemon runs without its panel",
                      extra={"listen": self.web.listen, "error": self.error})
            self.alerts.raise_("web:listen", "WEB_LISTEN_FAILED", "ERROR", listen=self.web.listen, detail=self.error)
            self.ready.set()
            return
        with self._lock:
            if self._stopping.is_set():
                server.stop()
                self.ready.set()
                return
            self.server = server
        host, port = server.bind_addr[:2]
        shown = f"[{host}]" if ":" in str(host) else host
        self.url = f"{'https' if self.web.tls else 'http'}://{shown}:{port}"
        log.info("web: panel listening", extra={"url": self.url})
        self.ready.set()
        try:
            server.serve()
        except Exception:
            log.exception("web: the server stopped")

    def stop(self, timeout: float = 10.0) -> None:
        with self._lock:
            self._stopping.set()
            server, self.server = self.server, None
        if server is not None:
            server.stop()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def checks(self) -> list[Check]:
        if self.error:
            return [Check("listen", "degraded", f"el panel no escucha en {self.web.listen}: {self.error}")]
        return []
