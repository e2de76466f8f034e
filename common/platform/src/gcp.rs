//! Google access tokens, for Bridge's own identity (Cloud KMS) and for customers'
//! service-account keys (BigQuery).
//!
//! The exchanges are Bridge's own, a few lines each, rather than an OAuth library's, so
//! that nothing logs an assertion or a token at any level (the library Bridge used before
//! logged both at debug): a service-account key signs an RS256 JWT assertion that is traded
//! for a token at the token endpoint (RFC 7523, Google's `jwt-bearer` grant); an
//! authorized-user file trades its refresh token; on Cloud Run and GCE the metadata server
//! hands one out. Tokens are cached until five minutes before they expire, one refresh at a
//! time. A token endpoint that answers 4xx rejected the credentials; one that cannot be
//! reached, or answers 5xx, is unavailable: the two are told apart.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use aws_lc_rs::{rand::SystemRandom, signature::RsaKeyPair};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rustls_pki_types::{PrivateKeyDer, pem::PemObject};
use serde::Deserialize;
use tokio::sync::Mutex;

pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
pub const BIGQUERY_SCOPE: &str = "https://www.googleapis.com/auth/bigquery";

/// The metadata server's token endpoint (`GCE_METADATA_HOST` overrides the host).
const METADATA_TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";
/// A token is renewed this long before it expires.
const RENEW_BEFORE: Duration = Duration::from_secs(300);
/// The lifetime asked for a signed assertion (Google's maximum).
const ASSERTION_LIFETIME: u64 = 3600;

/// The fields of a service-account key file Bridge reads.
#[derive(Clone, Deserialize)]
pub struct ServiceAccountKey {
    pub client_email: String,
    pub private_key: String,
    #[serde(default)]
    pub private_key_id: Option<String>,
    #[serde(default)]
    pub project_id: Option<String>,
    #[serde(default)]
    pub token_uri: Option<String>,
}

impl std::fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .finish_non_exhaustive()
    }
}

impl Drop for ServiceAccountKey {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.private_key.zeroize();
    }
}

/// Why no token could be had.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The token endpoint refused the credentials (or they cannot be used at all).
    #[error("Google rejected the credentials: {0}")]
    Rejected(String),
    /// The token endpoint could not be reached, or failed.
    #[error("Google's token endpoint is unavailable: {0}")]
    Unavailable(String),
}

enum Flow {
    /// A fixed token: emulators and stubs, which check only that one is sent.
    Fixed(String),
    ServiceAccount {
        key: ServiceAccountKey,
        signing: RsaKeyPair,
        token_uri: String,
    },
    AuthorizedUser {
        client_id: String,
        client_secret: String,
        refresh_token: String,
        token_uri: String,
    },
    Metadata {
        base: String,
    },
}

struct Cached {
    token: String,
    renew_at: SystemTime,
}

struct Inner {
    flow: Flow,
    scopes: Vec<String>,
    http: reqwest::Client,
    cached: Mutex<Option<Cached>>,
}

/// A source of access tokens for a set of scopes. Cheap to clone.
#[derive(Clone)]
pub struct GoogleAuth(Arc<Inner>);

