//! A dashboard on bqemulator end to end: validated (guard, catalog, dry run, columns),
//! stored, and its data served with a parameter bound by name, checked against the rows.
//! (Byte caps and BigQuery's error shapes, which the emulator fakes, are in api.rs on the stub.)

#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use testkit::{TestApp, emulators, service_account_key, stubs::bigquery::BigQueryStub};

#[tokio::test]
async fn a_dashboard_on_bigquery_serves_its_data() {
    let Some(emu) = emulators::bigquery().await else {
        return;
    };
    let token = BigQueryStub::start().await;
    let ds = emu.fresh_dataset().await;
    let schema = json!({ "fields": [
        { "name": "day", "type": "DATE" }, { "name": "region", "type": "STRING" }, { "name": "amount", "type": "FLOAT64" },
    ]});
    emu.create_table(
        &ds,
        "orders",
        schema,
        Some(json!({ "type": "DAY", "field": "day" })),
        &["region"],
    )
    .await;
    let rows: Vec<Value> = (1..=9)
        .map(|i: usize| {
            let region = ["EMEA", "AMER", "APAC"][i % 3];
            json!({ "day": format!("2025-03-0{i}"), "region": region, "amount": i as f64 * 2.5 })
        })
        .collect();
    emu.insert_rows(&ds, "orders", &rows).await;

    let v2 = emu.v2_base();
    let app = TestApp::spawn_with(
        teams::router()
            .merge(connections::router())
            .merge(catalog::router())
            .merge(generate::router())
            .merge(data::router()),
        &[
            ("BIGQUERY_API_URL", &v2),
            ("GCP_TOKEN_URI", &token.token_url),
        ],
    )
    .await;
    let ws = app
        .workspace("bigquery", service_account_key(&emu.project))
        .await;
    let yaml = format!(
        "version: 1\nkind: dashboard\nslug: bq-orders\ntitle: Orders\nconnection: {}\n\
         parameters:\n  - {{ id: since, type: date, default: 2025-03-04 }}\n\
         queries:\n  - id: by_region\n    sql: |\n      SELECT region, SUM(amount) AS revenue, COUNT(*) AS n\n      FROM {ds}.orders\n      WHERE day >= {{{{ param(\"since\") }}}}\n      GROUP BY region\n      ORDER BY region\n\
         layout:\n  - {{ id: chart, type: bar, query: by_region, x: region, y: revenue, position: {{ x: 0, y: 0, w: 12, h: 4 }} }}\n",
        ws.connection
    );
    let created = app
        .post(&format!("/v1/teams/{}/dashboards", ws.team))
        .bearer(&ws.token)
        .json(&json!({ "yaml": yaml }))
        .send()
        .await;
    created.assert_status(201);

    let body = app
        .get("/v1/dashboards/bq-orders/data")
        .bearer(&ws.token)
        .send()
        .await
        .json();
    let q = &body["queries"]["by_region"];
    // Days 4..=9: AMER 4, 7 → 27.5; APAC 5, 8 → 32.5; EMEA 6, 9 → 37.5.
    assert_eq!(
        q["rows"],
        json!([["AMER", 27.5, 2], ["APAC", 32.5, 2], ["EMEA", 37.5, 2]]),
        "{body}"
    );
    assert_eq!(q["columns"][1]["name"], "revenue");
    assert_eq!(q["metadata"]["cache_hit"], false);

    let later = app
        .get("/v1/dashboards/bq-orders/data?since=2025-03-08")
        .bearer(&ws.token)
        .send()
        .await
        .json();
    // Days 8 and 9 only: APAC 8 → 20, EMEA 9 → 22.5.
    assert_eq!(
        later["queries"]["by_region"]["rows"],
        json!([["APAC", 20.0, 1], ["EMEA", 22.5, 1]]),
        "{later}"
    );
    let again = app
        .get("/v1/dashboards/bq-orders/data")
        .bearer(&ws.token)
        .send()
        .await
        .json();
    assert_eq!(again["queries"]["by_region"]["metadata"]["cache_hit"], true);
}
