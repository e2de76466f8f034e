//! [`AppState`]: what the warehouse-facing functions run with. The [`Edge`] (settings,
//! database, authenticator) and the domain services, each built once per process from the
//! ports it names. Handlers take the service they call (`State<Catalog>`, …) through
//! `FromRef`, never the whole state. Nothing here touches the network when it is built:
//! the object stores and the KMS clients connect lazily.

use std::{ops::Deref, process::ExitCode, sync::Arc, time::Duration};

use axum::extract::FromRef;
use edge::{Edge, auth::OidcVerifier};
use platform::{blob::Buckets, keyring};
use settings::JobSettings;
use utoipa_axum::router::OpenApiRouter;

use crate::{
    catalog::Catalog,
    chat::Chat,
    connections::Connections,
    dashboards::Dashboards,
    jobs::{LambdaInvoker, Runner},
    serving::{Caches, Serving},
};

/// Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub edge: Edge,
    pub connections: Connections,
    pub catalog: Catalog,
    pub dashboards: Dashboards,
    pub serving: Serving,
    /// Chat sessions and runs (the AI SDK with the catalog tools).
    pub chat: Chat,
    /// Model-call costs and tool-cache hits, for team admins.
    pub observability: crate::observability::Observability,
    /// Verifies the scheduler's OIDC tokens, when `SCHEDULER_*` is configured.
    pub scheduler: Option<Scheduler>,
    /// The object stores, for tests and tools that look inside them (the services hold
    /// the ones they use).
    pub buckets: Buckets,
}

/// Who may call the scheduled entry: tokens `verifier` accepts, of `service_account`.
pub struct Scheduler {
    pub verifier: OidcVerifier,
    pub service_account: String,
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

macro_rules! from_ref {
    ($($t:ty => $field:ident),* $(,)?) => {$(
        impl FromRef<AppState> for $t {
            fn from_ref(state: &AppState) -> $t {
                state.$field.clone()
            }
        }
    )*};
}

from_ref!(
    Edge => edge,
    Connections => connections,
    Catalog => catalog,
    Dashboards => dashboards,
    Serving => serving,
    Chat => chat,
    crate::observability::Observability => observability,
);

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
            Some(s) => Some(Scheduler {
                verifier: OidcVerifier::new(
                    &s.issuer,
                    &s.audience,
                    s.jwks_url.clone(),
                    Duration::from_secs(30),
                    settings.auth_leeway,
                )?,
                service_account: s.service_account.clone(),
            }),
            None => None,
        };
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
        let db = edge.db.clone();
        let connections = Connections::new(
            db.clone(),
            buckets.credentials.clone(),
            key_ring,
            settings.warehouse.clone(),
        );
        let catalog = Catalog::new(db.clone(), connections.clone(), buckets.cache.clone(), jobs);
        let caches = Arc::new(Caches::new(
            settings.result_cache_bytes,
            edge.access_epoch.clone(),
        ));
        let dashboards = Dashboards::new(
            db.clone(),
            connections.clone(),
            buckets.dashboards.clone(),
            buckets.cache.clone(),
            caches.clone(),
        );
        let serving = Serving::new(
            db.clone(),
            connections.clone(),
            dashboards.clone(),
            buckets.cache.clone(),
            caches,
        );
        let llm_settings = &settings.llm;
        let provider: llm::DynProvider = match llm_settings.provider {
            // Without a model, chat still answers about the catalog, through the same tools.
            settings::LlmProviderKind::Builtin => crate::chat_tools::builtin(),
            _ => llm::from_settings(llm_settings)
                .map_err(|e| anyhow::anyhow!("LLM provider: {e}"))?,
        };
        let prices = llm::PriceTable::load(llm_settings.prices_file.as_deref())
            .map_err(|e| anyhow::anyhow!(e))?;
        let observability = crate::observability::Observability::new(db.clone());
        let chat = Chat::new(
            db.clone(),
            edge.clone(),
            ai::sessions::Sessions::new(db.clone(), buckets.sessions.clone()),
            ai::calls::ModelCalls::new(db.clone(), Arc::new(prices)),
            ai::tool_cache::ToolCache::new(db, buckets.cache.clone()),
            catalog.clone(),
            dashboards.clone(),
            provider,
            llm_settings.run_limits,
            llm_settings.max_tokens,
        );
        Ok(Self(Arc::new(Inner {
            edge,
            connections,
            catalog,
            dashboards,
            serving,
            chat,
            observability,
            scheduler,
            buckets,
        })))
    }
}

impl AppState {
    /// The scheduled tick: scans whose worker died are handed on (or failed), chat runs whose
    /// process died are ended, expired tool-cache entries go, then every dashboard whose
    /// `refresh` cadence is due is warmed while, once per `STORAGE_CHECK_EVERY_SECS`, the
    /// storage integrity check runs (its findings are logged as warnings and recorded in
    /// `storage_checks`; it never fails the tick, nor deletes anything).
    pub async fn tick(&self) -> edge::ApiResult<crate::serving::WarmReport> {
        if let Err(e) = self.catalog.reap(None).await {
            tracing::warn!(error = %e, "looking for abandoned scans");
        }
        if let Err(e) = self.chat.reap(None).await {
            tracing::warn!(error = %e, "looking for abandoned chat runs");
        }
        if let Err(e) = self.chat.reap_tool_cache().await {
            tracing::warn!(error = %e, "reaping the tool cache");
        }
        let (warmed, _checked) =
            tokio::join!(self.serving.warm_due(), crate::integrity::run_if_due(self));
        warmed
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
