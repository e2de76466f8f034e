//! The BigQuery adapter against bqemulator (real queries, paging, INFORMATION_SCHEMA) and
//! against a stub of BigQuery's documented REST shape for what the emulator fakes: dry-run
//! bytes (always "0" there), `maximumBytesBilled` (ignored there) and error shapes (the
//! emulator answers a bad query with HTTP 200). Service-account keys are generated per test
//! and exchanged at the stub's token endpoint (bqemulator has none).

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use testkit::{
    emulators, emulators::BigQueryEmulator, service_account_key, stubs::bigquery::BigQueryStub,
    stubs::bigquery::StubQuery,
};

use platform::{
    warehouse::Limits, warehouse::Param, warehouse::ParamValue, warehouse::Warehouse,
    warehouse::WarehouseError, warehouse::bigquery::BigQueryWarehouse,
};
use serde_json::{Value, json};

const LIMITS: Limits = Limits {
    max_bytes: 100_000_000,
    timeout: Duration::from_secs(20),
    max_rows: 1000,
    max_result_bytes: 4 * 1024 * 1024,
};

async fn warehouse(base: &str, token_url: &str, project: &str) -> BigQueryWarehouse {
    let key = serde_json::to_vec(&service_account_key(project)).unwrap();
    BigQueryWarehouse::from_service_account(&key, base, token_url)
        .await
        .unwrap()
}

/// A dataset with `orders`, partitioned by day on `order_date` and clustered by region.
async fn orders(emu: &BigQueryEmulator) -> String {
    let ds = emu.fresh_dataset().await;
    let schema = json!({ "fields": [
        { "name": "order_id", "type": "INT64", "mode": "REQUIRED" },
        { "name": "order_date", "type": "DATE" },
        { "name": "region", "type": "STRING" },
        { "name": "amount", "type": "FLOAT64" },
        { "name": "paid", "type": "BOOL" },
    ]});
    emu.create_table(
        &ds,
        "orders",
        schema,
        Some(json!({ "type": "DAY", "field": "order_date" })),
        &["region", "order_id"],
    )
    .await;
    let rows: Vec<Value> = (1..=7)
        .map(|i| {
            json!({
                "order_id": i,
                "order_date": format!("2025-01-0{i}"),
                "region": if i % 2 == 0 { "EMEA" } else { "AMER" },
                "amount": f64::from(i) * 10.5,
                "paid": i != 3,
            })
        })
        .collect();
    emu.insert_rows(&ds, "orders", &rows).await;
    ds
}

#[tokio::test]
async fn emulated_datasets_tables_and_columns_are_described() {
    let Some(emu) = emulators::bigquery().await else {
        return;
    };
    let token = BigQueryStub::start().await;
    let ds = orders(&emu).await;
    let bq = warehouse(&emu.v2_base(), &token.token_url, &emu.project).await;

    let datasets = bq.list_datasets().await.unwrap();
    let mine = datasets
        .iter()
        .find(|d| d.name == ds)
        .expect("dataset listed");
    assert_eq!(mine.fully_qualified_name, format!("{}.{ds}", emu.project));

    let tables = bq.list_tables(&ds).await.unwrap();
    assert_eq!(tables.len(), 1);
    assert_eq!(tables[0].table_type, "TABLE");
    assert_eq!(
        tables[0].partitioning,
        Some(json!({ "field": "order_date" }))
    );
    assert_eq!(
        tables[0].clustering.as_deref(),
        Some(&["region".to_owned(), "order_id".to_owned()][..])
    );

    let columns = bq.table_columns(&ds, "orders").await.unwrap();
    let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["order_id", "order_date", "region", "amount", "paid"]
    );
    assert!(columns[1].is_partitioning && !columns[0].is_partitioning);
    assert_eq!(
        (
            columns[2].clustering_ordinal,
            columns[0].clustering_ordinal,
            columns[3].clustering_ordinal
        ),
        (Some(1), Some(2), None)
    );
    assert!(!columns[0].nullable && columns[2].nullable);
    assert!(matches!(
        bq.table_columns(&ds, "missing").await,
        Err(WarehouseError::NotFound(_))
    ));
}

