//! Envelope encryption of secrets (warehouse credentials).
//!
//! Each secret gets a fresh 256-bit data key and is sealed with AES-256-GCM; the data key is
//! wrapped by the key ring (a local key file, AWS KMS or Google Cloud KMS). The team id and
//! the object id are bound as associated data both to the ciphertext and to the wrapping, so
//! a blob copied onto another connection, or altered by one bit, does not decrypt. What is
//! stored is only the [`Envelope`]: ciphertext, nonce and wrapped key.

use std::{collections::HashMap, path::Path, sync::Arc};

use anyhow::Context;
use async_trait::async_trait;
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::{Engine, engine::general_purpose::STANDARD};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use zeroize::Zeroizing;

use base::crypto::random_bytes;

use crate::gcp::GoogleAuth;

use settings::KeyRingSettings;

/// What a secret is bound to.
#[derive(Debug, Clone, Copy)]
pub struct Binding {
    pub purpose: &'static str,
    pub team_id: Uuid,
    pub object_id: Uuid,
}

impl Binding {
    pub fn credential(team_id: Uuid, connection_id: Uuid) -> Self {
        Self {
            purpose: "warehouse-credential",
            team_id,
            object_id: connection_id,
        }
    }

    fn aad(&self) -> Vec<u8> {
        format!(
            "bridge/{}/v1;team={};object={}",
            self.purpose, self.team_id, self.object_id
        )
        .into_bytes()
    }

    fn context(&self) -> HashMap<String, String> {
        HashMap::from([
            ("bridge:purpose".to_owned(), self.purpose.to_owned()),
            ("bridge:team".to_owned(), self.team_id.to_string()),
            ("bridge:object".to_owned(), self.object_id.to_string()),
        ])
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    /// Wrong binding, tampered bytes, or another key: never more detail than this.
    #[error("the secret cannot be decrypted (tampered, or bound to another object)")]
    Undecryptable,
    #[error("the key ring is unavailable")]
    Unavailable(#[source] anyhow::Error),
}

pub struct DataKey {
    pub plaintext: Zeroizing<[u8; 32]>,
    pub wrapped: Vec<u8>,
}

/// Wraps and unwraps data keys.
#[async_trait]
pub trait KeyRing: Send + Sync {
    /// Names the wrapping key (kept in each envelope, for rotation and diagnosis).
    fn key_id(&self) -> &str;
    async fn new_data_key(&self, binding: &Binding) -> Result<DataKey, KeyRingError>;
    async fn unwrap(
        &self,
        wrapped: &[u8],
        binding: &Binding,
    ) -> Result<Zeroizing<[u8; 32]>, KeyRingError>;
}

mod b64 {
    use super::*;
    pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD.decode(s).map_err(serde::de::Error::custom)
    }
}

/// A sealed secret, as stored in object storage (JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    pub v: u8,
    pub alg: String,
    pub key_id: String,
    #[serde(with = "b64")]
    pub wrapped_key: Vec<u8>,
    #[serde(with = "b64")]
    pub nonce: Vec<u8>,
    #[serde(with = "b64")]
    pub ciphertext: Vec<u8>,
}

fn aes(key: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("a 32-byte AES-256 key"))
}

fn aes_seal(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let nonce = random_bytes::<NONCE_LEN>();
    let mut buf = plaintext.to_vec();
    aes(key)
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut buf,
        )
        .expect("AES-GCM sealing cannot fail for in-memory buffers");
    (nonce.to_vec(), buf)
}

fn aes_open(
    key: &[u8; 32],
    aad: &[u8],
    nonce: &[u8],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, KeyRingError> {
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| KeyRingError::Undecryptable)?;
    let mut buf = Zeroizing::new(ciphertext.to_vec());
    let len = aes(key)
        .open_in_place(nonce, Aad::from(aad), &mut buf)
        .map_err(|_| KeyRingError::Undecryptable)?
        .len();
    buf.truncate(len);
    Ok(buf)
}

/// Seals `plaintext` under a fresh data key bound to `binding`.
#[tracing::instrument(name = "kms.seal", skip_all)]
pub async fn seal(
    ring: &dyn KeyRing,
    binding: &Binding,
    plaintext: &[u8],
) -> Result<Envelope, KeyRingError> {
    let key = ring.new_data_key(binding).await?;
    let (nonce, ciphertext) = aes_seal(&key.plaintext, &binding.aad(), plaintext);
    Ok(Envelope {
        v: 1,
        alg: "AES-256-GCM".into(),
        key_id: ring.key_id().to_owned(),
        wrapped_key: key.wrapped,
        nonce,
        ciphertext,
    })
}

