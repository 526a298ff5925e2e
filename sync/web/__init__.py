"""The admin's and the cashier's view: a local web panel served by the daemon (docs/panel.md).

- `settings`: [web] (where it listens, TLS, the password reference), checked at config time.
- `stage`: `PanelStage`, the daemon stage that runs the HTTP server (cheroot: a production
  WSGI server that also speaks TLS and runs inside the Windows service).
- `app`: the Flask application: documents, a document's page, operations, login and actions,
  /health and /metrics. Templates in `templates/` (Jinja, autoescaped), texts in `i18n`.
- `auth`: the password check, sessions and CSRF tokens.

The panel reads through the Filing and read-only stores and acts only through the stages'
own methods (PrintService.reprint, UplinkQueue.retry_now, Uplink.pause/resume).
"""
