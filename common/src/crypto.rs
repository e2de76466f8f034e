//! Small cryptographic helpers over `aws-lc-rs`, the one crypto library of the workspace.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

/// `n` random bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    aws_lc_rs::rand::fill(&mut buf).expect("the system random generator is available");
    buf
}

/// A URL-safe random token carrying `bytes` bytes of entropy.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut buf).expect("the system random generator is available");
    URL_SAFE_NO_PAD.encode(buf)
}
