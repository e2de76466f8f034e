//! Encrypt+store and load+decrypt latency of one warehouse credential with the local key
//! ring and a local-directory bucket (the defaults): `cargo bench -p services --bench credentials`.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use platform::{
    blob::BlobStore, blob::ObjectStoreBlobs, keyring::LocalKeyRing, warehouse::Dialect,
};

use services::{connections::Connection, connections::ConnectionStatus, connections::Connections};
use uuid::Uuid;

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "{what:<22} n={} median {:>7.1} µs  p90 {:>7.1} µs  p99 {:>7.1} µs",
        samples.len(),
        pct(0.5).as_secs_f64() * 1e6,
        pct(0.9).as_secs_f64() * 1e6,
        pct(0.99).as_secs_f64() * 1e6
    );
}

#[tokio::main]
async fn main() {
    let dir = std::env::temp_dir().join(format!("bridge-bench-{}", Uuid::new_v4()));
    let blobs: Arc<dyn BlobStore> = Arc::new(
        ObjectStoreBlobs::open(&format!("file:{}", dir.join("credentials").display()), &[])
            .unwrap(),
    );
    let ring = Arc::new(LocalKeyRing::open(&dir.join("keyring.key")).unwrap());
    // The defaults' settings; the pool connects lazily and is never used here.
    let settings = settings::Settings::from_lookup(|_| None).unwrap();
    let connections = Connections::new(
        storage::db::pool(
            "postgres://localhost/unused",
            None,
            storage::db::PoolOptions {
                max_size: 1,
                timeout: Duration::from_secs(1),
                statement_timeout: None,
            },
        )
        .unwrap(),
        blobs.clone(),
        ring,
        settings.warehouse,
    );
    // A service-account key is ~2.3 KB.
    let secret = vec![b'k'; 2300];
    let team = Uuid::now_v7();
    let n = 2000;
    let (mut store, mut load) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let id = Uuid::now_v7();
        let t = Instant::now();
        let (key, _) = connections
            .store_credentials(team, id, &secret)
            .await
            .unwrap();
        store.push(t.elapsed());
        let connection = Connection {
            id,
            team_id: team,
            name: String::new(),
            warehouse_type: Dialect::Postgres,
            status: ConnectionStatus::PendingValidation,
            validation_error: None,
            validated_at: None,
            details: serde_json::Value::Null,
            created_by: None,
            created_at: time::OffsetDateTime::now_utc(),
            updated_at: time::OffsetDateTime::now_utc(),
            credentials_key: key.clone(),
        };
        let t = Instant::now();
        let plain = connections.load_credentials(&connection).await.unwrap();
        load.push(t.elapsed());
        assert_eq!(plain.len(), secret.len());
        blobs.delete(&key).await.unwrap();
    }
    report("encrypt + store", store);
    report("load + decrypt", load);
    let _ = std::fs::remove_dir_all(dir);
}
