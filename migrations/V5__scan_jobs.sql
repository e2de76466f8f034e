-- Scans run as jobs, outside the request that starts them. A worker holds a lease (its id in
-- `worker`) and says it is alive (`heartbeat_at`) as it runs; a scan whose heartbeat went
-- silent is run again by a new worker, or failed once it has been tried `attempts` times.

ALTER TABLE scan_runs
    ADD COLUMN worker       uuid,
    ADD COLUMN heartbeat_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN attempts     integer NOT NULL DEFAULT 1 CHECK (attempts >= 1);

CREATE INDEX scan_runs_heartbeat_idx ON scan_runs (heartbeat_at) WHERE status = 'running';
