//! TLS to Postgres as libpq's `sslmode` says, against a real Postgres started here with
//! `ssl=on` and a certificate this test makes (a CA of its own, and a server certificate
//! for `localhost` only): verify-full checks the chain and the name, verify-ca the chain,
//! require and prefer encrypt without checking, disable does not encrypt, and plain text is
//! refused where the policy says so (production). Both Bridge's own pool and the warehouse
//! adapter are tried.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use storage::{db, db::PoolOptions, localpg::LocalPostgres};

use testkit::TempDir;

use platform::{
    warehouse::Limits, warehouse::Warehouse, warehouse::WarehouseError,
    warehouse::postgres::ConnectPolicy, warehouse::postgres::PostgresCredentials,
    warehouse::postgres::PostgresWarehouse,
};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use serde_json::json;

const LIMITS: Limits = Limits {
    max_bytes: 100_000_000,
    timeout: Duration::from_secs(10),
    max_rows: 10,
    max_result_bytes: 65_536,
};

struct TlsServer {
    pg: LocalPostgres,
    ca_pem: String,
    other_ca_pem: String,
    _dir: TempDir,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.pg.stop();
    }
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

async fn tls_server() -> Option<TlsServer> {
    if storage::localpg::find_bin_dir().is_none() {
        testkit::emulators::unavailable(
            "a Postgres with TLS",
            "no initdb/pg_ctl to start one (scripts/test installs them)",
        );
        return None;
    }
    let dir = TempDir::new("bridge-pg-tls");
    let authority = ca("Bridge test CA");
    let other = ca("Someone else's CA");
    let server_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let server_cert = params.signed_by(&server_key, &authority).unwrap();
    let certs = dir.0.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let (crt, key) = (certs.join("server.crt"), certs.join("server.key"));
    std::fs::write(&crt, server_cert.pem()).unwrap();
    std::fs::write(&key, server_key.serialize_pem()).unwrap();
    LocalPostgres::hand_over(&crt).unwrap();
    LocalPostgres::hand_over(&key).unwrap();
    let options = format!(
        "-c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
        crt.display(),
        key.display()
    );
    let root = dir.0.join("cluster");
    let pg = tokio::task::spawn_blocking(move || LocalPostgres::start_with(&root, &options))
        .await
        .unwrap()
        .unwrap();
    Some(TlsServer {
        pg,
        ca_pem: authority.pem(),
        other_ca_pem: other.pem(),
        _dir: dir,
    })
}

async fn warehouse(
    url: &str,
    ca: Option<&str>,
    policy: ConnectPolicy,
) -> Result<bool, WarehouseError> {
    let credentials = PostgresCredentials {
        url: url.to_owned(),
        ca_cert: ca.map(str::to_owned),
    };
    let wh = PostgresWarehouse::connect(&credentials, policy).await?;
    let r = wh
        .query(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
            &LIMITS,
        )
        .await?;
    Ok(r.rows[0][0] == json!(true))
}

#[tokio::test]
async fn sslmode_is_followed_as_libpq_follows_it() {
    let Some(server) = tls_server().await else {
        return;
    };
    let port = server.pg.port();
    let at = |host: &str, mode: &str| {
        format!("postgres://postgres@{host}:{port}/postgres?sslmode={mode}")
    };
    let local = ConnectPolicy::LOCAL;
    let ca = Some(server.ca_pem.as_str());

    // verify-full: the chain to our CA and the name `localhost`.
    assert!(
        warehouse(&at("localhost", "verify-full"), ca, local)
            .await
            .unwrap(),
        "encrypted"
    );
    let wrong_ca = warehouse(
        &at("localhost", "verify-full"),
        Some(&server.other_ca_pem),
        local,
    )
    .await;
    assert!(
        wrong_ca.is_err(),
        "another CA's trust does not reach this certificate"
    );
    let wrong_name = warehouse(&at("127.0.0.1", "verify-full"), ca, local).await;
    assert!(
        wrong_name.is_err(),
        "the certificate names localhost, not 127.0.0.1"
    );
    // verify-ca: the chain only.
    assert!(
        warehouse(&at("127.0.0.1", "verify-ca"), ca, local)
            .await
            .unwrap()
    );
    assert!(
        warehouse(
            &at("127.0.0.1", "verify-ca"),
            Some(&server.other_ca_pem),
            local
        )
        .await
        .is_err()
    );
    // require: encrypted without checking (with a CA given, as verify-ca).
    assert!(
        warehouse(&at("127.0.0.1", "require"), None, local)
            .await
            .unwrap()
    );
    assert!(
        warehouse(
            &at("127.0.0.1", "require"),
            Some(&server.other_ca_pem),
            local
        )
        .await
        .is_err()
    );
    // prefer (the loopback default) encrypts when offered; disable does not.
    assert!(
        warehouse(&at("127.0.0.1", "prefer"), None, local)
            .await
            .unwrap()
    );
    assert!(
        warehouse(
            &format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            None,
            local
        )
        .await
        .unwrap()
    );
    assert!(
        !warehouse(&at("127.0.0.1", "disable"), None, local)
            .await
            .unwrap()
    );

    // In production, modes that may fall back to plain text are refused before connecting.
    let production = ConnectPolicy {
        allow_private_hosts: true,
        allow_plaintext: false,
    };
    for mode in ["disable", "allow", "prefer"] {
        let e = warehouse(&at("localhost", mode), ca, production)
            .await
            .unwrap_err();
        assert!(
            matches!(e, WarehouseError::PermissionDenied(ref m) if m.contains(mode)),
            "{mode}: {e:?}"
        );
    }
    assert!(
        warehouse(&at("localhost", "verify-full"), ca, production)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn bridges_own_pool_verifies_against_database_ca_file() {
    let Some(server) = tls_server().await else {
        return;
    };
    let port = server.pg.port();
    let dir = TempDir::new("bridge-ca-file");
    let (ours, theirs) = (dir.0.join("ca.pem"), dir.0.join("other.pem"));
    std::fs::write(&ours, &server.ca_pem).unwrap();
    std::fs::write(&theirs, &server.other_ca_pem).unwrap();
    let options = PoolOptions {
        max_size: 1,
        timeout: Duration::from_secs(5),
        statement_timeout: Some(Duration::from_secs(5)),
    };
    let url = format!("postgres://postgres@localhost:{port}/postgres?sslmode=verify-full");
    let pool = db::pool(&url, Some(&ours), options).unwrap();
    let client = pool.get().await.unwrap();
    let ssl: bool = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl);
    let timeout: String = client
        .query_one("SHOW statement_timeout", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        timeout, "5s",
        "the pool's sessions carry the statement timeout"
    );
    let refused = db::pool(&url, Some(&theirs), options).unwrap();
    assert!(refused.get().await.is_err());
}
