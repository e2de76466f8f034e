//! Bearer-token authentication.
//!
//! `AUTH_MODE=oidc` verifies RS256/ES256 tokens against the issuer's JWKS, cached and
//! refreshed when a token names a key id we have not seen (at most once per
//! `AUTH_JWKS_MIN_REFRESH_SECS`, so forged key ids cannot make us hammer the issuer). `AUTH_MODE=dev`
//! verifies HS256 tokens signed with `BRIDGE_DEV_JWT_SECRET`. Both check issuer, audience
//! and expiry. The user behind a token is upserted on first sight and then cached.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use anyhow::Context;
use axum::{
    extract::{FromRef, FromRequestParts},
    http::request::Parts,
};
use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, decode_header, encode,
    jwk::{Jwk, KeyAlgorithm},
};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use storage::db::unique_violation;

use base::domain::Email;

use crate::{error::ApiError, error::ApiResult};

use settings::AuthSettings;

/// How long a fetched JWKS is trusted before it is fetched again.
pub const JWKS_MAX_AGE: Duration = Duration::from_secs(3600);
pub use settings::{DEFAULT_LEEWAY_SECS, MAX_LEEWAY_SECS};

/// The claims Bridge reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub iss: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    pub aud: serde_json::Value,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
}

/// The caller of a request, resolved from the token to a row of `users`.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub id: Uuid,
    pub email: Option<Email>,
}

// One per process: the size of its variants does not matter.
#[allow(clippy::large_enum_variant)]
enum Verifier {
    Dev {
        key: DecodingKey,
        validation: Validation,
    },
    Oidc(Box<OidcVerifier>),
}

/// Verifies RS256/ES256 tokens of one issuer for one audience against its JWKS.
pub struct OidcVerifier {
    jwks: Jwks,
    validation_rs: Validation,
    validation_es: Validation,
}

impl OidcVerifier {
    pub fn new(
        issuer: &str,
        audience: &str,
        jwks_url: Option<String>,
        min_refresh: Duration,
        leeway: Duration,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            jwks: Jwks::new(issuer.to_owned(), jwks_url, min_refresh)?,
            validation_rs: validation(Algorithm::RS256, issuer, audience, leeway),
            validation_es: validation(Algorithm::ES256, issuer, audience, leeway),
        })
    }

    /// Checks signature, issuer, audience, expiry and not-before.
    pub async fn verify(&self, token: &str) -> ApiResult<Claims> {
        let header = decode_header(token).map_err(|_| {
            ApiError::unauthorized("invalid_token", "the bearer token is not a JWT")
        })?;
        let validation = match header.alg {
            Algorithm::RS256 => &self.validation_rs,
            Algorithm::ES256 => &self.validation_es,
            _ => {
                return Err(ApiError::unauthorized(
                    "invalid_token",
                    "the token's algorithm is not accepted",
                ));
            }
        };
        let key = self.jwks.key(header.kid.as_deref(), header.alg).await?;
        decode::<Claims>(token, &key, validation)
            .map(|d| d.claims)
            .map_err(token_error)
    }
}

fn token_error(e: jsonwebtoken::errors::Error) -> ApiError {
    use jsonwebtoken::errors::ErrorKind;
    let invalid = |detail: &'static str| ApiError::unauthorized("invalid_token", detail);
    match e.kind() {
        ErrorKind::ExpiredSignature => invalid("the token has expired"),
        ErrorKind::InvalidIssuer => invalid("the token's issuer is not accepted"),
        ErrorKind::InvalidAudience => invalid("the token's audience is not accepted"),
        ErrorKind::ImmatureSignature => invalid("the token is not valid yet"),
        ErrorKind::MissingRequiredClaim(_) => invalid("the token lacks a required claim"),
        _ => invalid("the token's signature or claims are invalid"),
    }
}

pub struct Authenticator {
    verifier: Verifier,
    /// (issuer, subject) → user, so the upsert runs once per user per few minutes.
    users: moka::future::Cache<(String, String), CurrentUser>,
}

