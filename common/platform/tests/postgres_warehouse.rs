//! The Postgres warehouse adapter against a real Postgres: the demo warehouse, read through
//! a role that may read `analytics` only.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use testkit::TestWarehouse;

use platform::{
    warehouse::Limits, warehouse::Param, warehouse::ParamValue, warehouse::Warehouse,
    warehouse::WarehouseError, warehouse::postgres::ConnectPolicy,
    warehouse::postgres::PostgresCredentials, warehouse::postgres::PostgresWarehouse,
};
use serde_json::json;

const LIMITS: Limits = Limits {
    max_bytes: 100_000_000,
    timeout: Duration::from_secs(10),
    max_rows: 1000,
    max_result_bytes: 4 * 1024 * 1024,
};

async fn connect(
    url: &str,
    allow_private_hosts: bool,
) -> Result<PostgresWarehouse, WarehouseError> {
    PostgresWarehouse::connect(
        &PostgresCredentials::url(url),
        ConnectPolicy {
            allow_private_hosts,
            allow_plaintext: true,
        },
    )
    .await
}

async fn reader(wh: &TestWarehouse) -> PostgresWarehouse {
    connect(&wh.reader_url, true).await.unwrap()
}

#[tokio::test]
async fn only_readable_non_system_schemas_are_listed() {
    let wh = TestWarehouse::demo().await;
    let pg = reader(&wh).await;
    let datasets = pg.list_datasets().await.unwrap();
    let names: Vec<&str> = datasets.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(
        names,
        ["analytics"],
        "no finance, public, pg_catalog or information_schema"
    );
    assert_eq!(
        datasets[0].fully_qualified_name,
        format!("{}.analytics", wh.db.name)
    );
    assert!(datasets[0].description.as_deref().unwrap().contains("Demo"));
}

#[tokio::test]
async fn tables_views_and_partitioning_are_described() {
    let wh = TestWarehouse::demo().await;
    let pg = reader(&wh).await;
    let tables = pg.list_tables("analytics").await.unwrap();
    let find = |n: &str| {
        tables
            .iter()
            .find(|t| t.name == n)
            .unwrap_or_else(|| panic!("{n} missing"))
    };
    assert_eq!(find("orders").table_type, "TABLE");
    assert_eq!(find("orders").row_count, Some(8000));
    assert!(find("orders").size_bytes.unwrap() > 0);
    assert_eq!(find("revenue_daily").table_type, "VIEW");
    let events = find("events");
    assert_eq!(events.partitioning.as_ref().unwrap()["type"], "RANGE");
    assert!(
        tables.iter().all(|t| !t.name.starts_with("events_2025")),
        "partitions are not tables of their own"
    );
    assert!(
        pg.list_tables("finance").await.unwrap().is_empty(),
        "unreadable tables are not listed"
    );

    let cols = pg.table_columns("analytics", "events").await.unwrap();
    let date = cols.iter().find(|c| c.name == "event_date").unwrap();
    assert!(date.is_partitioning && !date.nullable && date.data_type == "date");
    let region = pg
        .table_columns("analytics", "customers")
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.name == "region")
        .unwrap();
    assert!(region.description.unwrap().contains("EMEA"));
    assert!(matches!(
        pg.table_columns("finance", "salaries").await,
        Err(WarehouseError::NotFound(_))
    ));
}

#[tokio::test]
async fn a_dry_run_reports_columns_and_an_estimate_without_running() {
    let wh = TestWarehouse::demo().await;
    let pg = reader(&wh).await;
    let dry = pg
        .dry_run("SELECT region, sum(amount) AS revenue FROM analytics.orders JOIN analytics.order_items USING (order_id) GROUP BY region", &[])
        .await
        .unwrap();
    let cols: Vec<(&str, &str)> = dry
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.data_type.as_str()))
        .collect();
    assert_eq!(cols, [("region", "text"), ("revenue", "numeric")]);
    assert!(
        dry.bytes > 100_000,
        "scans of 8000 orders and 16000 items: {}",
        dry.bytes
    );
}

