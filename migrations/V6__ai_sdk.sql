-- The AI SDK's directory (issue 11). Postgres holds manifests, pointers, counters and costs;
-- message logs, tool-cache payloads and artifacts live in the sessions and cache buckets.
-- Every row belongs to a team: deleting the team (or the connection, for the tool cache)
-- deletes the rows, and with them the only way to find the objects.

-- A conversation with a model: chat, or the dashboard agent.
CREATE TABLE session_manifests (
    id                 uuid PRIMARY KEY,
    team_id            uuid NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    user_id            uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    connection_id      uuid REFERENCES connections (id) ON DELETE SET NULL,
    dashboard_id       uuid REFERENCES dashboards (id) ON DELETE SET NULL,
    purpose            text NOT NULL CHECK (purpose ~ '^[a-z][a-z_]{0,39}$'),
    title              text CHECK (char_length(title) <= 200),
    provider           text NOT NULL,
    model              text NOT NULL,
    status             text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'archived', 'error')),
    -- The object the next message is appended to (the spec's gcs_messages_uri, as a key of the
    -- sessions bucket), and how many messages the session holds in all.
    messages_key       text,
    message_count      integer NOT NULL DEFAULT 0 CHECK (message_count >= 0),
    -- A rolling summary, made by the session's provider once it passes 50 messages, and the
    -- number of messages it covers.
    summary            text CHECK (char_length(summary) < 500),
    summary_through    integer NOT NULL DEFAULT 0,
    input_tokens       bigint NOT NULL DEFAULT 0,
    output_tokens      bigint NOT NULL DEFAULT 0,
    cache_read_tokens  bigint NOT NULL DEFAULT 0,
    cache_write_tokens bigint NOT NULL DEFAULT 0,
    total_tokens       bigint NOT NULL DEFAULT 0,
    -- The sum of the priced calls; `unpriced_calls` counts calls of models without a price, in
    -- which case the total is a lower bound.
    total_cost_usd     numeric(20, 12) NOT NULL DEFAULT 0,
    unpriced_calls     integer NOT NULL DEFAULT 0,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    last_message_at    timestamptz
);

CREATE INDEX session_manifests_user_idx ON session_manifests (user_id, created_at DESC);
CREATE INDEX session_manifests_team_idx ON session_manifests (team_id, created_at DESC);
CREATE INDEX session_manifests_status_idx ON session_manifests (status, created_at DESC);

-- The JSONL chunks of a session's messages, in order: `messages-0001.jsonl`, … Each chunk
-- holds messages first_seq .. first_seq + message_count - 1. Postgres knows every key, so
-- no bucket is ever listed. `e_tag`/`version` are the object's version the last append
-- wrote: the next append replaces only that version.
CREATE TABLE session_chunks (
    session_id    uuid NOT NULL REFERENCES session_manifests (id) ON DELETE CASCADE,
    chunk_no      integer NOT NULL CHECK (chunk_no >= 1),
    object_key    text NOT NULL,
    first_seq     integer NOT NULL CHECK (first_seq >= 1),
    message_count integer NOT NULL CHECK (message_count >= 0),
    bytes         bigint NOT NULL,
    est_tokens    bigint NOT NULL,
    e_tag         text,
    version       text,
    PRIMARY KEY (session_id, chunk_no)
);

-- Every provider call: tokens (cache reads and writes apart), timings, purpose, outcome and
-- cost. `cost_usd` is NULL when the model has no price: unknown, not free.
CREATE TABLE model_calls (
    id                  uuid PRIMARY KEY,
    team_id             uuid NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    session_id          uuid REFERENCES session_manifests (id) ON DELETE CASCADE,
    provider            text NOT NULL,
    model               text NOT NULL,
    purpose             text NOT NULL,
    input_tokens        bigint NOT NULL DEFAULT 0,
    output_tokens       bigint NOT NULL DEFAULT 0,
    cached_input_tokens bigint NOT NULL DEFAULT 0,
    cache_write_tokens  bigint NOT NULL DEFAULT 0,
    cost_usd            numeric(20, 12),
    first_token_ms      integer,
    latency_ms          integer NOT NULL,
    stop_reason         text,
    error               text CHECK (char_length(error) <= 600),
    executed_at         timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX model_calls_session_idx ON model_calls (session_id, executed_at DESC);
CREATE INDEX model_calls_team_idx ON model_calls (team_id, executed_at DESC);
CREATE INDEX model_calls_cost_idx ON model_calls (executed_at DESC, cost_usd);

-- Prompt blocks, seeded from prompts/*.md by `bridge migrate`: a changed file makes a new
-- version and deactivates the old one. The active blocks are placed first in every request,
-- ordered by (position, name), so that the cached prefix is the same bytes every turn.
CREATE TABLE prompt_blocks (
    id            uuid PRIMARY KEY,
    name          text NOT NULL CHECK (name ~ '^[a-z][a-z0-9_]{0,79}$'),
    block_type    text NOT NULL CHECK (block_type IN ('system', 'user_template', 'context')),
    content       text NOT NULL,
    sha256        text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    version       integer NOT NULL CHECK (version >= 1),
    cache_control text CHECK (cache_control IN ('ephemeral')),
    position      integer NOT NULL DEFAULT 100,
    is_active     boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (name, version)
);

CREATE UNIQUE INDEX prompt_blocks_active_key ON prompt_blocks (name) WHERE is_active;
CREATE INDEX prompt_blocks_name_idx ON prompt_blocks (name, version DESC);

-- The tool cache: a tool's result for canonical arguments, scoped by team and connection
-- (never shared across teams). `cache_key` is the SHA-256 of the tool's name, its version
-- and its canonical arguments; the payload is an object of the cache bucket.
CREATE TABLE tool_cache (
    team_id       uuid NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    connection_id uuid NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    cache_key     text NOT NULL CHECK (cache_key ~ '^[0-9a-f]{64}$'),
    tool_name     text NOT NULL,
    version       integer NOT NULL DEFAULT 1,
    object_key    text NOT NULL,
    size_bytes    bigint NOT NULL,
    ttl_seconds   integer NOT NULL CHECK (ttl_seconds > 0),
    expires_at    timestamptz NOT NULL,
    hit_count     bigint NOT NULL DEFAULT 0,
    last_accessed timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (team_id, connection_id, cache_key)
);

CREATE INDEX tool_cache_expiry_idx ON tool_cache (expires_at);
CREATE INDEX tool_cache_tool_idx ON tool_cache (tool_name, created_at DESC);

-- Artifacts, content-addressed: one object per (team, SHA-256), however often it is stored.
CREATE TABLE artifacts (
    id             uuid PRIMARY KEY,
    team_id        uuid NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    session_id     uuid REFERENCES session_manifests (id) ON DELETE SET NULL,
    artifact_type  text NOT NULL CHECK (artifact_type ~ '^[a-z][a-z0-9_]{0,29}$'),
    content_sha256 text NOT NULL CHECK (content_sha256 ~ '^[0-9a-f]{64}$'),
    object_key     text NOT NULL,
    size_bytes     bigint NOT NULL,
    mime_type      text NOT NULL,
    metadata       jsonb NOT NULL DEFAULT '{}',
    ref_count      integer NOT NULL DEFAULT 1,
    created_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (team_id, content_sha256)
);

CREATE INDEX artifacts_session_idx ON artifacts (session_id, created_at DESC);
