//! Postgres connection URLs and TLS as libpq reads them, for Bridge's own database and for
//! customers' Postgres warehouses alike.
//!
//! `sslmode` follows libpq: `disable` (plain text), `allow` and `prefer` (TLS when the server
//! offers it, unverified; tokio-postgres has no "plain first" mode, so `allow` behaves as
//! `prefer`), `require` (TLS, unverified, unless a CA is given: then as `verify-ca`, as libpq
//! does with a root certificate), `verify-ca` (the chain is checked against the CA) and
//! `verify-full` (the chain and the host name). One departure, on purpose: when a URL does
//! not say, the mode is `verify-full` for every host but loopback and Unix sockets (libpq's
//! default, `prefer`, lets anyone on the path read the traffic). The CA is a PEM given with
//! the credentials (warehouses), `DATABASE_CA_FILE` (Bridge's own database), or else the
//! system's roots. `sslrootcert` and the client-certificate options are not read from a URL:
//! a customer's URL must not make Bridge read files of its own machine.

use std::{net::IpAddr, path::Path, sync::Arc};

use anyhow::Context;
use rustls::{
    DigitallySignedStruct, Error as TlsError, RootCertStore, SignatureScheme,
    client::{
        WebPkiServerVerifier,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    crypto::CryptoProvider,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject};
use tokio_postgres::config::{Host, SslMode as DriverMode};
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "disable" => Self::Disable,
            "allow" => Self::Allow,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Allow => "allow",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }

    /// Can a connection in this mode travel in plain text?
    pub fn may_be_plain(self) -> bool {
        matches!(self, Self::Disable | Self::Allow | Self::Prefer)
    }
}

/// A parsed connection URL: the driver's configuration without the TLS options, and the
/// mode those asked for (or the default).
#[derive(Debug, Clone)]
pub struct Target {
    pub config: tokio_postgres::Config,
    pub ssl_mode: SslMode,
    /// Whether the URL named the mode (else it is the default for its hosts).
    pub explicit: bool,
}

/// Options read here, never by the driver.
const TLS_OPTIONS: &[&str] = &["sslmode"];
/// Options refused: they would name files on Bridge's machine.
const FILE_OPTIONS: &[&str] = &[
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslcrl",
    "sslcrldir",
    "sslpassword",
];

/// Parses a `postgres://` URL (or a `key=value` string). Messages never carry the URL.
pub fn parse(url: &str) -> Result<Target, String> {
    let mut mode: Option<String> = None;
    let rest = if let Some((base, query)) = url
        .split_once('?')
        .filter(|_| url.starts_with("postgres://") || url.starts_with("postgresql://"))
    {
        let mut kept = form_urlencoded::Serializer::new(String::new());
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            if TLS_OPTIONS.contains(&k.as_ref()) {
                mode = Some(v.into_owned());
            } else if FILE_OPTIONS.contains(&k.as_ref()) {
                return Err(format!(
                    "`{k}` is not supported: give the CA certificate with the credentials (ca_cert) instead"
                ));
            } else {
                kept.append_pair(&k, &v);
            }
        }
        let kept = kept.finish();
        if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{kept}")
        }
    } else if url.contains('=') && !url.contains("://") {
        let mut kept = Vec::new();
        for part in url.split_whitespace() {
            match part.split_once('=') {
                Some((k, v)) if TLS_OPTIONS.contains(&k) => {
                    mode = Some(v.trim_matches('\'').to_owned())
                }
                Some((k, _)) if FILE_OPTIONS.contains(&k) => {
                    return Err(format!("`{k}` is not supported"));
                }
                _ => kept.push(part),
            }
        }
        kept.join(" ")
    } else {
        url.to_owned()
    };
    let config: tokio_postgres::Config = rest
        .parse()
        .map_err(|_| "is not a valid Postgres URL".to_owned())?;
    let explicit = mode.is_some();
    let ssl_mode = match mode {
        Some(m) => SslMode::parse(&m).ok_or_else(|| {
            format!("sslmode `{m}` is not one of disable, allow, prefer, require, verify-ca, verify-full")
        })?,
        None if config.get_hosts().iter().all(is_local) => SslMode::Prefer,
        None => SslMode::VerifyFull,
    };
    Ok(Target {
        config,
        ssl_mode,
        explicit,
    })
}

