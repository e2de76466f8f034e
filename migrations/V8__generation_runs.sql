-- The dashboard agent (issue 13): a generation run is a chat run of a `generate` session
-- whose tools write dashboards. What each run used and what it saved are kept with it, so
-- that cost is known per session (its runs) and per dashboard version (the run that saved
-- it).

ALTER TABLE chat_runs
    ADD COLUMN total_tokens     bigint NOT NULL DEFAULT 0,
    ADD COLUMN cost_usd         double precision NOT NULL DEFAULT 0,
    -- Estimated by the warehouse's dry runs (nothing is billed for a dry run).
    ADD COLUMN warehouse_bytes  bigint NOT NULL DEFAULT 0,
    ADD COLUMN dashboard_id     uuid REFERENCES dashboards (id) ON DELETE SET NULL,
    ADD COLUMN dashboard_version integer;

CREATE INDEX chat_runs_dashboard_idx ON chat_runs (dashboard_id, dashboard_version)
    WHERE dashboard_id IS NOT NULL;
