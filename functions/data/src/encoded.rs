//! Data responses' bodies as sent: the content coding negotiated from `Accept-Encoding`,
//! and the encoders, at the compression layer's level (4 of each; `edge::app`). A body the
//! serving caches keep (`services::serving::Caches::body`) is so compressed once, not on
//! every read; the layer lets a response that carries `Content-Encoding` through as it is.

use std::{io::Write, time::Duration};

use axum::http::{HeaderMap, header};
use bytes::Bytes;
use services::serving::EncodedBody;

/// The codings a data response may be sent in, least preferred first (at equal q-values
/// the later wins, as the compression layer chooses).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Coding {
    Identity,
    Gzip,
    Br,
    Zstd,
}

impl Coding {
    const ALL: [Coding; 4] = [Coding::Identity, Coding::Gzip, Coding::Br, Coding::Zstd];

    /// Its token, as `Accept-Encoding` and `Content-Encoding` write it.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Identity => "identity",
            Coding::Gzip => "gzip",
            Coding::Br => "br",
            Coding::Zstd => "zstd",
        }
    }

    fn parse(token: &str) -> Option<Self> {
        if token.eq_ignore_ascii_case("x-gzip") {
            return Some(Coding::Gzip);
        }
        Self::ALL
            .into_iter()
            .find(|c| token.eq_ignore_ascii_case(c.token()))
    }
}

/// Bodies smaller than this are sent as they are, as the compression layer does (a
/// compressed frame would save little or nothing).
pub const MIN_COMPRESSED_BYTES: usize = 1024;

/// Bodies larger than this are compressed on a blocking thread, not on the runtime's.
const COMPRESS_INLINE_MAX: usize = 256 * 1024;

/// The level of every coding, the compression layer's.
const LEVEL: u32 = 4;

/// A q-value (RFC 9110 §12.4.2) in thousandths: `0`, `0.5`, `1.000`; `None` if malformed.
fn qvalue(v: &str) -> Option<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac_value = frac
        .bytes()
        .zip([100u16, 10, 1])
        .map(|(b, f)| u16::from(b - b'0') * f)
        .sum::<u16>();
    match int {
        "0" => Some(frac_value),
        "1" if frac_value == 0 => Some(1000),
        _ => None,
    }
}

/// One member of `Accept-Encoding`: its coding (`None` for `*`) and q-value. Unknown
/// codings, and members whose q-value is malformed, are left out.
fn member(item: &str) -> Option<(Option<Coding>, u16)> {
    let mut parts = item.split(';');
    let token = parts.next()?.trim();
    let coding = if token == "*" {
        None
    } else {
        Some(Coding::parse(token)?)
    };
    let mut q = 1000;
    for param in parts {
        let (name, value) = param.split_once('=')?;
        if name.trim().eq_ignore_ascii_case("q") {
            q = qvalue(value.trim())?;
        }
    }
    Some((coding, q))
}

/// The coding to answer in, from the request's `Accept-Encoding` (RFC 9110 §12.5.3): the
/// acceptable coding (q > 0) of the highest q-value, zstd before br before gzip before
/// identity at equal ones. A coding not named takes the q-value of `*` when there is one;
/// without `*` only the codings named count, and identity when none is acceptable. No
/// header, or nothing acceptable: identity (the compression layer answers 406 when even
/// identity is refused).
pub fn negotiate(headers: &HeaderMap) -> Coding {
    let members: Vec<(Option<Coding>, u16)> = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter(|item| !item.trim().is_empty())
        .filter_map(member)
        .collect();
    let wildcard = members.iter().find(|(c, _)| c.is_none()).map(|(_, q)| *q);
    let q_of = |coding: Coding| {
        members
            .iter()
            .find(|(c, _)| *c == Some(coding))
            .map(|(_, q)| *q)
            .or(wildcard)
    };
    Coding::ALL
        .into_iter()
        .filter_map(|c| q_of(c).map(|q| (q, c)))
        .filter(|(q, _)| *q > 0)
        .max()
        .map_or(Coding::Identity, |(_, c)| c)
}

/// `body` in `coding`, at level 4.
pub fn compress(coding: Coding, body: &[u8]) -> std::io::Result<Vec<u8>> {
    match coding {
        Coding::Identity => Ok(body.to_vec()),
        Coding::Zstd => zstd::bulk::compress(body, LEVEL as i32),
        Coding::Br => {
            let params = brotli::enc::BrotliEncoderParams {
                quality: LEVEL as i32,
                size_hint: body.len(),
                ..Default::default()
            };
            let mut out = Vec::with_capacity(body.len() / 4 + 64);
            brotli::BrotliCompress(&mut &body[..], &mut out, &params)?;
            Ok(out)
        }
        Coding::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(
                Vec::with_capacity(body.len() / 4 + 64),
                flate2::Compression::new(LEVEL),
            );
            encoder.write_all(body)?;
            encoder.finish()
        }
    }
}

