//! Smoke tests of the emulator harness and the stubs: each proves that the client Bridge
//! uses (object_store, aws-sdk-kms, plain REST as the BigQuery adapter speaks it) gets the answers it
//! needs from the stand-in. Emulator tests return early, loudly, when no emulator can be
//! had (and fail instead under `BRIDGE_REQUIRE_EMULATORS=1`, as in `scripts/test`).

#![allow(clippy::unwrap_used)]

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use object_store::{
    ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion,
    aws::AmazonS3Builder,
    gcp::{GoogleCloudStorageBuilder, GoogleConfigKey},
    path::Path,
};
use serde_json::{Value, json};
use testkit::{
    emulators, stubs::bigquery::BigQueryStub, stubs::bigquery::STUB_TOKEN,
    stubs::bigquery::StubQuery, stubs::gcpkms::CloudKmsStub, stubs::gcpkms::crc32c,
    stubs::gcs::GcsStub,
};

// ---------------------------------------------------------------- shared checks

/// Put, get, head, conditional puts and delete, as Bridge's blob store uses them.
async fn exercise_object_store(store: &dyn ObjectStore) {
    let path = Path::from("teams/t1/credentials/c 1.bin");
    let first = store
        .put(&path, PutPayload::from_static(b"first"))
        .await
        .unwrap();
    let got = store.get(&path).await.unwrap().bytes().await.unwrap();
    assert_eq!(&got[..], b"first");
    let meta = store.head(&path).await.unwrap();
    assert_eq!(meta.size, 5);
    assert_eq!(meta.e_tag, first.e_tag);

    let create_again = store
        .put_opts(
            &path,
            PutPayload::from_static(b"again"),
            PutOptions::from(PutMode::Create),
        )
        .await;
    assert!(
        matches!(create_again, Err(object_store::Error::AlreadyExists { .. })),
        "create on an existing key: {create_again:?}"
    );

    let second = store
        .put(&path, PutPayload::from_static(b"second"))
        .await
        .unwrap();
    let stale = store
        .put_opts(
            &path,
            PutPayload::from_static(b"stale"),
            PutOptions::from(PutMode::Update(UpdateVersion::from(first.clone()))),
        )
        .await;
    assert!(
        matches!(stale, Err(object_store::Error::Precondition { .. })),
        "update with a stale version: {stale:?}"
    );
    store
        .put_opts(
            &path,
            PutPayload::from_static(b"third"),
            PutOptions::from(PutMode::Update(UpdateVersion::from(second))),
        )
        .await
        .unwrap();
    let got = store.get(&path).await.unwrap().bytes().await.unwrap();
    assert_eq!(&got[..], b"third");

    let fresh = Path::from("fresh/object.json");
    store
        .put_opts(
            &fresh,
            PutPayload::from_static(b"{}"),
            PutOptions::from(PutMode::Create),
        )
        .await
        .unwrap();

    store.delete(&path).await.unwrap();
    let gone = store.get(&path).await;
    assert!(
        matches!(gone, Err(object_store::Error::NotFound { .. })),
        "get after delete: {gone:?}"
    );
}

// ---------------------------------------------------------------- GCS stub

fn gcs_store(stub: &GcsStub, token: &str) -> impl ObjectStore {
    GoogleCloudStorageBuilder::new()
        .with_bucket_name(&stub.bucket)
        .with_config(GoogleConfigKey::BaseUrl, &stub.base_url)
        .with_config(GoogleConfigKey::BearerToken, token)
        .with_client_options(ClientOptions::new().with_allow_http(true))
        .build()
        .unwrap()
}