#[tokio::test]
async fn emulated_query_answers_are_typed_and_match_the_data() {
    let Some(emu) = emulators::bigquery().await else {
        return;
    };
    let token = BigQueryStub::start().await;
    let ds = orders(&emu).await;
    let bq = warehouse(&emu.v2_base(), &token.token_url, &emu.project).await;
    let r = bq
        .query(
            &format!("SELECT region, COUNT(*) AS n, SUM(amount) AS total, LOGICAL_AND(paid) AS all_paid FROM `{}.{ds}.orders` WHERE region = @region GROUP BY region", emu.project),
            &[Param { name: "region".into(), value: ParamValue::String("EMEA".into()) }],
            &LIMITS,
        )
        .await
        .unwrap();
    assert_eq!(
        r.columns
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["region", "n", "total", "all_paid"]
    );
    // EMEA: orders 2, 4, 6 → 3 orders, 10.5 × (2 + 4 + 6) = 126.
    assert_eq!(
        r.rows,
        vec![vec![json!("EMEA"), json!(3), json!(126.0), json!(true)]]
    );
    assert!(!r.truncated);
}

#[tokio::test]
async fn emulated_results_are_paged_up_to_the_row_cap() {
    let Some(emu) = emulators::bigquery().await else {
        return;
    };
    let token = BigQueryStub::start().await;
    let ds = orders(&emu).await;
    let bq = warehouse(&emu.v2_base(), &token.token_url, &emu.project)
        .await
        .with_page_rows(3);
    let sql = format!(
        "SELECT order_id FROM `{}.{ds}.orders` ORDER BY order_id",
        emu.project
    );

    let all = bq.query(&sql, &[], &LIMITS).await.unwrap();
    let ids: Vec<i64> = all.rows.iter().map(|r| r[0].as_i64().unwrap()).collect();
    assert_eq!(ids, [1, 2, 3, 4, 5, 6, 7], "three pages of at most three");
    assert!(!all.truncated);

    let capped = bq
        .query(
            &sql,
            &[],
            &Limits {
                max_rows: 5,
                ..LIMITS
            },
        )
        .await
        .unwrap();
    assert_eq!(capped.rows.len(), 5);
    assert!(capped.truncated);
}

#[tokio::test]
async fn an_emulated_bad_query_is_invalid_even_when_answered_with_200() {
    let Some(emu) = emulators::bigquery().await else {
        return;
    };
    let token = BigQueryStub::start().await;
    let bq = warehouse(&emu.v2_base(), &token.token_url, &emu.project).await;
    let e = bq
        .query("SELEC nonsense FROM", &[], &LIMITS)
        .await
        .unwrap_err();
    assert!(matches!(e, WarehouseError::InvalidQuery(_)), "{e:?}");
}

// ---------------------------------------------------------------- the stub

fn events_schema() -> Value {
    json!({ "fields": [{ "name": "day", "type": "DATE" }, { "name": "views", "type": "INT64" }] })
}

#[tokio::test]
async fn a_dry_run_reports_the_bytes_and_schema_bigquery_estimates() {
    let stub = BigQueryStub::start().await;
    stub.respond(
        "FROM big.events",
        StubQuery::rows(5_000_000_000, events_schema(), vec![]),
    );
    let bq = warehouse(&stub.base_url, &stub.token_url, "acme").await;
    let dry = bq
        .dry_run("SELECT day, views FROM big.events", &[])
        .await
        .unwrap();
    assert_eq!(dry.bytes, 5_000_000_000);
    assert_eq!(
        dry.columns
            .iter()
            .map(|c| (c.name.as_str(), c.data_type.as_str()))
            .collect::<Vec<_>>(),
        [("day", "DATE"), ("views", "INT64")]
    );
}