/// Is the host loopback or a Unix socket (where TLS adds nothing)?
fn is_local(host: &Host) -> bool {
    match host {
        Host::Tcp(name) => {
            name.eq_ignore_ascii_case("localhost")
                || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
        #[cfg(unix)]
        Host::Unix(_) => true,
    }
}

/// Where the certificates that may sign a server's come from.
#[derive(Debug, Clone, Copy)]
pub enum Roots<'a> {
    /// PEM text, as given with a warehouse's credentials.
    Pem(&'a [u8]),
    /// A PEM file (`DATABASE_CA_FILE`).
    File(&'a Path),
    /// The operating system's.
    System,
}

impl Roots<'_> {
    fn given(&self) -> bool {
        !matches!(self, Roots::System)
    }

    fn load(&self) -> anyhow::Result<RootCertStore> {
        let mut roots = RootCertStore::empty();
        let add = |roots: &mut RootCertStore,
                   certs: Vec<CertificateDer<'static>>|
         -> anyhow::Result<()> {
            for cert in certs {
                roots.add(cert).context("a CA certificate cannot be used")?;
            }
            Ok(())
        };
        match self {
            Roots::Pem(pem) => {
                let certs = CertificateDer::pem_slice_iter(pem)
                    .collect::<Result<Vec<_>, _>>()
                    .context("the CA certificate is not PEM")?;
                add(&mut roots, certs)?;
            }
            Roots::File(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .with_context(|| format!("the CA file {} cannot be read", path.display()))?
                    .collect::<Result<Vec<_>, _>>()
                    .with_context(|| {
                        format!(
                            "the CA file {} holds an unreadable certificate",
                            path.display()
                        )
                    })?;
                add(&mut roots, certs)?;
            }
            Roots::System => {
                roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            }
        }
        anyhow::ensure!(
            !roots.is_empty(),
            "no CA certificates to verify the server with"
        );
        Ok(roots)
    }
}

/// How many certificates `pem` holds (0 when it is not PEM certificates).
pub fn pem_certificates(pem: &[u8]) -> usize {
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_or(0, |c| c.len())
}

/// Sets the driver's TLS mode for `target` and builds the connector that checks what the
/// mode asks.
pub fn connector(target: &mut Target, roots: Roots<'_>) -> anyhow::Result<MakeRustlsConnect> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let (driver, verifier): (DriverMode, Arc<dyn ServerCertVerifier>) = match target.ssl_mode {
        SslMode::Disable => (DriverMode::Disable, Arc::new(Unverified(provider.clone()))),
        SslMode::Allow | SslMode::Prefer => {
            (DriverMode::Prefer, Arc::new(Unverified(provider.clone())))
        }
        SslMode::Require if !roots.given() => {
            (DriverMode::Require, Arc::new(Unverified(provider.clone())))
        }
        SslMode::Require | SslMode::VerifyCa => {
            let full = WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots.load()?),
                provider.clone(),
            )
            .build()
            .context("building the certificate verifier")?;
            (DriverMode::Require, Arc::new(ChainOnly(full)))
        }
        SslMode::VerifyFull => {
            let full = WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots.load()?),
                provider.clone(),
            )
            .build()
            .context("building the certificate verifier")?;
            (DriverMode::Require, full)
        }
    };
    target.config.ssl_mode(driver);
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(tls))
}

/// `prefer` and `require` without a CA: encrypted, the certificate not checked (libpq's
/// meaning). Handshake signatures are still verified.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to the CA; the name in the certificate is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(TlsError::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_follow_libpq_with_a_verifying_default_off_loopback() {
        let mode = |url: &str| parse(url).map(|t| t.ssl_mode);
        assert_eq!(
            mode("postgres://u@db.example.com/d"),
            Ok(SslMode::VerifyFull)
        );
        assert_eq!(mode("postgres://u@127.0.0.1/d"), Ok(SslMode::Prefer));
        assert_eq!(mode("postgres://u@localhost:5433/d"), Ok(SslMode::Prefer));
        assert_eq!(mode("postgres://u@[::1]/d"), Ok(SslMode::Prefer));
        for m in [
            "disable",
            "allow",
            "prefer",
            "require",
            "verify-ca",
            "verify-full",
        ] {
            assert_eq!(
                mode(&format!(
                    "postgres://u@db.example.com/d?sslmode={m}&application_name=x"
                )),
                Ok(SslMode::parse(m).expect("a mode"))
            );
        }
        assert!(mode("postgres://u@h/d?sslmode=sometimes").is_err());
        assert!(mode("postgres://u@h/d?sslrootcert=/etc/passwd").is_err());
        assert_eq!(
            mode("host=db.example.com user=u dbname=d sslmode=verify-ca"),
            Ok(SslMode::VerifyCa)
        );
        let t = parse("postgres://u:p@h/d?sslmode=verify-full&connect_timeout=3").expect("parses");
        assert_eq!(
            t.config.get_connect_timeout(),
            Some(&std::time::Duration::from_secs(3)),
            "other options reach the driver"
        );
        assert!(t.explicit && !parse("postgres://u@h/d").expect("parses").explicit);
    }

    #[test]
    fn messages_never_carry_the_url() {
        let e = parse("postgres://user:s3cret@h:notaport/d").expect_err("bad port");
        assert!(!e.contains("s3cret"), "{e}");
    }
}