/// The body to send for `body` asked in `coding`: as it is when identity is asked or it is
/// under [`MIN_COMPRESSED_BYTES`], else compressed (on a blocking thread past
/// [`COMPRESS_INLINE_MAX`]). Should compressing fail, the body goes as it is.
pub async fn encode(coding: Coding, body: Vec<u8>, fresh_for: Duration) -> EncodedBody {
    let body = Bytes::from(body);
    let plain = |bytes: Bytes| EncodedBody {
        bytes,
        content_encoding: None,
        fresh_for,
    };
    if coding == Coding::Identity || body.len() < MIN_COMPRESSED_BYTES {
        return plain(body);
    }
    let compressed = if body.len() > COMPRESS_INLINE_MAX {
        let input = body.clone();
        tokio::task::spawn_blocking(move || compress(coding, &input))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    } else {
        compress(coding, &body)
    };
    match compressed {
        Ok(bytes) => EncodedBody {
            bytes: Bytes::from(bytes),
            content_encoding: Some(coding.token()),
            fresh_for,
        },
        Err(e) => {
            tracing::warn!(error = %e, coding = coding.token(), "compressing a data response");
            plain(body)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn chosen(values: &[&str]) -> Coding {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
        }
        negotiate(&headers)
    }

    #[test]
    fn the_highest_q_value_wins_then_zstd_br_gzip() {
        assert_eq!(chosen(&[]), Coding::Identity);
        assert_eq!(chosen(&[""]), Coding::Identity);
        assert_eq!(chosen(&["gzip"]), Coding::Gzip);
        assert_eq!(chosen(&["GZIP"]), Coding::Gzip);
        assert_eq!(chosen(&["x-gzip"]), Coding::Gzip);
        assert_eq!(chosen(&["gzip, deflate, br, zstd"]), Coding::Zstd);
        assert_eq!(chosen(&["gzip, br"]), Coding::Br);
        assert_eq!(chosen(&["gzip", "br"]), Coding::Br, "headers combine");
        assert_eq!(chosen(&["gzip;q=1, zstd;q=0.5"]), Coding::Gzip);
        assert_eq!(chosen(&["gzip ; q=0.2, br;Q=0.3"]), Coding::Br);
        assert_eq!(chosen(&["zstd;q=0, gzip;q=0.001"]), Coding::Gzip);
        assert_eq!(chosen(&["zstd;q=0"]), Coding::Identity);
        assert_eq!(chosen(&["identity;q=1, gzip;q=0.5"]), Coding::Identity);
        assert_eq!(chosen(&["identity, gzip"]), Coding::Gzip);
        assert_eq!(chosen(&["deflate, compress"]), Coding::Identity);
    }

    #[test]
    fn the_wildcard_stands_for_the_codings_not_named() {
        assert_eq!(chosen(&["*"]), Coding::Zstd);
        assert_eq!(chosen(&["zstd;q=0, *"]), Coding::Br);
        assert_eq!(chosen(&["gzip, *;q=0.5"]), Coding::Gzip);
        assert_eq!(chosen(&["*;q=0"]), Coding::Identity, "nothing acceptable");
        assert_eq!(chosen(&["*;q=0, identity"]), Coding::Identity);
        assert_eq!(chosen(&["*;q=0, br;q=0.1"]), Coding::Br);
    }

    #[test]
    fn malformed_members_are_left_out() {
        assert_eq!(chosen(&["zstd;q=2, gzip"]), Coding::Gzip);
        assert_eq!(chosen(&["zstd;q=0.1234, gzip;q=0.1"]), Coding::Gzip);
        assert_eq!(chosen(&["zstd;q, gzip;q=0.1"]), Coding::Gzip);
        assert_eq!(chosen(&["zstd;q=1.5, br;q=1.000"]), Coding::Br);
        assert_eq!(
            chosen(&["zstd;level=3"]),
            Coding::Zstd,
            "other parameters pass"
        );
        assert_eq!(qvalue("0.5"), Some(500));
        assert_eq!(qvalue("0.05"), Some(50));
        assert_eq!(qvalue("1."), Some(1000));
        assert_eq!(qvalue("0.x"), None);
    }

    #[tokio::test]
    async fn small_bodies_go_as_they_are_and_large_ones_round_trip() {
        let small = encode(Coding::Zstd, b"{}".to_vec(), Duration::ZERO).await;
        assert_eq!(small.content_encoding, None);
        let big: Vec<u8> = (0..400_000u32)
            .flat_map(|i| format!("[{i},\"x{}\"],", i % 97).into_bytes())
            .collect();
        for coding in [Coding::Gzip, Coding::Br, Coding::Zstd] {
            let e = encode(coding, big.clone(), Duration::ZERO).await;
            assert_eq!(e.content_encoding, Some(coding.token()));
            assert!(e.bytes.len() < big.len() / 3);
            let mut back = Vec::new();
            match coding {
                Coding::Gzip => {
                    std::io::Read::read_to_end(
                        &mut flate2::read::GzDecoder::new(&e.bytes[..]),
                        &mut back,
                    )
                    .unwrap();
                }
                Coding::Br => {
                    std::io::Read::read_to_end(
                        &mut brotli::Decompressor::new(&e.bytes[..], 4096),
                        &mut back,
                    )
                    .unwrap();
                }
                Coding::Zstd => back = zstd::bulk::decompress(&e.bytes, big.len()).unwrap(),
                Coding::Identity => unreachable!(),
            }
            assert_eq!(back, big, "{coding:?}");
        }
    }
}
