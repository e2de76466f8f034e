//! A Cloud KMS stub following the documented REST methods
//! [`cryptoKeys.encrypt`](https://cloud.google.com/kms/docs/reference/rest/v1/projects.locations.keyRings.cryptoKeys/encrypt)
//! and
//! [`cryptoKeys.decrypt`](https://cloud.google.com/kms/docs/reference/rest/v1/projects.locations.keyRings.cryptoKeys/decrypt),
//! with Google's JSON error shape (<https://cloud.google.com/apis/design/errors>).
//!
//! Why it exists: there is no Cloud KMS emulator that runs offline, so Bridge's Cloud KMS
//! key ring is tested against this contract. The ciphertext is real AES-256-GCM under a key
//! the stub holds, with the additional authenticated data bound, so a wrong AAD or a
//! tampered ciphertext fails as it would on Cloud KMS.
//!
//! - `POST /v1/{name}:encrypt` `{"plaintext": b64, "additionalAuthenticatedData": b64?,
//!   "plaintextCrc32c"?, "additionalAuthenticatedDataCrc32c"?}` →
//!   `{"name": "{name}/cryptoKeyVersions/1", "ciphertext": b64, "ciphertextCrc32c", …}`
//! - `POST /v1/{name}:decrypt` `{"ciphertext": b64, "additionalAuthenticatedData": b64?}` →
//!   `{"plaintext": b64, "plaintextCrc32c", "usedPrimary": true, …}`
//! - wrong AAD or tampered ciphertext → 400 `INVALID_ARGUMENT` "Decryption failed: the
//!   ciphertext is invalid."; unknown key → 404 `NOT_FOUND`; no bearer token → 401
//!   `UNAUTHENTICATED` (any token is accepted).

#![allow(clippy::unwrap_used, clippy::result_large_err)] // test support: handlers answer early with a Response

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};
use base64::{Engine, engine::general_purpose::STANDARD as B64};
use serde_json::{Value, json};

/// A running Cloud KMS stub. Requests go to `{base_url}/v1/{key_name}:encrypt` (and
/// `:decrypt`); `base_url` stands in for `https://cloudkms.googleapis.com`.
#[derive(Clone)]
pub struct CloudKmsStub {
    pub base_url: String,
    pub key_name: String,
    state: Arc<Inner>,
}

struct Inner {
    keys: Mutex<HashMap<String, Arc<LessSafeKey>>>,
    calls: AtomicUsize,
}

/// Plaintext and AAD limits of Cloud KMS symmetric keys (64 KiB each).
const MAX_INPUT: usize = 64 * 1024;

fn new_key() -> Arc<LessSafeKey> {
    let mut raw = [0u8; 32];
    aws_lc_rs::rand::fill(&mut raw).unwrap();
    Arc::new(LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, &raw).unwrap(),
    ))
}

impl CloudKmsStub {
    /// Starts a stub holding one key,
    /// `projects/test-proj/locations/global/keyRings/bridge/cryptoKeys/credentials`.
    pub async fn start() -> CloudKmsStub {
        let key_name =
            "projects/test-proj/locations/global/keyRings/bridge/cryptoKeys/credentials".to_owned();
        let state = Arc::new(Inner {
            keys: Mutex::new(HashMap::from([(key_name.clone(), new_key())])),
            calls: AtomicUsize::new(0),
        });
        let router = Router::new()
            .route("/v1/{*call}", post(call))
            .with_state(state.clone());
        CloudKmsStub {
            base_url: super::serve(router).await,
            key_name,
            state,
        }
    }

    /// Adds another key (a fresh AES-256 key) under `name` (`projects/…/cryptoKeys/…`).
    pub fn add_key(&self, name: &str) {
        self.state
            .keys
            .lock()
            .unwrap()
            .insert(name.to_owned(), new_key());
    }

    /// How many API calls arrived (answered or refused).
    pub fn calls(&self) -> usize {
        self.state.calls.load(Ordering::SeqCst)
    }
}

fn google_error(code: u16, message: &str) -> Response {
    let status = StatusCode::from_u16(code).unwrap();
    let body =
        json!({"error": {"code": code, "message": message, "status": super::google_status(code)}});
    (status, Json(body)).into_response()
}

fn invalid(message: &str) -> Response {
    google_error(400, message)
}

fn decryption_failed() -> Response {
    invalid("Decryption failed: the ciphertext is invalid.")
}