#[tokio::test]
async fn object_store_gcs_client_puts_gets_and_deletes_through_the_gcs_stub() {
    let stub = GcsStub::start("bridge-credentials").await;
    let store = gcs_store(&stub, "any-token");
    exercise_object_store(&store).await;
    let objects = stub.objects();
    assert_eq!(
        objects.keys().collect::<Vec<_>>(),
        ["fresh/object.json"],
        "what is left after the delete"
    );

    // Ranges and a GET by generation, as object_store asks for them.
    let path = Path::from("fresh/object.json");
    assert_eq!(&store.get_range(&path, 1..2).await.unwrap()[..], b"}");
    assert!(stub.generation("fresh/object.json").is_some());
}

#[tokio::test]
async fn gcs_stub_enforces_generation_preconditions_and_answers_xml_errors() {
    let stub = GcsStub::start("b").await;
    let http = reqwest::Client::new();
    let url = |name: &str| format!("{}/b/{name}", stub.base_url);
    let auth = ("authorization", "Bearer t");

    let unauthenticated = http.get(url("x")).send().await.unwrap();
    assert_eq!(unauthenticated.status(), 401);

    let missing = http
        .get(url("x"))
        .header(auth.0, auth.1)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert!(
        missing
            .text()
            .await
            .unwrap()
            .contains("<Code>NoSuchKey</Code>")
    );

    let put = |gen_match: Option<&str>, body: &'static str| {
        let mut r = http.put(url("a%2Fb")).header(auth.0, auth.1).body(body);
        if let Some(g) = gen_match {
            r = r.header("x-goog-if-generation-match", g);
        }
        r.send()
    };
    let created = put(Some("0"), "one").await.unwrap();
    assert_eq!(created.status(), 200);
    for h in ["etag", "x-goog-generation", "last-modified"] {
        assert!(created.headers().contains_key(h), "PUT answers {h}");
    }
    let g1: i64 = created.headers()["x-goog-generation"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();

    let again = put(Some("0"), "two").await.unwrap();
    assert_eq!(again.status(), 412);
    assert!(
        again
            .text()
            .await
            .unwrap()
            .contains("<Code>PreconditionFailed</Code>")
    );

    let updated = put(Some(&g1.to_string()), "two").await.unwrap();
    assert_eq!(updated.status(), 200);
    let g2: i64 = updated.headers()["x-goog-generation"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(g2 > g1, "generations increase per write");
    assert_eq!(stub.objects()["a/b"], b"two");

    let delete = http
        .delete(url("a%2Fb"))
        .header(auth.0, auth.1)
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 204);
    let delete = http
        .delete(url("a%2Fb"))
        .header(auth.0, auth.1)
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 404);
}

// ---------------------------------------------------------------- Cloud KMS stub

