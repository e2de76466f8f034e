-- Dashboards: metadata and pointers here, YAML in the dashboards bucket (one immutable
-- object per version), query results in the cache bucket indexed by query_cache.

CREATE TABLE dashboards (
    id                  uuid PRIMARY KEY,
    team_id             uuid NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    -- A connection in use cannot be deleted (the YAML names it).
    connection_id       uuid NOT NULL REFERENCES connections (id) ON DELETE RESTRICT,
    slug                text NOT NULL CHECK (slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$' AND length(slug) <= 64),
    title               text NOT NULL,
    description         text,
    view_type           text NOT NULL,
    owner_user_id       uuid REFERENCES users (id) ON DELETE SET NULL,
    version             integer NOT NULL CHECK (version >= 1),
    yaml_key            text NOT NULL,
    refresh_every_secs  integer,
    cache_ttl_secs      integer NOT NULL,
    last_precomputed_at timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT dashboards_slug_key UNIQUE (slug)
);

CREATE INDEX dashboards_team_idx ON dashboards (team_id, slug);
CREATE INDEX dashboards_connection_idx ON dashboards (connection_id);
-- The scheduler's question: which dashboards are due?
CREATE INDEX dashboards_refresh_idx ON dashboards (last_precomputed_at) WHERE refresh_every_secs IS NOT NULL;

CREATE TABLE dashboard_versions (
    dashboard_id uuid NOT NULL REFERENCES dashboards (id) ON DELETE CASCADE,
    version      integer NOT NULL,
    yaml_key     text NOT NULL,
    sha256       text NOT NULL,
    size_bytes   integer NOT NULL,
    created_by   uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dashboard_id, version)
);

CREATE TABLE query_cache (
    -- dash:{slug}:q:{query_hash}:v:{version}; the hash covers the compiled SQL and the
    -- bound parameter values.
    cache_key     text PRIMARY KEY,
    dashboard_id  uuid NOT NULL REFERENCES dashboards (id) ON DELETE CASCADE,
    version       integer NOT NULL,
    query_id      text NOT NULL,
    blob_key      text NOT NULL,
    row_count     integer NOT NULL,
    bytes_scanned bigint,
    size_bytes    integer NOT NULL,
    duration_ms   integer NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    hits          bigint NOT NULL DEFAULT 0,
    last_hit_at   timestamptz
);

CREATE INDEX query_cache_expiry_idx ON query_cache (expires_at);
CREATE INDEX query_cache_dashboard_idx ON query_cache (dashboard_id, version);