/// A base64 field of the request: `Ok(None)` when absent, `Err` when not base64 or too long.
fn b64_field(body: &Value, field: &str) -> Result<Option<Vec<u8>>, Response> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            let bytes = B64.decode(s).map_err(|_| {
                invalid(&format!(
                    "Invalid value at '{field}' (TYPE_BYTES), Base64 decoding failed for \"{s}\""
                ))
            })?;
            if bytes.len() > MAX_INPUT {
                return Err(invalid(&format!(
                    "The field '{field}' must be at most {MAX_INPUT} bytes."
                )));
            }
            Ok(Some(bytes))
        }
        Some(other) => Err(invalid(&format!(
            "Invalid value at '{field}' (TYPE_BYTES), {other}"
        ))),
    }
}

/// An int64 CRC32C field (a JSON string or number), if present.
fn crc_field(body: &Value, field: &str) -> Option<u32> {
    match body.get(field)? {
        Value::String(s) => s.parse::<u64>().ok().map(|v| v as u32),
        Value::Number(n) => n.as_u64().map(|v| v as u32),
        _ => None,
    }
}

/// CRC32C (Castagnoli), as Cloud KMS uses it for its integrity fields.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Checks an optional request checksum; `Ok(true)` when one was given and matched.
fn verify_crc(body: &Value, field: &str, data: &[u8], data_field: &str) -> Result<bool, Response> {
    match crc_field(body, field) {
        None => Ok(false),
        Some(c) if c == crc32c(data) => Ok(true),
        Some(_) => Err(invalid(&format!(
            "The checksum in field {field} did not match the data in field {data_field}."
        ))),
    }
}

async fn call(
    State(state): State<Arc<Inner>>,
    Path(call): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.calls.fetch_add(1, Ordering::SeqCst);
    if super::bearer(&headers).is_none() {
        return google_error(
            401,
            "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
        );
    }
    let Some((name, method)) = call.rsplit_once(':') else {
        return google_error(404, &format!("Method not found: {call}"));
    };
    if method != "encrypt" && method != "decrypt" {
        return google_error(404, &format!("Method not found: {method}"));
    }
    let Some(key) = state.keys.lock().unwrap().get(name).cloned() else {
        return google_error(404, &format!("CryptoKey {name} not found."));
    };
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        _ => return invalid("Invalid JSON payload received."),
    };
    let result = match method {
        "encrypt" => encrypt(name, &key, &body),
        _ => decrypt(&key, &body),
    };
    result.unwrap_or_else(|e| e)
}

fn encrypt(name: &str, key: &LessSafeKey, body: &Value) -> Result<Response, Response> {
    let Some(plaintext) = b64_field(body, "plaintext")? else {
        return Err(invalid("plaintext is required."));
    };
    let aad = b64_field(body, "additionalAuthenticatedData")?.unwrap_or_default();
    let plain_ok = verify_crc(body, "plaintextCrc32c", &plaintext, "plaintext")?;
    let aad_ok = verify_crc(
        body,
        "additionalAuthenticatedDataCrc32c",
        &aad,
        "additional_authenticated_data",
    )?;
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce).unwrap();
    let mut sealed = plaintext;
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(&aad),
        &mut sealed,
    )
    .unwrap();
    let mut ciphertext = nonce.to_vec();
    ciphertext.extend_from_slice(&sealed);
    Ok(Json(json!({
        "name": format!("{name}/cryptoKeyVersions/1"),
        "ciphertext": B64.encode(&ciphertext),
        "ciphertextCrc32c": crc32c(&ciphertext).to_string(),
        "verifiedPlaintextCrc32c": plain_ok,
        "verifiedAdditionalAuthenticatedDataCrc32c": aad_ok,
        "protectionLevel": "SOFTWARE",
    }))
    .into_response())
}

fn decrypt(key: &LessSafeKey, body: &Value) -> Result<Response, Response> {
    let Some(ciphertext) = b64_field(body, "ciphertext")? else {
        return Err(invalid("ciphertext is required."));
    };
    let aad = b64_field(body, "additionalAuthenticatedData")?.unwrap_or_default();
    verify_crc(body, "ciphertextCrc32c", &ciphertext, "ciphertext")?;
    verify_crc(
        body,
        "additionalAuthenticatedDataCrc32c",
        &aad,
        "additional_authenticated_data",
    )?;
    if ciphertext.len() < NONCE_LEN + AES_256_GCM.tag_len() {
        return Err(decryption_failed());
    }
    let (nonce, sealed) = ciphertext.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| decryption_failed())?;
    let mut buf = sealed.to_vec();
    let plaintext = key
        .open_in_place(nonce, Aad::from(&aad), &mut buf)
        .map_err(|_| decryption_failed())?;
    Ok(Json(json!({
        "plaintext": B64.encode(&*plaintext),
        "plaintextCrc32c": crc32c(plaintext).to_string(),
        "usedPrimary": true,
        "protectionLevel": "SOFTWARE",
    }))
    .into_response())
}
