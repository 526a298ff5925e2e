"""Uplink: signed documents to the SII (or a provider cloud), exactly once, with the answer
brought back to the ERP. Map: endpoints (URLs per environment), transport (HTTP and failure
classes), answers (what every SII code means: verdict, transient, session, installation,
unknown), auth (seed/token, the token's learnt lifetime), upload (DTEUpload), status
(QueryEstUp/QueryEstDte), boleta (REST), http_provider, channels (one per destination), queue
(retry queue in the journal, paused channels), service (batching, polling, lost answers,
installation pauses, alerts, APScheduler ticks), build (config -> service)."""