#[tokio::test]
async fn query_answers_match_the_warehouse_and_values_are_typed() {
    let wh = TestWarehouse::demo().await;
    let pg = reader(&wh).await;
    let r = pg
        .query(
            "SELECT region, count(*)::int4 AS n, sum(amount) AS revenue, min(order_date) AS first, \
                    bool_or(status = 'refunded') AS any_refund, NULL::text AS nothing \
             FROM analytics.orders JOIN analytics.order_items USING (order_id) WHERE region = $1 GROUP BY region",
            &[Param { name: "region".into(), value: ParamValue::String("EMEA".into()) }],
            &LIMITS,
        )
        .await
        .unwrap();
    let admin = wh.db.client().await;
    let expected = admin
        .query_one(
            "SELECT count(*)::int4, sum(amount)::text FROM analytics.orders JOIN analytics.order_items USING (order_id) WHERE region = 'EMEA'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r.rows.len(), 1);
    let row = &r.rows[0];
    assert_eq!(row[0], json!("EMEA"));
    assert_eq!(row[1], json!(expected.get::<_, i32>(0)));
    assert_eq!(
        row[2],
        json!(expected.get::<_, String>(1)),
        "numeric is served as the exact decimal, as a string"
    );
    assert_eq!(row[3], json!("2025-01-01"));
    assert_eq!(row[4], json!(true));
    assert_eq!(row[5], json!(null));
    assert!(!r.truncated);
    assert!(r.bytes_scanned.unwrap() > 0);
}

#[tokio::test]
async fn rows_stop_at_the_cap_and_say_so() {
    let wh = TestWarehouse::demo().await;
    let pg = reader(&wh).await;
    let limits = Limits {
        max_rows: 25,
        ..LIMITS
    };
    let r = pg
        .query(
            "SELECT order_id FROM analytics.orders ORDER BY order_id",
            &[],
            &limits,
        )
        .await
        .unwrap();
    assert_eq!(r.rows.len(), 25);
    assert!(r.truncated);
    assert_eq!(r.rows[24][0], json!(25));
    let exact = pg
        .query(
            "SELECT order_id FROM analytics.orders ORDER BY order_id LIMIT 25",
            &[],
            &limits,
        )
        .await
        .unwrap();
    assert!(!exact.truncated);
}

#[tokio::test]
async fn the_byte_cap_refuses_a_query_before_it_runs() {
    let wh = TestWarehouse::demo().await;
    let pg = reader(&wh).await;
    let limits = Limits {
        max_bytes: 1_000,
        ..LIMITS
    };
    let e = pg
        .query("SELECT * FROM analytics.events", &[], &limits)
        .await
        .unwrap_err();
    let WarehouseError::BytesLimit { limit, estimated } = e else {
        panic!("{e:?}")
    };
    assert_eq!(limit, 1_000);
    assert!(estimated.unwrap() > 1_000);
}

#[tokio::test]
async fn writes_are_refused_even_when_the_role_could_write() {
    let wh = TestWarehouse::demo().await;
    // The database owner can write; the adapter's read-only transaction still refuses.
    let owner = connect(&wh.db.url, true).await.unwrap();
    for sql in [
        "DELETE FROM analytics.orders",
        "WITH gone AS (DELETE FROM analytics.orders RETURNING 1) SELECT count(*) FROM gone",
        "CREATE TABLE analytics.x (a int)",
    ] {
        let e = owner.query(sql, &[], &LIMITS).await.unwrap_err();
        assert!(matches!(e, WarehouseError::InvalidQuery(_)), "{sql}: {e:?}");
    }
    let e = owner
        .query("SELECT 1; SELECT 2", &[], &LIMITS)
        .await
        .unwrap_err();
    assert!(matches!(e, WarehouseError::InvalidQuery(_)), "{e:?}");
    let count: i64 = wh
        .db
        .client()
        .await
        .query_one("SELECT count(*) FROM analytics.orders", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 8000);
}

#[tokio::test]
async fn slow_queries_time_out() {
    let wh = TestWarehouse::demo().await;
    let pg = reader(&wh).await;
    let limits = Limits {
        timeout: Duration::from_millis(300),
        ..LIMITS
    };
    let e = pg
        .query("SELECT pg_sleep(5)", &[], &limits)
        .await
        .unwrap_err();
    assert!(
        matches!(e, WarehouseError::Timeout(d) if d == Duration::from_millis(300)),
        "{e:?}"
    );
}

#[tokio::test]
async fn permission_and_credential_failures_are_told_apart() {
    let wh = TestWarehouse::demo().await;
    let pg = reader(&wh).await;
    let e = pg
        .query("SELECT * FROM finance.salaries", &[], &LIMITS)
        .await
        .unwrap_err();
    assert!(matches!(e, WarehouseError::PermissionDenied(_)), "{e:?}");
    let bad_role = wh.reader_url.replace(&wh.reader, "nobody_here");
    let nobody = connect(&bad_role, true).await.unwrap();
    let checks = nobody.check_access().await;
    assert!(!checks[0].ok, "{checks:?}");
    assert!(!checks[0].message.contains(&wh.password));
    let checks = pg.check_access().await;
    assert!(checks.iter().all(|c| c.ok), "{checks:?}");
}

#[tokio::test]
async fn private_hosts_are_refused_unless_allowed() {
    let wh = TestWarehouse::demo().await;
    let e = connect(&wh.reader_url, false).await.err().unwrap();
    assert!(
        matches!(e, WarehouseError::PermissionDenied(ref m) if m.contains("private")),
        "{e:?}"
    );
    let e = connect("postgres://u@localhost/db", false)
        .await
        .err()
        .unwrap();
    assert!(matches!(e, WarehouseError::PermissionDenied(_)), "{e:?}");
}

#[tokio::test]
async fn types_bridge_cannot_serve_are_named() {
    let wh = TestWarehouse::demo().await;
    let pg = reader(&wh).await;
    let e = pg
        .query("SELECT interval '1 day' AS span", &[], &LIMITS)
        .await
        .unwrap_err();
    assert!(
        matches!(e, WarehouseError::Unsupported(ref m) if m.contains("interval") && m.contains("::text")),
        "{e:?}"
    );
    let ok = pg
        .query("SELECT interval '1 day'::text AS span, ARRAY[1,2] AS a, '{\"k\":1}'::jsonb AS j, gen_random_uuid() IS NOT NULL AS u, 1.5::float4 AS f", &[], &LIMITS)
        .await
        .unwrap();
    assert_eq!(ok.rows[0][0], json!("1 day"));
    assert_eq!(ok.rows[0][1], json!([1, 2]));
    assert_eq!(ok.rows[0][2], json!({"k": 1}));
    assert_eq!(ok.rows[0][4], json!(1.5));
}

#[tokio::test]
async fn decimals_keep_every_digit() {
    let wh = TestWarehouse::demo().await;
    let pg = reader(&wh).await;
    let r = pg
        .query(
            "SELECT 12345678901234567.89::numeric AS big, -0.000000000000000000000000000001::numeric AS tiny, \
                    'NaN'::numeric AS nan, 9007199254740993::int8 AS int8",
            &[],
            &LIMITS,
        )
        .await
        .unwrap();
    assert_eq!(
        r.rows[0],
        [
            json!("12345678901234567.89"),
            json!("-0.000000000000000000000000000001"),
            json!("NaN"),
            json!(9_007_199_254_740_993_i64),
        ]
    );
    assert_eq!(r.columns[0].data_type, "numeric");
}

#[tokio::test]
async fn a_result_over_the_byte_cap_is_an_error_and_reading_stops() {
    let wh = TestWarehouse::demo().await;
    let pg = reader(&wh).await;
    let limits = Limits {
        max_rows: 100_000,
        max_result_bytes: 64 * 1024,
        ..LIMITS
    };
    // 8000 rows of ~1 KB: 8 MB of JSON, refused after about 64 KB.
    let e = pg
        .query(
            "SELECT order_id, repeat('x', 1000) AS pad FROM analytics.orders",
            &[],
            &limits,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, WarehouseError::ResultTooLarge { limit } if limit == 64 * 1024),
        "{e:?}"
    );
    assert_eq!(e.code(), "result_too_large");
    let small = pg
        .query(
            "SELECT order_id FROM analytics.orders ORDER BY order_id LIMIT 100",
            &[],
            &limits,
        )
        .await
        .unwrap();
    assert_eq!(small.rows.len(), 100);
}

#[tokio::test]
async fn nothing_a_query_leaves_on_its_session_reaches_the_next() {
    // The adapter is the last line behind the SQL guard (which refuses these functions): a
    // session-level advisory lock or setting must not outlive the query on a pooled
    // connection.
    let wh = TestWarehouse::demo().await;
    let owner = connect(&wh.db.url, true).await.unwrap();
    owner
        .query(
            "SELECT pg_try_advisory_lock(424242) AS locked",
            &[],
            &LIMITS,
        )
        .await
        .unwrap();
    let admin = wh.db.client().await;
    let held: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 424242",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        held, 0,
        "the lock was released when the query's connection went back"
    );
    for _ in 0..10 {
        owner
            .query(
                "SELECT set_config('bridge.leak', 'yes', false)",
                &[],
                &LIMITS,
            )
            .await
            .unwrap();
        let r = owner
            .query(
                "SELECT current_setting('bridge.leak', true) AS v",
                &[],
                &LIMITS,
            )
            .await
            .unwrap();
        assert_ne!(r.rows[0][0], json!("yes"));
    }
}
