"""The cluster's tables in PostgreSQL, as versioned migrations.

`dtesync cluster init` applies the migrations a database lacks, each in its own transaction
under an advisory lock (two PCs running it at once wait for each other), recording each in
`schema_version`: running it again is a no-op. The statements name no schema: they run with
`search_path` set to the configured one ([cluster] schema, "dtesync" by default).

A folio goes to one lease, ever. Two guards keep it so, whatever a client does:
- `caf.next_folio` is the lease cursor: a lease is taken under SELECT ... FOR UPDATE of the
  CAF row and moves the cursor past its block; it never moves back;
- `lease.span` carries an exclusion constraint: no two leases of a TipoDTE share a folio
  (folio numbers are unique per TipoDTE across all of the SII's CAFs for a company). The span
  key is tipo_dte * 10^10 + folio (a Folio has at most 10 digits), a plain int8range, so the
  constraint needs no extension.
"""

from __future__ import annotations

SPAN = "10000000000"  # 10^10: tipo_dte * SPAN + folio orders every folio of every type on one line

MIGRATIONS: tuple[str, ...] = (
    # 1: sites, CAFs, leases, the shared record
    f"""
    CREATE TABLE site (
        name          text PRIMARY KEY,
        state         text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'lost')),
        first_seen    timestamptz NOT NULL DEFAULT now(),
        last_contact  timestamptz NOT NULL DEFAULT now(),
        lost_at       timestamptz
    );
    CREATE TABLE caf (
        id                 bigserial PRIMARY KEY,
        tipo_dte           integer NOT NULL,
        desde              bigint NOT NULL,
        hasta              bigint NOT NULL,
        fecha_autorizacion date NOT NULL,
        expires_on         date,
        idk                integer NOT NULL,
        rut_emisor         text NOT NULL,
        fingerprint        text NOT NULL UNIQUE,
        next_folio         bigint NOT NULL,  -- every folio below it is in a lease, for good
        data               bytea NOT NULL,   -- the CAF file as the SII issued it
        imported_at        timestamptz NOT NULL DEFAULT now(),
        imported_by        text,
        CHECK (desde >= 1 AND hasta >= desde AND hasta < {SPAN}),
        CHECK (next_folio BETWEEN desde AND hasta + 1),
        EXCLUDE USING gist ((int8range(tipo_dte::int8 * {SPAN} + desde, tipo_dte::int8 * {SPAN} + hasta, '[]')) WITH &&)
    );
    CREATE TABLE lease (
        id            bigserial PRIMARY KEY,
        caf_id        bigint NOT NULL REFERENCES caf(id),
        tipo_dte      integer NOT NULL,
        desde         bigint NOT NULL,
        hasta         bigint NOT NULL,
        site          text NOT NULL REFERENCES site(name),
        leased_at     timestamptz NOT NULL DEFAULT now(),
        returned_from bigint,              -- the site handed back [returned_from, hasta] unused
        returned_at   timestamptz,
        span          int8range NOT NULL GENERATED ALWAYS AS
                      (int8range(tipo_dte::int8 * {SPAN} + desde, tipo_dte::int8 * {SPAN} + hasta, '[]')) STORED,
        CHECK (hasta >= desde),
        CHECK (returned_from IS NULL OR returned_from BETWEEN desde AND hasta + 1),
        EXCLUDE USING gist (span WITH &&)
    );
    CREATE INDEX lease_site ON lease (site);
    CREATE TABLE event (
        id          text PRIMARY KEY,       -- the site's event id: applying it twice is a no-op
        site        text NOT NULL,
        seq         bigint NOT NULL,        -- the site's order of events
        doc_id      bigint NOT NULL,
        state       text NOT NULL,
        note        text,
        at          timestamptz NOT NULL,
        received_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX event_doc ON event (site, doc_id);
    CREATE TABLE document (
        site         text NOT NULL,
        doc_id       bigint NOT NULL,       -- the id in the site's journal
        seq          bigint NOT NULL,       -- the newest event applied: an older one never overwrites
        source       text NOT NULL,
        state        text NOT NULL,
        tipo_dte     integer,
        folio        bigint,
        track_id     text,
        rut_receptor text,
        rzn_soc_recep text,
        fch_emis     date,
        monto_total  bigint,
        errors       jsonb,
        extra        jsonb,                 -- the stages' entries: delivery, print
        created_at   timestamptz NOT NULL,
        updated_at   timestamptz NOT NULL,
        PRIMARY KEY (site, doc_id)
    );
    CREATE INDEX document_folio ON document (tipo_dte, folio) WHERE folio IS NOT NULL;
    CREATE INDEX document_state ON document (state);
    """,
    # 2: leasing can be held (after restoring an older copy, until every site put back its leases)
    """
    CREATE TABLE cluster_state (
        id                  boolean PRIMARY KEY DEFAULT true CHECK (id),  -- one row
        leasing_held_since  timestamptz,
        held_by             text
    );
    INSERT INTO cluster_state DEFAULT VALUES;
    """,
)