/// Opens an envelope sealed for `binding`.
#[tracing::instrument(name = "kms.open", skip_all)]
pub async fn open(
    ring: &dyn KeyRing,
    binding: &Binding,
    envelope: &Envelope,
) -> Result<Zeroizing<Vec<u8>>, KeyRingError> {
    if envelope.v != 1 || envelope.alg != "AES-256-GCM" {
        return Err(KeyRingError::Undecryptable);
    }
    let key = ring.unwrap(&envelope.wrapped_key, binding).await?;
    aes_open(&key, &binding.aad(), &envelope.nonce, &envelope.ciphertext)
}

// ------------------------------------------------------------------ local key file

/// A key-encryption key in a 0600 file: the development default.
pub struct LocalKeyRing {
    kek: Zeroizing<[u8; 32]>,
    id: String,
}

impl LocalKeyRing {
    /// Loads the key file, creating it (0600) on first use.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let kek: [u8; 32] = match std::fs::read(path) {
            Ok(bytes) => bytes
                .try_into()
                .map_err(|_| anyhow::anyhow!("{} is not a 32-byte key file", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let kek = random_bytes::<32>();
                base::fsutil::write_private(path, &kek)
                    .with_context(|| format!("writing {}", path.display()))?;
                kek
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!("reading {}", path.display())));
            }
        };
        let id = format!(
            "local:{}",
            base::crypto::hex(&base::crypto::sha256(&kek)[..6])
        );
        Ok(Self {
            kek: Zeroizing::new(kek),
            id,
        })
    }
}

#[async_trait]
impl KeyRing for LocalKeyRing {
    fn key_id(&self) -> &str {
        &self.id
    }

    async fn new_data_key(&self, binding: &Binding) -> Result<DataKey, KeyRingError> {
        let plaintext = Zeroizing::new(random_bytes::<32>());
        let (nonce, mut ct) = aes_seal(&self.kek, &binding.aad(), plaintext.as_ref());
        let mut wrapped = nonce;
        wrapped.append(&mut ct);
        Ok(DataKey { plaintext, wrapped })
    }

    async fn unwrap(
        &self,
        wrapped: &[u8],
        binding: &Binding,
    ) -> Result<Zeroizing<[u8; 32]>, KeyRingError> {
        if wrapped.len() < NONCE_LEN {
            return Err(KeyRingError::Undecryptable);
        }
        let (nonce, ct) = wrapped.split_at(NONCE_LEN);
        let key = aes_open(&self.kek, &binding.aad(), nonce, ct)?;
        to_key(&key)
    }
}

fn to_key(bytes: &[u8]) -> Result<Zeroizing<[u8; 32]>, KeyRingError> {
    let arr: [u8; 32] = bytes.try_into().map_err(|_| KeyRingError::Undecryptable)?;
    Ok(Zeroizing::new(arr))
}

// ------------------------------------------------------------------ AWS KMS

/// AWS KMS: `GenerateDataKey` and `Decrypt`, with the binding as encryption context.
pub struct AwsKmsKeyRing {
    client: aws_sdk_kms::Client,
    key: String,
}

impl AwsKmsKeyRing {
    pub fn new(client: aws_sdk_kms::Client, key: String) -> Self {
        Self { client, key }
    }

    /// A client from the standard AWS environment (region, credentials, `AWS_ENDPOINT_URL_KMS`).
    pub async fn from_env(key: String) -> Self {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Self::new(aws_sdk_kms::Client::new(&config), key)
    }
}

fn kms_error<E: std::error::Error + Send + Sync + 'static>(
    e: aws_sdk_kms::error::SdkError<E>,
) -> KeyRingError {
    use aws_sdk_kms::error::SdkError;
    match &e {
        SdkError::ServiceError(se) if se.raw().status().as_u16() == 400 => {
            // InvalidCiphertextException, IncorrectKeyException and the like.
            KeyRingError::Undecryptable
        }
        _ => KeyRingError::Unavailable(anyhow::Error::new(e).context("AWS KMS")),
    }
}

