//! A local OpenID Connect identity provider for tests: discovery plus a JWKS whose keys are
//! generated per test and can be rotated, and helpers to sign tokens with them.

#![allow(clippy::unwrap_used)]

use std::sync::{
    Arc, RwLock,
    atomic::{AtomicUsize, Ordering},
};

use aws_lc_rs::{
    encoding::AsDer,
    rsa::{KeyPair as RsaKeyPair, KeySize},
    signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair},
};
use axum::{Json, Router, extract::State, routing::get};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// A local identity provider: OpenID discovery plus a JWKS whose keys tests can rotate.
pub struct Idp {
    pub issuer: String,
    jwks: Arc<RwLock<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
}

#[derive(Clone)]
struct IdpState {
    issuer: String,
    jwks: Arc<RwLock<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
}

impl Idp {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let state = IdpState {
            issuer: issuer.clone(),
            jwks: Arc::default(),
            fetches: Arc::default(),
        };
        let router = Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(|State(s): State<IdpState>| async move {
                    Json(json!({ "issuer": s.issuer, "jwks_uri": format!("{}/keys", s.issuer) }))
                }),
            )
            .route(
                "/keys",
                get(|State(s): State<IdpState>| async move {
                    s.fetches.fetch_add(1, Ordering::SeqCst);
                    // An encryption key and an unsupported key type must be skipped, not fatal.
                    let mut keys = vec![
                        json!({ "kty": "oct", "kid": "sym", "k": "c2VjcmV0" }),
                        json!({ "kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB" }),
                    ];
                    keys.extend(s.jwks.read().unwrap().iter().cloned());
                    Json(json!({ "keys": keys }))
                }),
            )
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self {
            issuer,
            jwks: state.jwks,
            fetches: state.fetches,
        }
    }

    pub fn publish(&self, jwk: Value) {
        self.jwks.write().unwrap().push(jwk);
    }

    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

/// A signing key and its public JWK.
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    pub key: EncodingKey,
    pub jwk: Value,
}

/// Reads PKCS#1 `RSAPrivateKey` out of a PKCS#8 wrapper (what jsonwebtoken's RSA signer takes).
fn pkcs1_from_pkcs8(p8: &[u8]) -> Vec<u8> {
    fn len(b: &[u8], i: &mut usize) -> usize {
        let first = b[*i];
        *i += 1;
        if first < 0x80 {
            return usize::from(first);
        }
        (0..first & 0x7f).fold(0, |l, _| {
            let v = (l << 8) | usize::from(b[*i]);
            *i += 1;
            v
        })
    }
    let mut i = 1;
    len(p8, &mut i); // PrivateKeyInfo SEQUENCE
    for tag in [0x02, 0x30] {
        assert_eq!(p8[i], tag);
        i += 1;
        let l = len(p8, &mut i);
        i += l; // version, algorithm
    }
    assert_eq!(p8[i], 0x04);
    i += 1;
    let l = len(p8, &mut i);
    p8[i..i + l].to_vec()
}

pub fn rsa_key(kid: &str) -> SigningKey {
    let pair = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let p8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).unwrap();
    let public = pair.public_key();
    SigningKey {
        kid: kid.into(),
        alg: Algorithm::RS256,
        key: EncodingKey::from_rsa_der(&pkcs1_from_pkcs8(p8.as_ref())),
        jwk: json!({
            "kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
            "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
            "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
        }),
    }
}

pub fn ec_key(kid: &str) -> SigningKey {
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let p8 = pair.to_pkcs8v1().unwrap();
    let point = pair.public_key().as_ref().to_vec(); // 0x04 || x || y
    SigningKey {
        kid: kid.into(),
        alg: Algorithm::ES256,
        key: EncodingKey::from_ec_der(p8.as_ref()),
        jwk: json!({
            "kty": "EC", "kid": kid, "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        }),
    }
}

/// Signs `claims` with `key`, naming its key id.
pub fn sign(key: &SigningKey, claims: &Value) -> String {
    let mut header = Header::new(key.alg);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &key.key).unwrap()
}
