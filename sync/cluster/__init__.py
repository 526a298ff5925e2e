"""Cluster mode: several PCs of one company on a shared PostgreSQL database (docs/sites.md).

    settings.py   [cluster] of the configuration (no psycopg: a single PC never imports it)
    schema.py     the versioned schema migrations `dtesync cluster init` applies
    db.py         the cluster database: CAFs, folio leases, sites, the shared record
    stage.py      the daemon's cluster stage: the lease refiller and the record shipper

Each site signs from folio blocks it leased and recorded in its own folio store, so signing
never waits for the database and goes on while it is down; its documents' records go out
through an outbox in its journal and are applied exactly once on the cluster side.
"""
