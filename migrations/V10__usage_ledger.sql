-- One cost ledger (issue 14): every LLM call (model_calls, now with its user and run) and
-- every warehouse job (warehouse_jobs: dashboard tiles, precompute, the agent's queries and
-- every dry run), read together through the usage_ledger view by
-- `GET /v1/teams/{team_id}/usage` and counted against the team's daily budgets.

ALTER TABLE model_calls
    ADD COLUMN user_id uuid REFERENCES users (id) ON DELETE SET NULL,
    ADD COLUMN run_id  uuid REFERENCES chat_runs (id) ON DELETE SET NULL;

-- Calls made before this migration belong to their session's user.
UPDATE model_calls m SET user_id = s.user_id
  FROM session_manifests s WHERE s.id = m.session_id AND m.user_id IS NULL;

CREATE INDEX model_calls_run_idx ON model_calls (run_id) WHERE run_id IS NOT NULL;

-- A job Bridge asked a warehouse to do, whatever its outcome. `kind` says why: `tile` (a
-- dashboard's data read that missed the caches), `precompute` (a scheduled or forced warm),
-- `agent` (a query a chat or generation tool ran), `dry_run` (an estimate: nothing billed),
-- `api` (anything else). `bytes` is what the warehouse processed (BigQuery) or the
-- planner's estimate (Postgres); for a dry run it is the estimate. `status` `skipped`: the
-- job was not sent (`error_code` says why, e.g. `budget_exceeded`).
CREATE TABLE warehouse_jobs (
    id                uuid PRIMARY KEY,
    team_id           uuid NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    connection_id     uuid REFERENCES connections (id) ON DELETE SET NULL,
    user_id           uuid REFERENCES users (id) ON DELETE SET NULL,
    kind              text NOT NULL CHECK (kind IN ('tile', 'precompute', 'agent', 'dry_run', 'api')),
    warehouse_type    text NOT NULL,
    dashboard_id      uuid REFERENCES dashboards (id) ON DELETE SET NULL,
    dashboard_version integer,
    session_id        uuid REFERENCES session_manifests (id) ON DELETE SET NULL,
    run_id            uuid REFERENCES chat_runs (id) ON DELETE SET NULL,
    status            text NOT NULL CHECK (status IN ('ok', 'error', 'skipped')),
    error_code        text CHECK (char_length(error_code) <= 64),
    bytes             bigint NOT NULL DEFAULT 0 CHECK (bytes >= 0),
    -- NULL: the warehouse has no per-byte price Bridge knows (Postgres).
    cost_usd          numeric(20, 12),
    duration_ms       integer NOT NULL DEFAULT 0,
    executed_at       timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX warehouse_jobs_team_idx ON warehouse_jobs (team_id, executed_at DESC);
CREATE INDEX warehouse_jobs_dashboard_idx ON warehouse_jobs (dashboard_id, executed_at DESC)
    WHERE dashboard_id IS NOT NULL;
CREATE INDEX warehouse_jobs_run_idx ON warehouse_jobs (run_id) WHERE run_id IS NOT NULL;

-- The budgets count a team's runs started today, and a user's generation runs.
CREATE INDEX chat_runs_team_user_idx ON chat_runs (team_id, user_id, started_at DESC);

-- Both kinds of spending, one row per call or job. `billed_bytes` leaves dry runs out (they
-- are estimates, free on BigQuery); `estimated_bytes` is what dry runs estimated.
CREATE VIEW usage_ledger AS
SELECT m.id,
       m.team_id,
       m.user_id,
       'llm'::text AS kind,
       m.purpose AS detail,
       NULL::uuid AS connection_id,
       r.dashboard_id,
       r.dashboard_version,
       m.session_id,
       m.run_id,
       (m.input_tokens + m.output_tokens + m.cached_input_tokens + m.cache_write_tokens) AS tokens,
       0::bigint AS billed_bytes,
       0::bigint AS estimated_bytes,
       m.cost_usd,
       (m.error IS NULL) AS ok,
       m.executed_at
  FROM model_calls m
  LEFT JOIN chat_runs r ON r.id = m.run_id
UNION ALL
SELECT w.id,
       w.team_id,
       w.user_id,
       w.kind,
       w.status AS detail,
       w.connection_id,
       w.dashboard_id,
       w.dashboard_version,
       w.session_id,
       w.run_id,
       0::bigint AS tokens,
       CASE WHEN w.kind = 'dry_run' OR w.status = 'skipped' THEN 0 ELSE w.bytes END AS billed_bytes,
       CASE WHEN w.kind = 'dry_run' THEN w.bytes ELSE 0 END AS estimated_bytes,
       w.cost_usd,
       (w.status = 'ok') AS ok,
       w.executed_at
  FROM warehouse_jobs w;
