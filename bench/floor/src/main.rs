//! A floor for the cached read: `bench-floor <port> <body file> [<HS256 secret> <issuer> <audience>]`
//! answers every request with the file's bytes, from memory; given a secret, only after
//! verifying the bearer token as Bridge's dev mode does (signature, issuer, audience, expiry),
//! 401 otherwise. One tokio runtime on every core, HTTP/1.1 keep-alive, nothing else.

use std::{convert::Infallible, sync::Arc};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode, body::Incoming, header, service::service_fn};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

#[derive(serde::Deserialize)]
struct Claims {
    #[allow(dead_code)]
    sub: String,
}

struct Floor {
    body: Bytes,
    check: Option<(DecodingKey, Validation)>,
}

fn answer(floor: &Floor, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if let Some((key, validation)) = &floor.check {
        let token = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let ok = token.is_some_and(|t| jsonwebtoken::decode::<Claims>(t, key, validation).is_ok());
        if !ok {
            let mut denied = Response::new(Full::new(Bytes::new()));
            *denied.status_mut() = StatusCode::UNAUTHORIZED;
            return denied;
        }
    }
    let mut response = Response::new(Full::new(floor.body.clone()));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    h.insert(header::ETAG, header::HeaderValue::from_static("\"floor\""));
    response
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (port, file) = match args.get(1..3) {
        Some([port, file]) => (port.parse::<u16>()?, file),
        _ => {
            return Err(
                "usage: bench-floor <port> <body file> [<secret> <issuer> <audience>]".into(),
            );
        }
    };
    let check = match args.get(3..6) {
        Some([secret, issuer, audience]) => {
            let mut v = Validation::new(Algorithm::HS256);
            v.set_issuer(&[issuer]);
            v.set_audience(&[audience]);
            v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            Some((DecodingKey::from_secret(secret.as_bytes()), v))
        }
        _ => None,
    };
    let floor = Arc::new(Floor {
        body: Bytes::from(std::fs::read(file)?),
        check,
    });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let floor = floor.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let response = answer(&floor, &req);
                async move { Ok::<_, Infallible>(response) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}