#[async_trait]
impl KeyRing for AwsKmsKeyRing {
    fn key_id(&self) -> &str {
        &self.key
    }

    async fn new_data_key(&self, binding: &Binding) -> Result<DataKey, KeyRingError> {
        let out = self
            .client
            .generate_data_key()
            .key_id(&self.key)
            .key_spec(aws_sdk_kms::types::DataKeySpec::Aes256)
            .set_encryption_context(Some(binding.context()))
            .send()
            .await
            .map_err(|e| match kms_error(e) {
                // A 400 here is a misconfigured key, not a bad ciphertext.
                KeyRingError::Undecryptable => {
                    KeyRingError::Unavailable(anyhow::anyhow!("AWS KMS refused GenerateDataKey"))
                }
                other => other,
            })?;
        let plaintext = out.plaintext.ok_or_else(|| {
            KeyRingError::Unavailable(anyhow::anyhow!("KMS returned no plaintext"))
        })?;
        let wrapped = out.ciphertext_blob.ok_or_else(|| {
            KeyRingError::Unavailable(anyhow::anyhow!("KMS returned no ciphertext"))
        })?;
        Ok(DataKey {
            plaintext: to_key(plaintext.as_ref())?,
            wrapped: wrapped.into_inner(),
        })
    }

    async fn unwrap(
        &self,
        wrapped: &[u8],
        binding: &Binding,
    ) -> Result<Zeroizing<[u8; 32]>, KeyRingError> {
        let out = self
            .client
            .decrypt()
            .key_id(&self.key)
            .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(wrapped))
            .set_encryption_context(Some(binding.context()))
            .send()
            .await
            .map_err(kms_error)?;
        let plaintext = out.plaintext.ok_or(KeyRingError::Undecryptable)?;
        to_key(plaintext.as_ref())
    }
}

// ------------------------------------------------------------------ Google Cloud KMS

/// Google Cloud KMS over its REST API: the data key is generated here and wrapped with
/// `cryptoKeys.encrypt`, the binding passed as additional authenticated data.
pub struct GcpKmsKeyRing {
    http: reqwest::Client,
    endpoint: String,
    key_name: String,
    auth: GoogleAuth,
}

impl GcpKmsKeyRing {
    pub fn new(endpoint: String, key_name: String, auth: GoogleAuth) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .context("building the Cloud KMS client")?;
        Ok(Self {
            http,
            endpoint,
            key_name,
            auth,
        })
    }

    async fn call(
        &self,
        verb: &str,
        body: serde_json::Value,
    ) -> Result<serde_json::Value, KeyRingError> {
        let token = self
            .auth
            .token()
            .await
            .map_err(|e| KeyRingError::Unavailable(anyhow::Error::new(e)))?;
        let url = format!("{}/v1/{}:{verb}", self.endpoint, self.key_name);
        let r = self
            .http
            .post(&url)
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .map_err(|e| {
                KeyRingError::Unavailable(
                    anyhow::Error::new(e).context(format!("Cloud KMS {verb}")),
                )
            })?;
        let status = r.status();
        if status == reqwest::StatusCode::BAD_REQUEST && verb == "decrypt" {
            return Err(KeyRingError::Undecryptable);
        }
        if !status.is_success() {
            return Err(KeyRingError::Unavailable(anyhow::anyhow!(
                "Cloud KMS {verb} answered {status}"
            )));
        }
        r.json().await.map_err(|e| {
            KeyRingError::Unavailable(anyhow::Error::new(e).context("reading Cloud KMS's answer"))
        })
    }
}

#[async_trait]
impl KeyRing for GcpKmsKeyRing {
    fn key_id(&self) -> &str {
        &self.key_name
    }

    async fn new_data_key(&self, binding: &Binding) -> Result<DataKey, KeyRingError> {
        let plaintext = Zeroizing::new(random_bytes::<32>());
        let out = self
            .call(
                "encrypt",
                serde_json::json!({
                    "plaintext": STANDARD.encode(plaintext.as_ref()),
                    "additionalAuthenticatedData": STANDARD.encode(binding.aad()),
                }),
            )
            .await?;
        let wrapped = out["ciphertext"]
            .as_str()
            .and_then(|c| STANDARD.decode(c).ok())
            .ok_or_else(|| {
                KeyRingError::Unavailable(anyhow::anyhow!("Cloud KMS returned no ciphertext"))
            })?;
        Ok(DataKey { plaintext, wrapped })
    }

