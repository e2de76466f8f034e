-- The scanned catalog of each connection: datasets (BigQuery datasets, Postgres schemas) and
-- their tables, plus a row per scan so that clients can follow a long one.

CREATE TABLE datasets (
    id                   uuid PRIMARY KEY,
    connection_id        uuid NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    name                 text NOT NULL,
    fully_qualified_name text NOT NULL,
    description          text,
    location             text,
    last_modified        timestamptz,
    table_count          integer NOT NULL DEFAULT 0,
    -- Why the last scan could not read this dataset's tables (they are kept as they were).
    scan_error           text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT datasets_connection_name_key UNIQUE (connection_id, fully_qualified_name)
);

CREATE INDEX datasets_browse_idx ON datasets (connection_id, name, id);

CREATE TABLE tables (
    id                   uuid PRIMARY KEY,
    dataset_id           uuid NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
    name                 text NOT NULL,
    fully_qualified_name text NOT NULL,
    table_type           text NOT NULL CHECK (table_type IN ('TABLE', 'VIEW', 'MATERIALIZED_VIEW', 'EXTERNAL')),
    row_count            bigint,
    size_bytes           bigint,
    partitioning         jsonb,
    clustering           jsonb,
    last_modified        timestamptz,
    -- A digest of everything above that a scan reads: equal digests mean nothing changed,
    -- so a rescan skips the row (and cached columns stay valid).
    fingerprint          text NOT NULL,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT tables_dataset_name_key UNIQUE (dataset_id, fully_qualified_name)
);

CREATE INDEX tables_browse_idx ON tables (dataset_id, name, id);

CREATE TABLE scan_runs (
    id                uuid PRIMARY KEY,
    connection_id     uuid NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    status            text NOT NULL DEFAULT 'running'
                      CHECK (status IN ('running', 'succeeded', 'partial', 'failed')),
    datasets_total    integer,
    datasets_scanned  integer NOT NULL DEFAULT 0,
    tables_scanned    integer NOT NULL DEFAULT 0,
    tables_skipped    integer NOT NULL DEFAULT 0,
    errors            jsonb NOT NULL DEFAULT '[]'::jsonb,
    -- Time spent in Bridge itself (parsing, diffing, writing), apart from waiting on the warehouse.
    bridge_ms         bigint,
    duration_ms       bigint,
    started_by        uuid REFERENCES users (id) ON DELETE SET NULL,
    started_at        timestamptz NOT NULL DEFAULT now(),
    finished_at       timestamptz
);

-- One scan at a time per connection.
CREATE UNIQUE INDEX scan_runs_one_running_idx ON scan_runs (connection_id) WHERE status = 'running';
CREATE INDEX scan_runs_connection_idx ON scan_runs (connection_id, started_at DESC);