#[tokio::test]
async fn queries_are_dry_run_first_and_over_the_cap_never_start_a_job() {
    let stub = BigQueryStub::start().await;
    let rows = vec![json!({ "f": [{ "v": "2025-01-01" }, { "v": "42" }] })];
    stub.respond("FROM small", StubQuery::rows(1_000, events_schema(), rows));
    stub.respond(
        "FROM big",
        StubQuery::rows(500_000_000, events_schema(), vec![]),
    );
    let bq = warehouse(&stub.base_url, &stub.token_url, "acme").await;

    let ok = bq.query("SELECT * FROM small", &[], &LIMITS).await.unwrap();
    assert_eq!(ok.rows, vec![vec![json!("2025-01-01"), json!(42)]]);
    assert_eq!(ok.bytes_scanned, Some(1_000));
    let e = bq
        .query("SELECT * FROM big", &[], &LIMITS)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            WarehouseError::BytesLimit {
                limit: 100_000_000,
                estimated: Some(500_000_000)
            }
        ),
        "{e:?}"
    );

    let jobs: Vec<(bool, Value)> = stub
        .requests()
        .into_iter()
        .filter(|(path, _)| path.ends_with("/queries"))
        .map(|(_, body)| (body["dryRun"] == json!(true), body))
        .collect();
    let kinds: Vec<bool> = jobs.iter().map(|(dry, _)| *dry).collect();
    assert_eq!(
        kinds,
        [true, false, true],
        "dry, run; dry (over the cap: no job)"
    );
    assert_eq!(jobs[1].1["maximumBytesBilled"], json!("100000000"));
}

#[tokio::test]
async fn maximum_bytes_billed_still_stops_a_job_the_estimate_let_through() {
    let stub = BigQueryStub::start().await;
    // 1 KB estimated, but BigQuery bills at least 10 MiB: over a 5 MiB cap.
    stub.minimum_billing(true);
    stub.respond("FROM tiny", StubQuery::rows(1_000, events_schema(), vec![]));
    let bq = warehouse(&stub.base_url, &stub.token_url, "acme").await;
    let limits = Limits {
        max_bytes: 5 * 1024 * 1024,
        ..LIMITS
    };
    let e = bq
        .query("SELECT * FROM tiny", &[], &limits)
        .await
        .unwrap_err();
    assert!(
        matches!(e, WarehouseError::BytesLimit { limit, .. } if limit == 5 * 1024 * 1024),
        "{e:?}"
    );
    let billable: Vec<Value> = stub
        .requests()
        .into_iter()
        .filter(|(p, b)| p.ends_with("/queries") && b["dryRun"] != json!(true))
        .map(|(_, b)| b)
        .collect();
    assert_eq!(billable.len(), 1);
    assert_eq!(
        billable[0]["maximumBytesBilled"],
        json!((5 * 1024 * 1024).to_string())
    );
}

#[tokio::test]
async fn bigquery_error_shapes_map_to_what_the_owner_can_act_on() {
    let stub = BigQueryStub::start().await;
    stub.respond(
        "FROM secret",
        StubQuery::error(403, "accessDenied", "Access Denied: Table acme:hr.salaries"),
    );
    stub.respond(
        "FROM nowhere",
        StubQuery::error(404, "notFound", "Not found: Table acme:x.nowhere"),
    );
    stub.respond(
        "SELEC",
        StubQuery::error(400, "invalidQuery", "Syntax error: Unexpected identifier"),
    );
    let bq = warehouse(&stub.base_url, &stub.token_url, "acme").await;
    type Expect = fn(&WarehouseError) -> bool;
    let cases: [(&str, Expect); 3] = [
        (
            "SELECT * FROM secret",
            |e| matches!(e, WarehouseError::PermissionDenied(m) if m.contains("Access Denied")),
        ),
        ("SELECT * FROM nowhere", |e| {
            matches!(e, WarehouseError::NotFound(_))
        }),
        (
            "SELEC 1",
            |e| matches!(e, WarehouseError::InvalidQuery(m) if m.contains("Syntax error")),
        ),
    ];
    for (sql, expected) in cases {
        let e = bq.query(sql, &[], &LIMITS).await.unwrap_err();
        assert!(expected(&e), "{sql}: {e:?}");
    }
}

