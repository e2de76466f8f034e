-- The storage integrity check (issue 14, spec 2.11): when the scheduled tick last ran it, and
-- what it found. One row per check (`storage` for now); the tick claims a run by moving
-- `started_at` forward in one statement, so concurrent ticks start at most one run per
-- `STORAGE_CHECK_EVERY_SECS`. `last_report` holds counts and example keys, never contents.

CREATE TABLE storage_checks (
    name        text PRIMARY KEY CHECK (name ~ '^[a-z][a-z_]{0,39}$'),
    started_at  timestamptz NOT NULL,
    finished_at timestamptz,
    -- The last finished run's summary: counts per finding kind, example keys, whether the
    -- run was complete.
    last_report jsonb CHECK (last_report IS NULL OR jsonb_typeof(last_report) = 'object')
);