    async fn unwrap(
        &self,
        wrapped: &[u8],
        binding: &Binding,
    ) -> Result<Zeroizing<[u8; 32]>, KeyRingError> {
        let out = self
            .call(
                "decrypt",
                serde_json::json!({
                    "ciphertext": STANDARD.encode(wrapped),
                    "additionalAuthenticatedData": STANDARD.encode(binding.aad()),
                }),
            )
            .await?;
        let plaintext = Zeroizing::new(
            out["plaintext"]
                .as_str()
                .and_then(|p| STANDARD.decode(p).ok())
                .ok_or(KeyRingError::Undecryptable)?,
        );
        to_key(&plaintext)
    }
}

/// The key ring the settings name.
pub async fn from_settings(settings: &KeyRingSettings) -> anyhow::Result<Arc<dyn KeyRing>> {
    Ok(match settings {
        KeyRingSettings::LocalFile(path) => Arc::new(LocalKeyRing::open(path)?),
        KeyRingSettings::AwsKms(key) => Arc::new(AwsKmsKeyRing::from_env(key.clone()).await),
        KeyRingSettings::GcpKms { key_name, endpoint } => {
            let auth = GoogleAuth::application_default(&[crate::gcp::CLOUD_PLATFORM_SCOPE]).await?;
            Arc::new(GcpKmsKeyRing::new(
                endpoint.clone(),
                key_name.clone(),
                auth,
            )?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> (LocalKeyRing, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!("bridge-kek-{}", Uuid::new_v4()));
        (LocalKeyRing::open(&path).expect("ring"), path)
    }

    #[tokio::test]
    async fn sealed_secrets_open_only_for_their_binding() {
        let (ring, path) = ring();
        let (team, conn) = (Uuid::new_v4(), Uuid::new_v4());
        let b = Binding::credential(team, conn);
        let env = seal(&ring, &b, b"{\"private_key\":\"s3cret\"}")
            .await
            .expect("seal");
        assert_eq!(
            &open(&ring, &b, &env).await.expect("open")[..],
            b"{\"private_key\":\"s3cret\"}"
        );
        let json = serde_json::to_string(&env).expect("json");
        assert!(!json.contains("s3cret"));

        let other_conn = Binding::credential(team, Uuid::new_v4());
        assert!(matches!(
            open(&ring, &other_conn, &env).await,
            Err(KeyRingError::Undecryptable)
        ));
        let other_team = Binding::credential(Uuid::new_v4(), conn);
        assert!(matches!(
            open(&ring, &other_team, &env).await,
            Err(KeyRingError::Undecryptable)
        ));
        for field in 0..3 {
            let mut bad = env.clone();
            let bytes = match field {
                0 => &mut bad.ciphertext,
                1 => &mut bad.wrapped_key,
                _ => &mut bad.nonce,
            };
            bytes[0] ^= 1;
            assert!(
                matches!(
                    open(&ring, &b, &bad).await,
                    Err(KeyRingError::Undecryptable)
                ),
                "field {field}"
            );
        }
        let _ = std::fs::remove_file(path);
    }

    #[tokio::test]
    async fn the_key_file_is_private_and_reused() {
        let (a, path) = ring();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777,
            0o600
        );
        let b = LocalKeyRing::open(&path).expect("reopen");
        assert_eq!(a.key_id(), b.key_id());
        let binding = Binding::credential(Uuid::new_v4(), Uuid::new_v4());
        let env = seal(&a, &binding, b"x").await.expect("seal");
        assert_eq!(&open(&b, &binding, &env).await.expect("open")[..], b"x");
        let _ = std::fs::remove_file(path);
    }

    #[tokio::test]
    async fn each_secret_gets_its_own_data_key() {
        let (ring, path) = ring();
        let b = Binding::credential(Uuid::new_v4(), Uuid::new_v4());
        let (x, y) = (
            seal(&ring, &b, b"same").await.expect("x"),
            seal(&ring, &b, b"same").await.expect("y"),
        );
        assert_ne!(x.wrapped_key, y.wrapped_key);
        assert_ne!(x.ciphertext, y.ciphertext);
        let _ = std::fs::remove_file(path);
    }
}