/// What every token must satisfy: the algorithm, issuer and audience, a subject, an expiry
/// in the future and, when it has one, a not-before in the past, each within `leeway`.
fn validation(alg: Algorithm, issuer: &str, audience: &str, leeway: Duration) -> Validation {
    let mut v = Validation::new(alg);
    v.set_issuer(&[issuer]);
    v.set_audience(&[audience]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    v.validate_exp = true;
    v.validate_nbf = true;
    v.leeway = leeway.as_secs();
    v
}

impl Authenticator {
    pub fn new(settings: &AuthSettings, leeway: Duration) -> anyhow::Result<Self> {
        let verifier = match settings {
            AuthSettings::Dev { secret, .. } => Verifier::Dev {
                key: DecodingKey::from_secret(secret.expose_secret().as_bytes()),
                validation: validation(
                    Algorithm::HS256,
                    settings.issuer(),
                    settings.audience(),
                    leeway,
                ),
            },
            AuthSettings::Oidc {
                issuer,
                jwks_url,
                jwks_min_refresh,
                ..
            } => Verifier::Oidc(Box::new(OidcVerifier::new(
                issuer,
                settings.audience(),
                jwks_url.clone(),
                *jwks_min_refresh,
                leeway,
            )?)),
        };
        Ok(Self {
            verifier,
            users: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(300))
                .build(),
        })
    }

    /// Checks signature, issuer, audience and expiry.
    pub async fn verify(&self, token: &str) -> ApiResult<Claims> {
        match &self.verifier {
            Verifier::Dev { key, validation } => {
                let header = decode_header(token).map_err(|_| {
                    ApiError::unauthorized("invalid_token", "the bearer token is not a JWT")
                })?;
                if header.alg != Algorithm::HS256 {
                    return Err(ApiError::unauthorized(
                        "invalid_token",
                        "the token's algorithm is not accepted",
                    ));
                }
                decode::<Claims>(token, key, validation)
                    .map(|d| d.claims)
                    .map_err(token_error)
            }
            Verifier::Oidc(oidc) => oidc.verify(token).await,
        }
    }

    /// The user row behind verified claims, created on first sight.
    pub async fn resolve(
        &self,
        db: &deadpool_postgres::Pool,
        claims: Claims,
    ) -> ApiResult<CurrentUser> {
        let Claims {
            iss,
            sub,
            email,
            email_verified,
            ..
        } = claims;
        let key = (iss, sub);
        // Seen lately: nothing more to check or allocate.
        if let Some(user) = self.users.get(&key).await {
            return Ok(user);
        }
        let email = email.as_deref().and_then(|e| Email::parse(e).ok());
        // Dev tokens are minted by whoever runs Bridge; OIDC emails count only if verified.
        let verified = match self.verifier {
            Verifier::Dev { .. } => true,
            Verifier::Oidc(_) => email_verified == Some(true),
        };
        let (iss, sub) = &key;
        self.users
            .try_get_with_by_ref(&key, async {
                let id = upsert_user(db, iss, sub, email.as_ref(), verified).await?;
                Ok::<_, ApiError>(CurrentUser {
                    id,
                    email: email.clone(),
                })
            })
            .await
            .map_err(|e: Arc<ApiError>| {
                Arc::try_unwrap(e)
                    .unwrap_or_else(|e| ApiError::new(e.status, e.code, e.detail.clone()))
            })
    }
}

