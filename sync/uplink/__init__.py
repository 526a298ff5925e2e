"""Uplink: signed documents to the SII (or a provider cloud), exactly once, with the answer
brought back to the ERP. Map: endpoints (URLs per environment), transport (HTTP and failure
classes), auth (seed/token), upload (DTEUpload), status (QueryEstUp/QueryEstDte), boleta
(REST), http_provider, channels (one per destination), queue (retry queue in the journal),
service (batching, polling, alerts, APScheduler ticks), build (config -> service), reports."""
