-- Warehouse connections. The credentials themselves are never here: they are sealed
-- (envelope encryption) in the credentials bucket, and `credentials_key` points at them.

CREATE TABLE connections (
    id               uuid PRIMARY KEY,
    team_id          uuid NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    name             text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    warehouse_type   text NOT NULL CHECK (warehouse_type IN ('bigquery', 'postgres')),
    credentials_key  text NOT NULL,
    -- Which key ring key wrapped the data key (for rotation and diagnosis).
    key_id           text NOT NULL,
    -- Non-secret facts about the credentials, shown to users: project_id and client_email
    -- (BigQuery); host, port, database and user (Postgres).
    details          jsonb NOT NULL DEFAULT '{}'::jsonb,
    status           text NOT NULL DEFAULT 'pending_validation'
                     CHECK (status IN ('pending_validation', 'validated', 'failed')),
    validation_error text,
    validated_at     timestamptz,
    created_by       uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT connections_team_name_key UNIQUE (team_id, name),
    CONSTRAINT connections_credentials_key_key UNIQUE (credentials_key)
);

CREATE INDEX connections_team_idx ON connections (team_id, created_at DESC, id);
CREATE INDEX connections_status_idx ON connections (status, validated_at DESC);
