-- Bridge's demo warehouse: a small e-commerce analytics schema with deterministic data
-- (the same on every load), for trying Bridge locally and for tests. Loaded by
-- `bridge demo-warehouse` into its own database. Generates ~60k rows in well under a second.

CREATE SCHEMA IF NOT EXISTS analytics;
COMMENT ON SCHEMA analytics IS 'Demo e-commerce analytics: customers, products, orders and web events';

-- A deterministic pseudo-random number in [0, 1) from an integer and a salt.
CREATE OR REPLACE FUNCTION analytics.rand01(n integer, salt integer) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT (('x' || substr(md5(n::text || ':' || salt::text), 1, 8))::bit(32)::bigint) / 4294967296.0 $$;

CREATE TABLE analytics.customers (
    customer_id integer PRIMARY KEY,
    name        text NOT NULL,
    email       text NOT NULL,
    region      text NOT NULL,
    segment     text NOT NULL,
    signed_up   date NOT NULL
);
COMMENT ON TABLE analytics.customers IS 'One row per customer';
COMMENT ON COLUMN analytics.customers.region IS 'Sales region: EMEA, AMER or APAC';

INSERT INTO analytics.customers
SELECT n,
       'Customer ' || n,
       'customer' || n || '@example.com',
       (ARRAY['EMEA', 'AMER', 'APAC'])[1 + floor(analytics.rand01(n, 1) * 3)::int],
       (ARRAY['consumer', 'small business', 'enterprise'])[1 + floor(analytics.rand01(n, 2) * 3)::int],
       DATE '2024-01-01' + floor(analytics.rand01(n, 3) * 540)::int
FROM generate_series(1, 500) AS n;

CREATE TABLE analytics.products (
    product_id integer PRIMARY KEY,
    name       text NOT NULL,
    category   text NOT NULL,
    unit_price numeric(10, 2) NOT NULL
);

INSERT INTO analytics.products
SELECT n,
       'Product ' || n,
       (ARRAY['books', 'electronics', 'garden', 'kitchen', 'toys'])[1 + (n % 5)],
       round((5 + analytics.rand01(n, 4) * 195)::numeric, 2)
FROM generate_series(1, 60) AS n;

CREATE TABLE analytics.orders (
    order_id    integer PRIMARY KEY,
    customer_id integer NOT NULL REFERENCES analytics.customers,
    order_date  date NOT NULL,
    status      text NOT NULL,
    region      text NOT NULL
);
COMMENT ON TABLE analytics.orders IS 'One row per order; status is completed, refunded or pending';

INSERT INTO analytics.orders
SELECT n,
       c.customer_id,
       DATE '2025-01-01' + floor(analytics.rand01(n, 5) * 365)::int,
       CASE WHEN analytics.rand01(n, 6) < 0.9 THEN 'completed'
            WHEN analytics.rand01(n, 6) < 0.95 THEN 'refunded' ELSE 'pending' END,
       c.region
FROM generate_series(1, 8000) AS n
JOIN analytics.customers c ON c.customer_id = 1 + floor(analytics.rand01(n, 7) * 500)::int;

CREATE TABLE analytics.order_items (
    order_id   integer NOT NULL REFERENCES analytics.orders,
    line       integer NOT NULL,
    product_id integer NOT NULL REFERENCES analytics.products,
    quantity   integer NOT NULL,
    amount     numeric(12, 2) NOT NULL,
    PRIMARY KEY (order_id, line)
);

INSERT INTO analytics.order_items
SELECT o.order_id, l.line, p.product_id, q.quantity, p.unit_price * q.quantity
FROM analytics.orders o
CROSS JOIN LATERAL generate_series(1, 1 + floor(analytics.rand01(o.order_id, 8) * 3)::int) AS l(line)
CROSS JOIN LATERAL (SELECT 1 + floor(analytics.rand01(o.order_id * 10 + l.line, 9) * 60)::int AS product_id) AS pick
JOIN analytics.products p ON p.product_id = pick.product_id
CROSS JOIN LATERAL (SELECT 1 + floor(analytics.rand01(o.order_id * 10 + l.line, 10) * 4)::int AS quantity) AS q;

-- Web events, partitioned by month (as a BigQuery table would be by day).
CREATE TABLE analytics.events (
    event_id    bigint NOT NULL,
    event_date  date NOT NULL,
    customer_id integer,
    event_type  text NOT NULL,
    page        text NOT NULL
) PARTITION BY RANGE (event_date);
COMMENT ON TABLE analytics.events IS 'Web events, partitioned by month on event_date';

DO $$
DECLARE m date;
BEGIN
    FOR m IN SELECT generate_series(DATE '2025-01-01', DATE '2025-12-01', INTERVAL '1 month')::date LOOP
        EXECUTE format(
            'CREATE TABLE analytics.%I PARTITION OF analytics.events FOR VALUES FROM (%L) TO (%L)',
            'events_' || to_char(m, 'YYYY_MM'), m, (m + INTERVAL '1 month')::date);
    END LOOP;
END $$;

INSERT INTO analytics.events
SELECT n,
       DATE '2025-01-01' + floor(analytics.rand01(n, 11) * 365)::int,
       CASE WHEN analytics.rand01(n, 12) < 0.7 THEN 1 + floor(analytics.rand01(n, 13) * 500)::int END,
       (ARRAY['page_view', 'page_view', 'page_view', 'add_to_cart', 'checkout'])[1 + floor(analytics.rand01(n, 14) * 5)::int],
       (ARRAY['/', '/search', '/product', '/cart', '/checkout'])[1 + floor(analytics.rand01(n, 15) * 5)::int]
FROM generate_series(1, 30000) AS n;

-- What a dashboard reads most: daily revenue per region.
CREATE VIEW analytics.revenue_daily AS
SELECT o.order_date AS date, o.region, sum(i.amount) AS revenue, count(DISTINCT o.order_id) AS orders
FROM analytics.orders o JOIN analytics.order_items i USING (order_id)
WHERE o.status = 'completed'
GROUP BY o.order_date, o.region;
COMMENT ON VIEW analytics.revenue_daily IS 'Completed revenue and order count per day and region';

ANALYZE analytics.customers, analytics.products, analytics.orders, analytics.order_items, analytics.events;