/// First sight of a user: update, or claim an invitation made to their (verified) email,
/// or insert. Safe under concurrent first requests of the same user.
async fn upsert_user(
    db: &deadpool_postgres::Pool,
    issuer: &str,
    subject: &str,
    email: Option<&Email>,
    email_verified: bool,
) -> ApiResult<Uuid> {
    let client = db.get().await?;
    let email = email.map(Email::as_str);
    for _ in 0..3 {
        let seen = client
            .prepare_cached(
                "UPDATE users SET email = COALESCE($3, email), last_seen_at = now() \
                 WHERE issuer = $1 AND subject = $2 RETURNING id",
            )
            .await?;
        if let Some(row) = client
            .query_opt(&seen, &[&issuer, &subject, &email])
            .await?
        {
            return Ok(row.get(0));
        }
        if let (Some(email), true) = (email, email_verified) {
            let claim = client
                .prepare_cached(
                    "UPDATE users SET issuer = $1, subject = $2, last_seen_at = now() \
                     WHERE subject IS NULL AND email = $3 RETURNING id",
                )
                .await?;
            match client.query_opt(&claim, &[&issuer, &subject, &email]).await {
                Ok(Some(row)) => return Ok(row.get(0)),
                Ok(None) => {}
                Err(e) if unique_violation(&e).is_some() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        let insert = client
            .prepare_cached(
                "INSERT INTO users (id, issuer, subject, email, last_seen_at) \
                 VALUES ($1, $2, $3, $4, now()) \
                 ON CONFLICT (issuer, subject) DO UPDATE SET last_seen_at = now() RETURNING id",
            )
            .await?;
        match client
            .query_one(&insert, &[&Uuid::now_v7(), &issuer, &subject, &email])
            .await
        {
            Ok(row) => return Ok(row.get(0)),
            Err(e) if unique_violation(&e).is_some() => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::internal(anyhow::anyhow!(
        "user upsert kept conflicting"
    )))
}

/// Any state an [`Edge`](crate::Edge) can be had from authenticates its callers.
impl<S> FromRequestParts<S> for CurrentUser
where
    S: Send + Sync,
    crate::Edge: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let edge = crate::Edge::from_ref(state);
        let value = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| {
                ApiError::unauthorized("missing_token", "send `Authorization: Bearer <token>`")
            })?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "invalid_token",
                    "the Authorization header must be `Bearer <token>`",
                )
            })?;
        let claims = edge.auth.verify(token).await?;
        let user = edge.auth.resolve(&edge.db, claims).await?;
        edge.limiter.user(&edge.db, user.id).await?;
        Ok(user)
    }
}

/// Mints a development token (what `bridge token` prints). Refuses outside dev mode.
pub fn mint_dev_token(
    settings: &AuthSettings,
    subject: &str,
    email: &Email,
    ttl: Duration,
) -> anyhow::Result<String> {
    let AuthSettings::Dev {
        secret,
        issuer,
        audience,
    } = settings
    else {
        anyhow::bail!("tokens can be minted only when AUTH_MODE=dev");
    };
    let now = jsonwebtoken::get_current_timestamp();
    let claims = Claims {
        sub: subject.to_owned(),
        iss: issuer.clone(),
        email: Some(email.to_string()),
        email_verified: Some(true),
        aud: serde_json::Value::String(audience.clone()),
        exp: now + ttl.as_secs(),
        iat: Some(now),
    };
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.expose_secret().as_bytes()),
    )
    .context("signing the token")
}

