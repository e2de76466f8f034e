-- API rate limits (issue 14): one token bucket per user and per team, shared by every
-- instance. An instance takes a few tokens at a time (a lease) and spends them in memory,
-- so a request costs a round trip here only when its lease is empty. UNLOGGED: a crash
-- refills the buckets, which errs towards letting requests through, never towards losing
-- data.
CREATE UNLOGGED TABLE rate_buckets (
    key        text PRIMARY KEY CHECK (char_length(key) <= 80),
    tokens     double precision NOT NULL,
    -- How many tokens the last take granted (read back by the taker).
    granted    integer NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