impl std::fmt::Debug for GoogleAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoogleAuth")
            .field("scopes", &self.0.scopes)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct TokenRefusal {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .connect_timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl GoogleAuth {
    fn new(flow: Flow, scopes: &[&str]) -> Self {
        Self(Arc::new(Inner {
            flow,
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            http: http(),
            cached: Mutex::new(None),
        }))
    }

    pub fn fixed(token: impl Into<String>) -> Self {
        Self::new(Flow::Fixed(token.into()), &[])
    }

    /// A service-account key's JWT-bearer flow, always against `token_uri` (never the key's
    /// own, which a stored key could aim anywhere).
    pub fn service_account(
        key: ServiceAccountKey,
        token_uri: &str,
        scopes: &[&str],
    ) -> Result<Self, AuthError> {
        let not_rsa =
            || AuthError::Rejected("the key's private_key is not an RSA private key in PEM".into());
        let signing = match PrivateKeyDer::from_pem_slice(key.private_key.as_bytes()) {
            Ok(PrivateKeyDer::Pkcs8(der)) => RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()),
            Ok(PrivateKeyDer::Pkcs1(der)) => RsaKeyPair::from_der(der.secret_pkcs1_der()),
            _ => return Err(not_rsa()),
        }
        .map_err(|_| not_rsa())?;
        Ok(Self::new(
            Flow::ServiceAccount {
                key,
                signing,
                token_uri: token_uri.to_owned(),
            },
            scopes,
        ))
    }

    /// Bridge's own identity: `GOOGLE_APPLICATION_CREDENTIALS` (a service-account key or an
    /// authorized-user file), else the metadata server (Cloud Run, GCE).
    pub async fn application_default(scopes: &[&str]) -> anyhow::Result<Self> {
        if let Some(path) = std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS") {
            let text = tokio::fs::read(&path).await.map_err(|e| {
                anyhow::anyhow!(
                    "GOOGLE_APPLICATION_CREDENTIALS ({}) cannot be read: {e}",
                    std::path::Path::new(&path).display()
                )
            })?;
            let value: serde_json::Value = serde_json::from_slice(&text)
                .map_err(|_| anyhow::anyhow!("GOOGLE_APPLICATION_CREDENTIALS is not JSON"))?;
            let field = |k: &str| value[k].as_str().map(str::to_owned);
            let default_uri = "https://oauth2.googleapis.com/token".to_owned();
            return match value["type"].as_str() {
                Some("authorized_user") => Ok(Self::new(
                    Flow::AuthorizedUser {
                        client_id: field("client_id").unwrap_or_default(),
                        client_secret: field("client_secret").unwrap_or_default(),
                        refresh_token: field("refresh_token").unwrap_or_default(),
                        token_uri: field("token_uri").unwrap_or(default_uri),
                    },
                    scopes,
                )),
                _ => {
                    let key: ServiceAccountKey = serde_json::from_value(value).map_err(|_| {
                        anyhow::anyhow!(
                            "GOOGLE_APPLICATION_CREDENTIALS is neither a service-account key nor an authorized-user file"
                        )
                    })?;
                    let uri = key.token_uri.clone().unwrap_or(default_uri);
                    Ok(Self::service_account(key, &uri, scopes)?)
                }
            };
        }
        let host = std::env::var("GCE_METADATA_HOST")
            .unwrap_or_else(|_| "metadata.google.internal".to_owned());
        Ok(Self::new(
            Flow::Metadata {
                base: format!("http://{host}"),
            },
            scopes,
        ))
    }

    /// A valid access token: the cached one, or a fresh one.
    pub async fn token(&self) -> Result<String, AuthError> {
        if let Flow::Fixed(t) = &self.0.flow {
            return Ok(t.clone());
        }
        let mut cached = self.0.cached.lock().await;
        if let Some(c) = cached.as_ref()
            && SystemTime::now() < c.renew_at
        {
            return Ok(c.token.clone());
        }
        let answer = self.fetch().await?;
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(3600));
        let renew_at = SystemTime::now() + lifetime.saturating_sub(RENEW_BEFORE);
        *cached = Some(Cached {
            token: answer.access_token.clone(),
            renew_at,
        });
        Ok(answer.access_token)
    }

    async fn fetch(&self) -> Result<TokenAnswer, AuthError> {
        let http = &self.0.http;
        let request = match &self.0.flow {
            Flow::Fixed(_) => unreachable!("answered without a fetch"),
            Flow::ServiceAccount {
                key,
                signing,
                token_uri,
            } => {
                let now = now_secs();
                let claims = serde_json::json!({
                    "iss": key.client_email,
                    "scope": self.0.scopes.join(" "),
                    "aud": token_uri,
                    "iat": now,
                    "exp": now + ASSERTION_LIFETIME,
                });
                let assertion = sign_rs256(signing, key.private_key_id.as_deref(), &claims)?;
                http.post(token_uri).form(&[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                    ("assertion", assertion.as_str()),
                ])
            }
            Flow::AuthorizedUser {
                client_id,
                client_secret,
                refresh_token,
                token_uri,
            } => http.post(token_uri).form(&[
                ("grant_type", "refresh_token"),
                ("client_id", client_id.as_str()),
                ("client_secret", client_secret.as_str()),
                ("refresh_token", refresh_token.as_str()),
            ]),
            Flow::Metadata { base } => http
                .get(format!("{base}{METADATA_TOKEN_PATH}"))
                .query(&[("scopes", self.0.scopes.join(","))])
                .header("Metadata-Flavor", "Google"),
        };
        let response = request
            .send()
            .await
            .map_err(|e| AuthError::Unavailable(crate::warehouse::short(e.without_url())))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| AuthError::Unavailable(crate::warehouse::short(e.without_url())))?;
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|_| {
                AuthError::Unavailable(
                    "the token endpoint answered something that is not a token".into(),
                )
            });
        }
        // Only the endpoint's own error code and description, never the body whole.
        let refusal: TokenRefusal = serde_json::from_slice(&body).unwrap_or(TokenRefusal {
            error: None,
            error_description: None,
        });
        let why = match (refusal.error, refusal.error_description) {
            (Some(e), Some(d)) => format!("{e}: {}", crate::warehouse::short(d)),
            (Some(e), None) => e,
            _ => format!("HTTP {}", status.as_u16()),
        };
        if status.is_client_error() {
            Err(AuthError::Rejected(why))
        } else {
            Err(AuthError::Unavailable(why))
        }
    }
}

/// A compact RS256 JWS of `claims` (RFC 7515), signed with `key`.
fn sign_rs256(
    key: &RsaKeyPair,
    kid: Option<&str>,
    claims: &serde_json::Value,
) -> Result<String, AuthError> {
    let header = match kid {
        Some(kid) => serde_json::json!({ "alg": "RS256", "typ": "JWT", "kid": kid }),
        None => serde_json::json!({ "alg": "RS256", "typ": "JWT" }),
    };
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut signature = vec![0u8; key.public_modulus_len()];
    key.sign(
        &aws_lc_rs::signature::RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        signing_input.as_bytes(),
        &mut signature,
    )
    .map_err(|_| AuthError::Rejected("the key cannot sign".into()))?;
    Ok(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature)
    ))
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};

    use super::*;

    #[test]
    fn assertions_are_rs256_jws_that_verify_with_the_public_key() {
        let key = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("a key");
        let claims = serde_json::json!({ "iss": "sa@p.iam.gserviceaccount.com", "aud": "x" });
        let jws = sign_rs256(&key, Some("kid-1"), &claims).expect("signed");
        let parts: Vec<&str> = jws.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).expect("b64")).expect("json");
        assert_eq!(
            header,
            serde_json::json!({ "alg": "RS256", "typ": "JWT", "kid": "kid-1" })
        );
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).expect("b64");
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, key.public_key().as_ref())
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
            .expect("the signature verifies");
    }
}
