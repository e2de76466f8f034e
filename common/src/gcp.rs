//! Google access tokens, for Bridge's own identity (Cloud KMS) and for customers'
//! service-account keys (BigQuery). The OAuth flows are yup-oauth2's (re-exported by
//! gcp-bigquery-client); this module only picks the flow and pins the token endpoint.

use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use gcp_bigquery_client::{
    auth::Authenticator as BqAuthenticator,
    error::BQError,
    yup_oauth2::{self, ServiceAccountKey, authenticator::DefaultAuthenticator},
};

pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
pub const BIGQUERY_SCOPE: &str = "https://www.googleapis.com/auth/bigquery";

#[derive(Clone)]
enum Source {
    /// A fixed token: emulators and stubs, which check only that one is sent.
    Fixed(String),
    Yup(Arc<DefaultAuthenticator>),
}

/// A source of access tokens for a set of scopes.
#[derive(Clone)]
pub struct GoogleAuth {
    source: Source,
    scopes: Vec<String>,
}

impl std::fmt::Debug for GoogleAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoogleAuth")
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

impl GoogleAuth {
    pub fn fixed(token: impl Into<String>) -> Self {
        Self {
            source: Source::Fixed(token.into()),
            scopes: Vec::new(),
        }
    }

    /// A service-account key's JWT-bearer flow, always against `token_uri` (never the key's
    /// own, which a stored key could aim anywhere).
    pub async fn service_account(
        mut key: ServiceAccountKey,
        token_uri: &str,
        scopes: &[&str],
    ) -> anyhow::Result<Self> {
        key.token_uri = token_uri.to_owned();
        let auth = yup_oauth2::ServiceAccountAuthenticator::builder(key)
            .build()
            .await
            .context("the service-account key cannot be used")?;
        Ok(Self {
            source: Source::Yup(Arc::new(auth)),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        })
    }

    /// Bridge's own identity: `GOOGLE_APPLICATION_CREDENTIALS`, else the metadata server
    /// (Cloud Run, GCE).
    pub async fn application_default(scopes: &[&str]) -> anyhow::Result<Self> {
        use yup_oauth2::authenticator::ApplicationDefaultCredentialsTypes as Adc;
        let opts = yup_oauth2::ApplicationDefaultCredentialsFlowOpts::default();
        let auth =
            match yup_oauth2::ApplicationDefaultCredentialsAuthenticator::builder(opts).await {
                Adc::ServiceAccount(b) => b.build().await,
                Adc::InstanceMetadata(b) => b.build().await,
            }
            .context(
                "no Google credentials (GOOGLE_APPLICATION_CREDENTIALS or the metadata server)",
            )?;
        Ok(Self {
            source: Source::Yup(Arc::new(auth)),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        })
    }

    pub async fn token(&self) -> anyhow::Result<String> {
        match &self.source {
            Source::Fixed(t) => Ok(t.clone()),
            Source::Yup(auth) => auth
                .token(&self.scopes)
                .await
                .context("obtaining a Google access token")?
                .token()
                .map(str::to_owned)
                .context("Google returned no access token"),
        }
    }
}

#[async_trait]
impl BqAuthenticator for GoogleAuth {
    async fn access_token(&self) -> Result<String, BQError> {
        match &self.source {
            Source::Fixed(t) => Ok(t.clone()),
            Source::Yup(auth) => Ok(auth
                .token(&self.scopes)
                .await?
                .token()
                .ok_or(BQError::NoToken)?
                .to_owned()),
        }
    }
}
