//! [`AppState`]: what the warehouse-facing functions run with. The [`Edge`] (settings,
//! database, authenticator) and the ports and caches the services use, built once per
//! process. Nothing here touches the network when it is built: the object stores and the
//! KMS clients connect lazily.

use std::{ops::Deref, process::ExitCode, sync::Arc, time::Duration};

use axum::extract::FromRef;
use edge::{Edge, auth::OidcVerifier};
use platform::{
    blob::Buckets,
    keyring::{self, KeyRing},
};
use settings::JobSettings;
use utoipa_axum::router::OpenApiRouter;

use crate::{
    catalog::CachedColumns,
    connections::Warehouses,
    jobs::{LambdaInvoker, Runner},
    serving::Serving,
};

/// The in-process column cache's budget (columns of several thousand tables).
const COLUMN_CACHE_BYTES: u64 = 16 * 1024 * 1024;

/// Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub edge: Edge,
    pub buckets: Buckets,
    pub key_ring: Arc<dyn KeyRing>,
    pub warehouses: Warehouses,
    /// The data-serving caches.
    pub serving: Serving,
    /// Where jobs (catalog scans) run.
    pub jobs: Runner,
    /// Verifies the scheduler's OIDC tokens, when `SCHEDULER_*` is configured.
    pub scheduler: Option<(OidcVerifier, String)>,
    /// Table columns by cache key (`catalog/columns/{connection}/{table}/{fingerprint}.json`).
    pub column_cache: moka::future::Cache<String, Arc<CachedColumns>>,
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl FromRef<AppState> for Edge {
    fn from_ref(state: &AppState) -> Edge {
        state.edge.clone()
    }
}

impl AppState {
    /// The edge from `settings`, then the rest.
    pub async fn from_settings(
        settings: settings::Settings,
        function: &'static str,
    ) -> anyhow::Result<Self> {
        Self::new(Edge::new(settings, function)?).await
    }

    pub async fn new(edge: Edge) -> anyhow::Result<Self> {
        Self::with_jobs(edge, None).await
    }

    /// Like [`new`](Self::new), with the job runner given instead of built from the
    /// settings (tests hand in a Lambda invoker with credentials of their own).
    pub async fn with_jobs(edge: Edge, jobs: Option<Runner>) -> anyhow::Result<Self> {
        let settings = &edge.settings;
        let buckets = Buckets::open(&settings.buckets)?;
        let key_ring = keyring::from_settings(&settings.key_ring).await?;
        let scheduler = match &settings.scheduler {
            Some(s) => Some((
                OidcVerifier::new(
                    &s.issuer,
                    &s.audience,
                    s.jwks_url.clone(),
                    Duration::from_secs(30),
                    settings.auth_leeway,
                )?,
                s.service_account.clone(),
            )),
            None => None,
        };
        let serving = Serving::new(settings.result_cache_bytes);
        let jobs = match (jobs, &settings.jobs) {
            (Some(given), _) => given,
            (None, JobSettings::Local) => Runner::Local,
            (
                None,
                JobSettings::Lambda {
                    function,
                    region,
                    endpoint,
                },
            ) => Runner::Lambda(
                LambdaInvoker::new(function.clone(), region.clone(), endpoint.clone()).await?,
            ),
        };
        Ok(Self(Arc::new(Inner {
            buckets,
            key_ring,
            warehouses: Warehouses::default(),
            serving,
            jobs,
            scheduler,
            column_cache: moka::future::Cache::builder()
                .weigher(|_, v: &Arc<CachedColumns>| v.weight())
                .max_capacity(COLUMN_CACHE_BYTES)
                .time_to_live(Duration::from_secs(3600))
                .build(),
            edge,
        })))
    }
}

impl AppState {
    /// The connection's warehouse, opened (or taken from the cache) with its sealed
    /// credentials.
    pub async fn warehouse(
        &self,
        connection: &crate::connections::Connection,
    ) -> crate::ServiceResult<Arc<dyn platform::warehouse::Warehouse>> {
        self.warehouses
            .open(
                &self.edge.settings,
                &*self.buckets.credentials,
                &*self.key_ring,
                connection,
            )
            .await
    }
}

/// The whole `main` of a function that runs with an [`AppState`].
pub async fn run_function(
    function: &'static str,
    routes: fn() -> OpenApiRouter<AppState>,
    streaming: bool,
) -> ExitCode {
    edge::app::run_function(function, AppState::new, routes, streaming).await
}

/// Like [`run_function`], with non-HTTP Lambda events going to `on_event`.
pub async fn run_function_with_events<F, Fut>(
    function: &'static str,
    routes: fn() -> OpenApiRouter<AppState>,
    on_event: F,
) -> ExitCode
where
    F: Fn(AppState, serde_json::Value) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<serde_json::Value, String>> + Send + 'static,
{
    edge::app::run_function_with_events(function, AppState::new, routes, on_event).await
}
