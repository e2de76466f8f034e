//! The blob store and key ring adapters against real implementations of their protocols:
//! moto (S3, AWS KMS), and — where no emulator speaks the protocol — stubs of the documented
//! REST shapes: Cloud Storage's XML API (object_store's GCS client speaks it; the available
//! gcp-storage-emulator implements only the JSON API: it answers PUT without an ETag, GET
//! without Last-Modified and DELETE with 501) and Cloud KMS (no emulator exists).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use bytes::Bytes;
use platform::{
    blob::BlobError, blob::BlobStore, blob::ObjectStoreBlobs, gcp::GoogleAuth, keyring,
    keyring::AwsKmsKeyRing, keyring::Binding, keyring::GcpKmsKeyRing, keyring::KeyRing,
    keyring::KeyRingError,
};
use testkit::{emulators, stubs::gcpkms::CloudKmsStub, stubs::gcs::GcsStub};
use uuid::Uuid;

fn opts(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// What every backend must do: create-if-absent, compare-and-swap, idempotent delete.
async fn conditional_writes(store: &dyn BlobStore) {
    let key = format!("teams/{}/connections/c/credentials.json", Uuid::new_v4());
    let v1 = store
        .create(&key, Bytes::from_static(b"one"))
        .await
        .unwrap();
    assert!(matches!(
        store.create(&key, Bytes::from_static(b"x")).await,
        Err(BlobError::AlreadyExists(_))
    ));
    let read = store.get(&key).await.unwrap();
    assert_eq!(&read.bytes[..], b"one");
    let v2 = store
        .replace(&key, Bytes::from_static(b"two"), &read.version)
        .await
        .unwrap();
    assert_ne!(v1, v2);
    let stale = store.replace(&key, Bytes::from_static(b"three"), &v1).await;
    assert!(matches!(stale, Err(BlobError::Conflict(_))), "{stale:?}");
    assert_eq!(&store.get(&key).await.unwrap().bytes[..], b"two");
    store.put(&key, Bytes::from_static(b"four")).await.unwrap();
    store.delete(&key).await.unwrap();
    store.delete(&key).await.unwrap();
    assert!(matches!(store.get(&key).await, Err(BlobError::NotFound(_))));
}

#[tokio::test]
async fn s3_buckets_on_moto_support_create_and_compare_and_swap() {
    let Some(moto) = emulators::moto().await else {
        return;
    };
    let bucket = moto.fresh_bucket().await;
    let store = ObjectStoreBlobs::open(
        &format!("s3://{bucket}/bridge/credentials"),
        &opts(&[
            ("aws_endpoint", &moto.endpoint),
            ("aws_allow_http", "true"),
            ("aws_access_key_id", "testing"),
            ("aws_secret_access_key", "testing"),
            ("aws_region", "us-east-1"),
            ("aws_virtual_hosted_style_request", "false"),
        ]),
    )
    .unwrap();
    conditional_writes(&store).await;
}

#[tokio::test]
async fn gcs_buckets_honour_generation_preconditions() {
    let stub = GcsStub::start("bridge-creds").await;
    let store = ObjectStoreBlobs::open(
        "gs://bridge-creds/prefix",
        &opts(&[
            ("google_base_url", &stub.base_url),
            ("google_bearer_token", "t"),
            ("allow_http", "true"),
        ]),
    )
    .unwrap();
    conditional_writes(&store).await;
    store
        .put("a/b.json", Bytes::from_static(b"{}"))
        .await
        .unwrap();
    assert!(
        stub.objects().contains_key("prefix/a/b.json"),
        "keys live under the URL's prefix"
    );
}

/// Seal and open through a key ring; a wrong binding and a tampered wrapped key both fail
/// as `Undecryptable`.
async fn envelope_round_trip(ring: &dyn KeyRing) {
    let binding = Binding::credential(Uuid::new_v4(), Uuid::new_v4());
    let sealed = keyring::seal(ring, &binding, b"postgres://u:secret@h/db")
        .await
        .unwrap();
    assert_eq!(
        &keyring::open(ring, &binding, &sealed).await.unwrap()[..],
        b"postgres://u:secret@h/db"
    );

    let swapped = Binding::credential(binding.team_id, Uuid::new_v4());
    assert!(matches!(
        keyring::open(ring, &swapped, &sealed).await,
        Err(KeyRingError::Undecryptable)
    ));
    let mut tampered = sealed.clone();
    let last = tampered.wrapped_key.len() - 1;
    tampered.wrapped_key[last] ^= 1;
    assert!(matches!(
        keyring::open(ring, &binding, &tampered).await,
        Err(KeyRingError::Undecryptable)
    ));
    let mut tampered = sealed.clone();
    tampered.ciphertext[0] ^= 1;
    assert!(matches!(
        keyring::open(ring, &binding, &tampered).await,
        Err(KeyRingError::Undecryptable)
    ));
}

#[tokio::test]
async fn aws_kms_on_moto_wraps_data_keys_bound_to_the_connection() {
    let Some(moto) = emulators::moto().await else {
        return;
    };
    let arn = moto.create_kms_key().await;
    let ring = AwsKmsKeyRing::new(moto.kms_client(), arn.clone());
    assert_eq!(ring.key_id(), arn);
    envelope_round_trip(&ring).await;
}

#[tokio::test]
async fn cloud_kms_wraps_data_keys_bound_to_the_connection() {
    let stub = CloudKmsStub::start().await;
    let ring = GcpKmsKeyRing::new(
        stub.base_url.clone(),
        stub.key_name.clone(),
        GoogleAuth::fixed("t"),
    )
    .unwrap();
    envelope_round_trip(&ring).await;
    assert!(stub.calls() >= 4);
}

#[tokio::test]
async fn an_unknown_or_unreachable_kms_key_is_an_outage_not_a_bad_secret() {
    let stub = CloudKmsStub::start().await;
    let wrong = GcpKmsKeyRing::new(
        stub.base_url.clone(),
        "projects/p/locations/l/keyRings/r/cryptoKeys/missing".into(),
        GoogleAuth::fixed("t"),
    )
    .unwrap();
    let binding = Binding::credential(Uuid::new_v4(), Uuid::new_v4());
    assert!(matches!(
        wrong.new_data_key(&binding).await,
        Err(KeyRingError::Unavailable(_))
    ));
    let away = GcpKmsKeyRing::new(
        "http://127.0.0.1:9".into(),
        stub.key_name.clone(),
        GoogleAuth::fixed("t"),
    )
    .unwrap();
    assert!(matches!(
        away.new_data_key(&binding).await,
        Err(KeyRingError::Unavailable(_))
    ));
}

#[tokio::test]
async fn envelopes_from_one_key_ring_do_not_open_with_another() {
    let a = CloudKmsStub::start().await;
    let b = CloudKmsStub::start().await;
    let ring_a: Arc<dyn KeyRing> = Arc::new(
        GcpKmsKeyRing::new(
            a.base_url.clone(),
            a.key_name.clone(),
            GoogleAuth::fixed("t"),
        )
        .unwrap(),
    );
    let ring_b = GcpKmsKeyRing::new(
        b.base_url.clone(),
        b.key_name.clone(),
        GoogleAuth::fixed("t"),
    )
    .unwrap();
    let binding = Binding::credential(Uuid::new_v4(), Uuid::new_v4());
    let sealed = keyring::seal(&*ring_a, &binding, b"x").await.unwrap();
    assert!(matches!(
        keyring::open(&ring_b, &binding, &sealed).await,
        Err(KeyRingError::Undecryptable)
    ));
}