/// The issuer's signing keys, fetched over HTTPS and cached.
pub struct Jwks {
    http: reqwest::Client,
    issuer: String,
    configured_url: Option<String>,
    min_refresh: Duration,
    state: RwLock<JwksState>,
    refresh: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct JwksState {
    url: Option<String>,
    keys: HashMap<String, (Arc<DecodingKey>, Option<Algorithm>)>,
    fetched: Option<Instant>,
}

impl JwksState {
    fn lookup(&self, kid: Option<&str>) -> Option<(Arc<DecodingKey>, Option<Algorithm>)> {
        match kid {
            Some(kid) => self.keys.get(kid).cloned(),
            // A token without `kid` is accepted only when there is a single key to try.
            None if self.keys.len() == 1 => self.keys.values().next().cloned(),
            None => None,
        }
    }
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct Discovery {
    jwks_uri: String,
}

impl Jwks {
    pub fn new(
        issuer: String,
        configured_url: Option<String>,
        min_refresh: Duration,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(3))
            .user_agent(concat!("bridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the JWKS HTTP client")?;
        Ok(Self {
            http,
            issuer,
            configured_url,
            min_refresh,
            state: RwLock::new(JwksState::default()),
            refresh: tokio::sync::Mutex::new(()),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, JwksState> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    async fn key(&self, kid: Option<&str>, alg: Algorithm) -> ApiResult<Arc<DecodingKey>> {
        let fresh = |s: &JwksState| s.fetched.is_some_and(|t| t.elapsed() < JWKS_MAX_AGE);
        {
            let s = self.read();
            if fresh(&s)
                && let Some(found) = s.lookup(kid)
            {
                return check_alg(found, alg);
            }
        }
        let _refreshing = self.refresh.lock().await;
        {
            let s = self.read();
            let found = s.lookup(kid);
            if fresh(&s) {
                if let Some(found) = found {
                    return check_alg(found, alg);
                }
                if s.fetched.is_some_and(|t| t.elapsed() < self.min_refresh) {
                    return Err(unknown_key());
                }
            }
        }
        match self.fetch().await {
            Ok((url, keys)) => {
                let mut s = self.state.write().unwrap_or_else(|p| p.into_inner());
                s.url = Some(url);
                s.keys = keys;
                s.fetched = Some(Instant::now());
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "fetching the JWKS failed");
                // Keep serving with what we had; if we had nothing for this key, we cannot
                // tell good tokens from bad ones, which is an outage rather than a 401.
                let s = self.read();
                return match s.lookup(kid) {
                    Some(found) => check_alg(found, alg),
                    None => Err(ApiError::unavailable(e)),
                };
            }
        }
        let s = self.read();
        s.lookup(kid)
            .map_or_else(|| Err(unknown_key()), |found| check_alg(found, alg))
    }

    async fn fetch(
        &self,
    ) -> anyhow::Result<(
        String,
        HashMap<String, (Arc<DecodingKey>, Option<Algorithm>)>,
    )> {
        let known = self.read().url.clone();
        let url = match (&self.configured_url, known) {
            (Some(u), _) => u.clone(),
            (None, Some(u)) => u,
            (None, None) => {
                let discovery = format!("{}/.well-known/openid-configuration", self.issuer);
                let d: Discovery = self
                    .http
                    .get(&discovery)
                    .send()
                    .await
                    .and_then(|r| r.error_for_status())
                    .with_context(|| format!("GET {discovery}"))?
                    .json()
                    .await
                    .context("reading the OpenID configuration")?;
                d.jwks_uri
            }
        };
        let raw: RawJwks = self
            .http
            .get(&url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .with_context(|| format!("GET {url}"))?
            .json()
            .await
            .context("reading the JWKS")?;
        let mut keys = HashMap::new();
        for value in raw.keys {
            // Keys we cannot use (encryption keys, unknown types) are skipped, not fatal.
            let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
                continue;
            };
            if matches!(
                jwk.common.public_key_use,
                Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
            ) {
                continue;
            }
            let (Some(kid), Ok(key)) = (jwk.common.key_id.clone(), DecodingKey::from_jwk(&jwk))
            else {
                continue;
            };
            let alg = match jwk.common.key_algorithm {
                Some(KeyAlgorithm::RS256) => Some(Algorithm::RS256),
                Some(KeyAlgorithm::ES256) => Some(Algorithm::ES256),
                Some(_) => continue,
                None => None,
            };
            keys.insert(kid, (Arc::new(key), alg));
        }
        anyhow::ensure!(!keys.is_empty(), "the JWKS at {url} holds no usable key");
        Ok((url, keys))
    }
}

fn unknown_key() -> ApiError {
    ApiError::unauthorized("invalid_token", "the token was signed with an unknown key")
}

fn check_alg(
    (key, key_alg): (Arc<DecodingKey>, Option<Algorithm>),
    alg: Algorithm,
) -> ApiResult<Arc<DecodingKey>> {
    match key_alg {
        Some(a) if a != alg => Err(ApiError::unauthorized(
            "invalid_token",
            "the token's algorithm does not match its key",
        )),
        _ => Ok(key),
    }
}
