//! TLS to Postgres (RDS enforces it; Cloud SQL over its Unix socket does not need it).
//!
//! TLS is used when the URL says `sslmode=require` (or `verify-ca`/`verify-full`); the
//! server certificate is always verified, against `DATABASE_CA_FILE` when set (the RDS CA
//! bundle, say) or else the system's roots. Any other mode, including tokio-postgres's
//! default `prefer`, connects in plain text: a local server's self-signed certificate must
//! not break development.

use std::{path::Path, sync::Arc};

use anyhow::Context;
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, pem::PemObject};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

pub fn configure(
    config: &mut tokio_postgres::Config,
    ca_file: Option<&Path>,
) -> anyhow::Result<MakeRustlsConnect> {
    let mut roots = RootCertStore::empty();
    if config.get_ssl_mode() == SslMode::Require {
        match ca_file {
            Some(path) => {
                for cert in CertificateDer::pem_file_iter(path).with_context(|| {
                    format!("DATABASE_CA_FILE {} cannot be read", path.display())
                })? {
                    roots
                        .add(cert.context("DATABASE_CA_FILE holds an unreadable certificate")?)
                        .context("DATABASE_CA_FILE holds an unusable certificate")?;
                }
            }
            None => {
                let native = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(native.certs);
            }
        }
        anyhow::ensure!(
            !roots.is_empty(),
            "no CA certificates to verify Postgres with"
        );
    } else {
        config.ssl_mode(SslMode::Disable);
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(tls))
}