#[tokio::test]
async fn the_key_is_exchanged_once_and_never_at_its_own_token_uri() {
    let stub = BigQueryStub::start().await;
    stub.respond(
        "SELECT 1",
        StubQuery::rows(
            0,
            json!({ "fields": [{ "name": "f0_", "type": "INT64" }] }),
            vec![json!({ "f": [{ "v": "1" }] })],
        ),
    );
    let mut key = service_account_key("acme");
    key["token_uri"] = json!("http://169.254.169.254/not-google");
    let bq = BigQueryWarehouse::from_service_account(
        &serde_json::to_vec(&key).unwrap(),
        &stub.base_url,
        &stub.token_url,
    )
    .await
    .unwrap();
    for _ in 0..3 {
        bq.query("SELECT 1", &[], &LIMITS).await.unwrap();
    }
    assert_eq!(stub.token_calls(), 1);
}

#[tokio::test]
async fn access_checks_cover_jobs_datasets_and_tables() {
    let stub = BigQueryStub::start().await;
    stub.respond(
        "SELECT 1",
        StubQuery::rows(0, json!({ "fields": [] }), vec![]),
    );
    stub.add_dataset("analytics", "EU");
    stub.add_table("analytics", "orders");
    let bq = warehouse(&stub.base_url, &stub.token_url, "acme").await;
    let checks = bq.check_access().await;
    let names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "authenticate",
            "jobs.create",
            "datasets.list",
            "tables.list"
        ]
    );
    assert!(checks.iter().all(|c| c.ok), "{checks:?}");

    stub.fail_all(
        403,
        "accessDenied",
        "Access Denied: Project acme: User does not have bigquery.jobs.create permission",
    );
    let checks = bq.check_access().await;
    let job = checks.iter().find(|c| c.name == "jobs.create").unwrap();
    assert!(
        !job.ok && job.message.contains("bigquery.jobs.create"),
        "{checks:?}"
    );
}

#[tokio::test]
async fn short_metadata_rows_are_errors_not_panics() {
    // A proxy or an emulator answering INFORMATION_SCHEMA with fewer columns than asked for.
    let stub = BigQueryStub::start().await;
    let one_column = json!({ "fields": [{ "name": "column_name", "type": "STRING" }] });
    stub.respond(
        "INFORMATION_SCHEMA.COLUMNS WHERE table_name",
        StubQuery::rows(
            10,
            one_column.clone(),
            vec![json!({ "f": [{ "v": "region" }] })],
        ),
    );
    stub.respond(
        "INFORMATION_SCHEMA.TABLES",
        StubQuery::rows(10, one_column, vec![json!({ "f": [{ "v": "orders" }] })]),
    );
    let bq = warehouse(&stub.base_url, &stub.token_url, "acme").await;
    let e = bq.table_columns("sales", "orders").await.unwrap_err();
    assert!(
        matches!(e, WarehouseError::Unavailable(ref m) if m.contains("columns")),
        "{e:?}"
    );
    let e = bq.list_tables("sales").await.unwrap_err();
    assert!(matches!(e, WarehouseError::Unavailable(_)), "{e:?}");
}

#[tokio::test]
async fn an_unreachable_token_endpoint_is_an_outage_not_a_rejected_key() {
    let stub = BigQueryStub::start().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let token_url = format!("http://{}/token", closed.local_addr().unwrap());
    drop(closed);
    let bq = warehouse(&stub.base_url, &token_url, "acme").await;
    let checks = bq.check_access().await;
    assert_eq!(checks[0].name, "authenticate");
    assert!(!checks[0].ok);
    assert!(checks[0].transient(), "{checks:?}");
    assert_eq!(checks[0].code.as_deref(), Some("warehouse_unavailable"));
    // And a token endpoint that refuses the key is a rejection.
    let refusing = warehouse(&stub.base_url, &format!("{}/nope", stub.base_url), "acme").await;
    let checks = refusing.check_access().await;
    assert!(!checks[0].ok && !checks[0].transient(), "{checks:?}");
    assert_eq!(
        checks[0].code.as_deref(),
        Some("warehouse_credentials_rejected")
    );
}
