//! Smoke tests of the emulator harness and the stubs: each proves that the client Bridge
//! uses (object_store, aws-sdk-kms, gcp-bigquery-client, plain REST) gets the answers it
//! needs from the stand-in. Emulator tests return early, loudly, when no emulator can be
//! had (and fail instead under `BRIDGE_REQUIRE_EMULATORS=1`, as in `scripts/test`).

#![cfg(feature = "testing")]
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use common::testing::{
    emulators,
    stubs::{
        bigquery::{BigQueryStub, STUB_TOKEN, StubQuery},
        gcpkms::{CloudKmsStub, crc32c},
        gcs::GcsStub,
    },
};
use gcp_bigquery_client::{
    Client,
    client_builder::ClientBuilder,
    error::BQError,
    model::{get_query_results_parameters::GetQueryResultsParameters, query_request::QueryRequest},
};
use object_store::{
    ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion,
    aws::AmazonS3Builder,
    gcp::{GoogleCloudStorageBuilder, GoogleConfigKey},
    path::Path,
};
use serde_json::{Value, json};

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

/// The smallest authenticator gcp-bigquery-client accepts: a fixed token.
#[derive(Clone)]
struct FixedToken(&'static str);

#[async_trait::async_trait]
impl gcp_bigquery_client::auth::Authenticator for FixedToken {
    async fn access_token(&self) -> Result<String, BQError> {
        Ok(self.0.to_owned())
    }
}

async fn bq_client(stub: &BigQueryStub, token: &'static str) -> Client {
    ClientBuilder::new()
        .with_v2_base_url(stub.base_url.clone())
        .build_from_authenticator(Arc::new(FixedToken(token)))
        .await
        .unwrap()
}

fn revenue_schema() -> Value {
    json!({"fields": [
        {"name": "region", "type": "STRING", "mode": "NULLABLE"},
        {"name": "revenue", "type": "FLOAT", "mode": "NULLABLE"},
    ]})
}

fn reason_of(err: &BQError) -> Option<&str> {
    match err {
        BQError::ResponseError { error } => error
            .error
            .errors
            .first()?
            .get("reason")
            .map(String::as_str),
        _ => None,
    }
}

#[tokio::test]
async fn bigquery_client_reads_dry_run_bytes_and_schema_from_the_stub() {
    let stub = BigQueryStub::start().await;
    stub.respond(
        "FROM analytics.revenue",
        StubQuery::rows(123_456_789, revenue_schema(), vec![json!(["EMEA", "1.5"])]),
    );
    let client = bq_client(&stub, STUB_TOKEN).await;
    let request = QueryRequest {
        dry_run: Some(true),
        ..QueryRequest::new("SELECT region, revenue FROM analytics.revenue")
    };
    let answer = client.job().query("test-proj", request).await.unwrap();
    assert_eq!(answer.total_bytes_processed.as_deref(), Some("123456789"));
    assert_eq!(answer.job_complete, Some(true));
    assert!(answer.rows.is_none(), "a dry run returns no rows");
    let fields = answer.schema.unwrap().fields.unwrap();
    assert_eq!(fields.len(), 2);
    assert_eq!(fields[0].name, "region");

    let unmatched = client
        .job()
        .query("test-proj", QueryRequest::new("SELECT 1"))
        .await
        .unwrap_err();
    assert_eq!(reason_of(&unmatched), Some("invalidQuery"));
}

#[tokio::test]
async fn bigquery_client_gets_bytes_billed_limit_exceeded_when_the_cap_is_below_the_bytes() {
    let stub = BigQueryStub::start().await;
    stub.respond(
        "big_table",
        StubQuery::rows(500_000_000, revenue_schema(), vec![]),
    );
    let client = bq_client(&stub, STUB_TOKEN).await;
    let capped = QueryRequest {
        maximum_bytes_billed: Some("100000000".into()),
        ..QueryRequest::new("SELECT * FROM big_table")
    };
    let err = client.job().query("test-proj", capped).await.unwrap_err();
    assert_eq!(reason_of(&err), Some("bytesBilledLimitExceeded"), "{err:?}");
    let BQError::ResponseError { error } = &err else {
        unreachable!()
    };
    assert_eq!(error.error.code, 400);
    assert_eq!(error.error.status, "INVALID_ARGUMENT");
    assert_eq!(
        error.error.message,
        "Query exceeded limit for bytes billed: 100000000. 500000000 or higher required."
    );

    let enough = QueryRequest {
        maximum_bytes_billed: Some("500000000".into()),
        ..QueryRequest::new("SELECT * FROM big_table")
    };
    let answer = client.job().query("test-proj", enough).await.unwrap();
    assert_eq!(answer.total_rows.as_deref(), Some("0"));

    // BigQuery bills at least 10 MiB a query: with minimum billing, a 1 MB cap fails a
    // query reading a few bytes.
    stub.minimum_billing(true);
    stub.respond("tiny", StubQuery::rows(2_000, revenue_schema(), vec![]));
    let tiny = QueryRequest {
        maximum_bytes_billed: Some("1000000".into()),
        ..QueryRequest::new("SELECT * FROM tiny")
    };
    let err = client.job().query("test-proj", tiny).await.unwrap_err();
    assert_eq!(reason_of(&err), Some("bytesBilledLimitExceeded"));

    let sent: Vec<Value> = stub.requests().into_iter().map(|(_, body)| body).collect();
    assert_eq!(sent.len(), 3);
    assert!(
        sent.iter().all(|b| b["maximumBytesBilled"].is_string()),
        "every job carried a cap: {sent:?}"
    );
}

#[tokio::test]
async fn bigquery_client_pages_through_stub_results_with_page_tokens() {
    let stub = BigQueryStub::start().await;
    let rows: Vec<Value> = (0..5)
        .map(|i| json!({"f": [{"v": format!("r{i}")}, {"v": format!("{i}.0")}]}))
        .collect();
    stub.respond("FROM sales", StubQuery::rows(1_000, revenue_schema(), rows));
    let client = bq_client(&stub, STUB_TOKEN).await;
    let first = client
        .job()
        .query(
            "test-proj",
            QueryRequest {
                max_results: Some(2),
                ..QueryRequest::new("SELECT * FROM sales")
            },
        )
        .await
        .unwrap();
    assert_eq!(first.total_rows.as_deref(), Some("5"));
    let mut seen: Vec<String> = first
        .rows
        .unwrap()
        .iter()
        .map(|r| {
            r.columns.as_ref().unwrap()[0]
                .value
                .clone()
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let job = first.job_reference.unwrap();
    assert_eq!(job.location.as_deref(), Some("US"));
    let job_id = job.job_id.unwrap();
    let mut token = first.page_token;
    while let Some(page_token) = token {
        let page = client
            .job()
            .get_query_results(
                "test-proj",
                &job_id,
                GetQueryResultsParameters {
                    page_token: Some(page_token),
                    max_results: Some(2),
                    location: Some("US".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        seen.extend(page.rows.unwrap().iter().map(|r| {
            r.columns.as_ref().unwrap()[0]
                .value
                .clone()
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        }));
        token = page.page_token;
    }
    assert_eq!(seen, ["r0", "r1", "r2", "r3", "r4"]);
}

#[tokio::test]
async fn bigquery_client_authenticates_to_the_stub_with_a_service_account_key() {
    let stub = BigQueryStub::start().await;
    stub.add_dataset("analytics", "US");
    stub.add_dataset("staging", "EU");
    stub.add_table("analytics", "orders");
    stub.add_table("analytics", "revenue_daily");
    let key: gcp_bigquery_client::yup_oauth2::ServiceAccountKey =
        serde_json::from_value(stub.service_account_key()).unwrap();
    let client = ClientBuilder::new()
        .with_v2_base_url(stub.base_url.clone())
        .build_from_service_account_key(key, true)
        .await
        .unwrap();
    let datasets = client
        .dataset()
        .list(
            "test-proj",
            gcp_bigquery_client::dataset::ListOptions::default(),
        )
        .await
        .unwrap();
    let ids: Vec<_> = datasets
        .datasets
        .iter()
        .map(|d| {
            (
                d.dataset_reference.dataset_id.as_str(),
                d.location.as_deref(),
            )
        })
        .collect();
    assert_eq!(ids, [("analytics", Some("US")), ("staging", Some("EU"))]);
    let tables = client
        .table()
        .list(
            "test-proj",
            "analytics",
            gcp_bigquery_client::table::ListOptions::default().max_results(1),
        )
        .await
        .unwrap();
    let page = tables.tables.unwrap();
    assert_eq!(page[0].table_reference.table_id, "orders");
    assert!(tables.next_page_token.is_some());
    assert_eq!(stub.token_calls(), 1, "one token exchange, then cached");

    let missing = client
        .table()
        .list(
            "test-proj",
            "nope",
            gcp_bigquery_client::table::ListOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(reason_of(&missing), Some("notFound"));
}

#[tokio::test]
async fn bigquery_stub_refuses_wrong_tokens_and_fails_every_call_when_told_to() {
    let stub = BigQueryStub::start().await;
    stub.add_dataset("analytics", "US");
    let wrong = bq_client(&stub, "not-the-token").await;
    let err = wrong
        .dataset()
        .list(
            "test-proj",
            gcp_bigquery_client::dataset::ListOptions::default(),
        )
        .await
        .unwrap_err();
    let BQError::ResponseError { error } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(
        (error.error.code, error.error.status.as_str()),
        (401, "UNAUTHENTICATED")
    );

    let client = bq_client(&stub, STUB_TOKEN).await;
    stub.fail_all(
        403,
        "accessDenied",
        "Access Denied: Project test-proj: User does not have bigquery.datasets.list permission",
    );
    let err = client
        .dataset()
        .list(
            "test-proj",
            gcp_bigquery_client::dataset::ListOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(reason_of(&err), Some("accessDenied"));
    stub.stop_failing();
    client
        .dataset()
        .list(
            "test-proj",
            gcp_bigquery_client::dataset::ListOptions::default(),
        )
        .await
        .unwrap();
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