async fn kms_call(stub: &CloudKmsStub, key: &str, method: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/{key}:{method}", stub.base_url))
        .bearer_auth("any-token")
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn cloud_kms_stub_decrypts_only_with_the_same_additional_authenticated_data() {
    let stub = CloudKmsStub::start().await;
    let key = stub.key_name.clone();
    let data_key = [7u8; 32];
    let aad = B64.encode(b"team-1/connection-1");
    let (status, wrapped) = kms_call(
        &stub,
        &key,
        "encrypt",
        json!({"plaintext": B64.encode(data_key), "additionalAuthenticatedData": aad}),
    )
    .await;
    assert_eq!(status, 200, "{wrapped}");
    assert_eq!(wrapped["name"], format!("{key}/cryptoKeyVersions/1"));
    let ciphertext = wrapped["ciphertext"].as_str().unwrap().to_owned();
    assert_ne!(B64.decode(&ciphertext).unwrap(), data_key);
    // The integrity field is CRC32C (check value of "123456789": 0xE3069283).
    assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    assert_eq!(
        wrapped["ciphertextCrc32c"],
        crc32c(&B64.decode(&ciphertext).unwrap()).to_string()
    );

    let (status, plain) = kms_call(
        &stub,
        &key,
        "decrypt",
        json!({"ciphertext": ciphertext, "additionalAuthenticatedData": aad}),
    )
    .await;
    assert_eq!(status, 200, "{plain}");
    assert_eq!(
        B64.decode(plain["plaintext"].as_str().unwrap()).unwrap(),
        data_key
    );

    let invalid = json!({"error": {"code": 400, "message": "Decryption failed: the ciphertext is invalid.", "status": "INVALID_ARGUMENT"}});
    let (status, err) = kms_call(
        &stub,
        &key,
        "decrypt",
        json!({"ciphertext": ciphertext, "additionalAuthenticatedData": B64.encode(b"team-2/connection-1")}),
    )
    .await;
    assert_eq!((status, &err), (400, &invalid));

    let mut tampered = B64.decode(&ciphertext).unwrap();
    *tampered.last_mut().unwrap() ^= 1;
    let (status, err) = kms_call(
        &stub,
        &key,
        "decrypt",
        json!({"ciphertext": B64.encode(tampered), "additionalAuthenticatedData": aad}),
    )
    .await;
    assert_eq!((status, &err), (400, &invalid));
    assert_eq!(stub.calls(), 4);
}

#[tokio::test]
async fn cloud_kms_stub_refuses_unknown_keys_and_calls_without_a_token() {
    let stub = CloudKmsStub::start().await;
    let other = stub.key_name.replace("credentials", "nope");
    let (status, err) = kms_call(&stub, &other, "encrypt", json!({"plaintext": "AA=="})).await;
    assert_eq!(status, 404);
    assert_eq!(err["error"]["status"], "NOT_FOUND");

    let response = reqwest::Client::new()
        .post(format!("{}/v1/{}:encrypt", stub.base_url, stub.key_name))
        .json(&json!({"plaintext": "AA=="}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let err: Value = response.json().await.unwrap();
    assert_eq!(err["error"]["status"], "UNAUTHENTICATED");
    assert_eq!(stub.calls(), 2);
}

// ---------------------------------------------------------------- BigQuery stub

/// One call of the stub's REST API, as the BigQuery adapter makes it: `(status, body)`.
async fn bq_call(
    stub: &BigQueryStub,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}{path}", stub.base_url))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let r = request.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn bq_query(stub: &BigQueryStub, body: Value) -> (u16, Value) {
    bq_call(
        stub,
        STUB_TOKEN,
        reqwest::Method::POST,
        "/projects/test-proj/queries",
        Some(body),
    )
    .await
}

fn revenue_schema() -> Value {
    json!({"fields": [
        {"name": "region", "type": "STRING", "mode": "NULLABLE"},
        {"name": "revenue", "type": "FLOAT", "mode": "NULLABLE"},
    ]})
}

fn reason_of(err: &Value) -> Option<&str> {
    err["error"]["errors"][0]["reason"].as_str()
}

#[tokio::test]
async fn bigquery_stub_answers_dry_runs_with_bytes_and_schema() {
    let stub = BigQueryStub::start().await;
    stub.respond(
        "FROM analytics.revenue",
        StubQuery::rows(123_456_789, revenue_schema(), vec![json!(["EMEA", "1.5"])]),
    );
    let (status, answer) = bq_query(
        &stub,
        json!({"query": "SELECT region, revenue FROM analytics.revenue", "useLegacySql": false, "dryRun": true}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(answer["totalBytesProcessed"], "123456789");
    assert_eq!(answer["jobComplete"], true);
    assert!(answer.get("rows").is_none(), "a dry run returns no rows");
    let fields = answer["schema"]["fields"].as_array().unwrap();
    assert_eq!(fields.len(), 2);
    assert_eq!(fields[0]["name"], "region");

    let (status, unmatched) = bq_query(&stub, json!({"query": "SELECT 1"})).await;
    assert_eq!(status, 400);
    assert_eq!(reason_of(&unmatched), Some("invalidQuery"));
}

#[tokio::test]
async fn bigquery_stub_answers_bytes_billed_limit_exceeded_when_the_cap_is_below_the_bytes() {
    let stub = BigQueryStub::start().await;
    stub.respond(
        "big_table",
        StubQuery::rows(500_000_000, revenue_schema(), vec![]),
    );
    let (status, err) = bq_query(
        &stub,
        json!({"query": "SELECT * FROM big_table", "maximumBytesBilled": "100000000"}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(reason_of(&err), Some("bytesBilledLimitExceeded"), "{err}");
    assert_eq!(err["error"]["code"], 400);
    assert_eq!(err["error"]["status"], "INVALID_ARGUMENT");
    assert_eq!(
        err["error"]["message"],
        "Query exceeded limit for bytes billed: 100000000. 500000000 or higher required."
    );

    let (status, answer) = bq_query(
        &stub,
        json!({"query": "SELECT * FROM big_table", "maximumBytesBilled": "500000000"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(answer["totalRows"], "0");

    // BigQuery bills at least 10 MiB a query: with minimum billing, a 1 MB cap fails a
    // query reading a few bytes.
    stub.minimum_billing(true);
    stub.respond("tiny", StubQuery::rows(2_000, revenue_schema(), vec![]));
    let (_, err) = bq_query(
        &stub,
        json!({"query": "SELECT * FROM tiny", "maximumBytesBilled": "1000000"}),
    )
    .await;
    assert_eq!(reason_of(&err), Some("bytesBilledLimitExceeded"));

    let sent: Vec<Value> = stub.requests().into_iter().map(|(_, body)| body).collect();
    assert_eq!(sent.len(), 3);
    assert!(
        sent.iter().all(|b| b["maximumBytesBilled"].is_string()),
        "every job carried a cap: {sent:?}"
    );
}

#[tokio::test]
async fn bigquery_stub_pages_results_with_page_tokens() {
    let stub = BigQueryStub::start().await;
    let rows: Vec<Value> = (0..5)
        .map(|i| json!({"f": [{"v": format!("r{i}")}, {"v": format!("{i}.0")}]}))
        .collect();
    stub.respond("FROM sales", StubQuery::rows(1_000, revenue_schema(), rows));
    let (_, first) = bq_query(
        &stub,
        json!({"query": "SELECT * FROM sales", "maxResults": 2}),
    )
    .await;
    assert_eq!(first["totalRows"], "5");
    let names = |page: &Value| -> Vec<String> {
        page["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["f"][0]["v"].as_str().unwrap().to_owned())
            .collect()
    };
    let mut seen = names(&first);
    assert_eq!(first["jobReference"]["location"], "US");
    let job_id = first["jobReference"]["jobId"].as_str().unwrap().to_owned();
    let mut token = first["pageToken"].as_str().map(str::to_owned);
    while let Some(page_token) = token {
        let (status, page) = bq_call(
            &stub,
            STUB_TOKEN,
            reqwest::Method::GET,
            &format!(
                "/projects/test-proj/queries/{job_id}?pageToken={page_token}&maxResults=2&location=US"
            ),
            None,
        )
        .await;
        assert_eq!(status, 200, "{page}");
        seen.extend(names(&page));
        token = page["pageToken"].as_str().map(str::to_owned);
    }
    assert_eq!(seen, ["r0", "r1", "r2", "r3", "r4"]);
}

#[tokio::test]
async fn bigquery_stub_exchanges_a_service_account_assertion_and_lists() {
    let stub = BigQueryStub::start().await;
    stub.add_dataset("analytics", "US");
    stub.add_dataset("staging", "EU");
    stub.add_table("analytics", "orders");
    stub.add_table("analytics", "revenue_daily");
    let key: platform::gcp::ServiceAccountKey =
        serde_json::from_value(stub.service_account_key()).unwrap();
    let auth = platform::gcp::GoogleAuth::service_account(
        key,
        &stub.token_url,
        &[platform::gcp::BIGQUERY_SCOPE],
    )
    .unwrap();
    let token = auth.token().await.unwrap();
    let (status, datasets) = bq_call(
        &stub,
        &token,
        reqwest::Method::GET,
        "/projects/test-proj/datasets",
        None,
    )
    .await;
    assert_eq!(status, 200);
    let ids: Vec<_> = datasets["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["datasetReference"]["datasetId"].as_str().unwrap(),
                d["location"].as_str(),
            )
        })
        .collect();
    assert_eq!(ids, [("analytics", Some("US")), ("staging", Some("EU"))]);
    let (_, tables) = bq_call(
        &stub,
        &auth.token().await.unwrap(),
        reqwest::Method::GET,
        "/projects/test-proj/datasets/analytics/tables?maxResults=1",
        None,
    )
    .await;
    assert_eq!(tables["tables"][0]["tableReference"]["tableId"], "orders");
    assert!(tables["nextPageToken"].is_string());
    assert_eq!(stub.token_calls(), 1, "one token exchange, then cached");

    let (status, missing) = bq_call(
        &stub,
        &token,
        reqwest::Method::GET,
        "/projects/test-proj/datasets/nope/tables",
        None,
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(reason_of(&missing), Some("notFound"));
}

#[tokio::test]
async fn bigquery_stub_refuses_wrong_tokens_and_fails_every_call_when_told_to() {
    let stub = BigQueryStub::start().await;
    stub.add_dataset("analytics", "US");
    let list = |token: &'static str| {
        bq_call(
            &stub,
            token,
            reqwest::Method::GET,
            "/projects/test-proj/datasets",
            None,
        )
    };
    let (status, err) = list("not-the-token").await;
    assert_eq!(
        (
            status,
            err["error"]["code"].as_u64(),
            err["error"]["status"].as_str()
        ),
        (401, Some(401), Some("UNAUTHENTICATED"))
    );

    stub.fail_all(
        403,
        "accessDenied",
        "Access Denied: Project test-proj: User does not have bigquery.datasets.list permission",
    );
    let (status, err) = list(STUB_TOKEN).await;
    assert_eq!(status, 403);
    assert_eq!(reason_of(&err), Some("accessDenied"));
    stub.stop_failing();
    assert_eq!(list(STUB_TOKEN).await.0, 200);
}

// ---------------------------------------------------------------- moto

#[tokio::test]
async fn object_store_s3_client_puts_gets_and_deletes_on_moto_with_conditional_puts() {
    let Some(moto) = emulators::moto().await else {
        return;
    };
    let bucket = moto.fresh_bucket().await;
    let store = AmazonS3Builder::new()
        .with_endpoint(&moto.endpoint)
        .with_allow_http(true)
        .with_access_key_id("testing")
        .with_secret_access_key("testing")
        .with_region("us-east-1")
        .with_bucket_name(&bucket)
        .with_virtual_hosted_style_request(false)
        .build()
        .unwrap();
    exercise_object_store(&store).await;
}

#[tokio::test]
async fn moto_kms_data_keys_decrypt_only_with_their_encryption_context() {
    use aws_sdk_kms::{primitives::Blob, types::DataKeySpec};
    let Some(moto) = emulators::moto().await else {
        return;
    };
    let key_arn = moto.create_kms_key().await;
    let kms = moto.kms_client();
    let generated = kms
        .generate_data_key()
        .key_id(&key_arn)
        .key_spec(DataKeySpec::Aes256)
        .encryption_context("team_id", "t1")
        .encryption_context("connection_id", "c1")
        .send()
        .await
        .unwrap();
    let plaintext = generated.plaintext().unwrap().as_ref().to_vec();
    assert_eq!(plaintext.len(), 32);
    let wrapped = generated.ciphertext_blob().unwrap().clone();

    let decrypted = kms
        .decrypt()
        .ciphertext_blob(wrapped.clone())
        .encryption_context("team_id", "t1")
        .encryption_context("connection_id", "c1")
        .send()
        .await
        .unwrap();
    assert_eq!(decrypted.plaintext().unwrap().as_ref(), &plaintext[..]);

    let other = kms
        .decrypt()
        .ciphertext_blob(Blob::new(wrapped.into_inner()))
        .encryption_context("team_id", "t2")
        .encryption_context("connection_id", "c1")
        .send()
        .await;
    assert!(other.is_err(), "another context must not decrypt");
}

// ---------------------------------------------------------------- bqemulator

async fn bq_rest(method: reqwest::Method, url: String, body: Option<Value>) -> Value {
    let mut request = reqwest::Client::new().request(method, &url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{url}: HTTP {status}: {text}");
    serde_json::from_str(&text).unwrap()
}

fn cells(page: &Value) -> Vec<Vec<Value>> {
    page["rows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    r["f"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|c| c["v"].clone())
                        .collect()
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn bqemulator_pages_query_results_and_reports_partitioning_and_clustering() {
    let Some(bq) = emulators::bigquery().await else {
        return;
    };
    let dataset = bq.fresh_dataset().await;
    let schema = json!({"fields": [
        {"name": "day", "type": "DATE"},
        {"name": "region", "type": "STRING"},
        {"name": "product", "type": "STRING"},
        {"name": "revenue", "type": "FLOAT"},
    ]});
    let table = bq
        .create_table(
            &dataset,
            "revenue_daily",
            schema,
            Some(json!({"type": "DAY", "field": "day"})),
            &["region", "product"],
        )
        .await;
    assert_eq!(table["timePartitioning"]["field"], "day");
    let rows: Vec<Value> = (1..=5)
        .map(|d| {
            json!({"day": format!("2024-01-0{d}"), "region": if d % 2 == 0 {"EU"} else {"US"},
                   "product": format!("p{d}"), "revenue": f64::from(d) * 1.5})
        })
        .collect();
    bq.insert_rows(&dataset, "revenue_daily", &rows).await;

    let queries = format!("{}/projects/{}/queries", bq.v2_base(), bq.project);
    let first = bq_rest(
        reqwest::Method::POST,
        queries.clone(),
        Some(json!({
            "query": format!("SELECT day, region, revenue FROM {dataset}.revenue_daily ORDER BY day"),
            "useLegacySql": false,
            "maxResults": 2,
        })),
    )
    .await;
    assert_eq!(first["totalRows"], "5");
    let mut days: Vec<Value> = cells(&first).into_iter().map(|r| r[0].clone()).collect();
    let job_id = first["jobReference"]["jobId"].as_str().unwrap().to_owned();
    let mut token = first["pageToken"].as_str().map(str::to_owned);
    while let Some(t) = token {
        let page = bq_rest(
            reqwest::Method::GET,
            format!("{queries}/{job_id}?maxResults=2&pageToken={t}"),
            None,
        )
        .await;
        days.extend(cells(&page).into_iter().map(|r| r[0].clone()));
        token = page["pageToken"].as_str().map(str::to_owned);
    }
    assert_eq!(
        days,
        (1..=5)
            .map(|d| json!(format!("2024-01-0{d}")))
            .collect::<Vec<_>>()
    );

    let columns = bq_rest(
        reqwest::Method::POST,
        queries,
        Some(json!({
            "query": format!(
                "SELECT column_name, is_partitioning_column, clustering_ordinal_position \
                 FROM {dataset}.INFORMATION_SCHEMA.COLUMNS \
                 WHERE table_name = 'revenue_daily' ORDER BY ordinal_position"
            ),
            "useLegacySql": false,
        })),
    )
    .await;
    assert_eq!(
        cells(&columns),
        [
            [json!("day"), json!("YES"), Value::Null],
            [json!("region"), json!("NO"), json!("1")],
            [json!("product"), json!("NO"), json!("2")],
            [json!("revenue"), json!("NO"), Value::Null],
        ]
    );
}
