-- Chat runs (issue 12): one answer to one message, streamed as server-sent events. Every
-- event is kept, numbered per run, so a client that lost its connection replays what it
-- missed from any process (`GET …/runs/{run_id}/events` after `Last-Event-ID`). A run ends
-- with exactly one terminal event (`complete` or `error`), written before it is sent.

CREATE TABLE chat_runs (
    id                uuid PRIMARY KEY,
    session_id        uuid NOT NULL REFERENCES session_manifests (id) ON DELETE CASCADE,
    team_id           uuid NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    user_id           uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    status            text NOT NULL DEFAULT 'running'
                      CHECK (status IN ('running', 'complete', 'error', 'cancelled')),
    error_code        text,
    -- Asked to stop (`POST …/cancel`): the run notices within a second.
    cancel_requested  boolean NOT NULL DEFAULT false,
    -- The SHA-256 of the token the `run` event carries for EventSource clients (which
    -- cannot send an Authorization header): it opens this run's events and nothing else.
    replay_token_hash text NOT NULL,
    replay_expires_at timestamptz NOT NULL,
    steps             integer NOT NULL DEFAULT 0,
    last_seq          integer NOT NULL DEFAULT 0,
    -- The process running it says it is alive; a run whose heartbeat went silent is ended
    -- with an error by whoever notices.
    heartbeat_at      timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz NOT NULL DEFAULT now(),
    finished_at       timestamptz
);

-- One run at a time per session: a second concurrent stream gets 409.
CREATE UNIQUE INDEX chat_runs_one_running ON chat_runs (session_id) WHERE status = 'running';
CREATE INDEX chat_runs_session_idx ON chat_runs (session_id, started_at DESC);

CREATE TABLE chat_run_events (
    run_id     uuid NOT NULL REFERENCES chat_runs (id) ON DELETE CASCADE,
    seq        integer NOT NULL CHECK (seq >= 1),
    event      text NOT NULL,
    data       jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, seq)
);

-- The tools a session may use (by name; empty: the function's defaults).
ALTER TABLE session_manifests ADD COLUMN tools text[] NOT NULL DEFAULT '{}';
