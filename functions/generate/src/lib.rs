//! The generate function: dashboards as YAML. Validate a draft (editors), create one under a
//! team, read and list them (members), write a new version (editors, optionally guarded by
//! `If-Match`), delete one (its owner or an admin), and show its lineage. Every write runs
//! the full validation first; nothing invalid is stored.
//!
//! And the dashboard agent: `POST /v1/dashboards/generate` streams a run of the model's tool
//! loop (`services::chat`, with the tools of `services::generate_tools`) that explores the
//! connection's catalog, proves its SQL, validates its YAML and saves it.

use std::collections::{BTreeMap, HashSet};

use axum::{
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use base::domain::Role;
use dashboard::spec::SCHEMA_JSON;
use edge::{
    ApiError, ApiResult, CurrentUser, conditional, error::Problem, extract::Json, extract::Path,
    extract::Query, extract::YamlBody, extract::YamlJson, pagination::PageQuery,
};
use serde::{Deserialize, Serialize};
use services::{
    AppState, catalog::Catalog, check::ValidationReport, dashboards::Dashboard,
    dashboards::Dashboards, dashboards::Version, serving::Serving,
};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

pub fn router() -> OpenApiRouter<AppState> {
    // Validation dry-runs every query on the warehouse: those routes get its time.
    OpenApiRouter::new()
        .routes(routes!(validate))
        .routes(routes!(create_dashboard, list_dashboards))
        .routes(routes!(get_yaml, put_yaml))
        .route_layer(axum::middleware::from_fn(edge::app::allow_warehouse_time))
        .routes(routes!(schema))
        .routes(routes!(get_dashboard, delete_dashboard))
        .routes(routes!(lineage))
        .routes(routes!(list_versions))
        .routes(routes!(generate))
}

/// What `POST /v1/dashboards/generate` takes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateBody {
    /// The connection the dashboard reads (editors of its team).
    pub connection_id: Uuid,
    /// What the dashboard should show, in the user's words (at most 32,000 characters).
    pub prompt: String,
    /// The new dashboard's slug (the agent picks one when absent).
    pub slug: Option<String>,
    /// A generation session to continue: the run edits the dashboard it wrote, as a new
    /// version.
    pub session_id: Option<Uuid>,
}

/// Writes a dashboard from a sentence (editors of the connection's team; 404 for anyone
/// else), streamed as `text/event-stream` with the chat stream's events — `run`
/// `{run_id, session_id, replay_token}`, `token`, `tool_call` `{id, tool, args}`,
/// `tool_result`, `cost_update` `{tokens, cost_usd, cost_known, step,
/// warehouse_bytes_estimated}` — plus `dashboard_created` `{slug, version, preview_url,
/// dashboard_id, created}` when it saves, and exactly one terminal event: `complete`
/// (with `dashboard`) or `error` `{code, message}` (`no_dashboard` says why nothing was
/// saved). Replay and cancel it through the chat routes with the run's `session_id`; send
/// `session_id` back to change the same dashboard.
#[utoipa::path(post, path = "/v1/dashboards/generate", tag = "dashboards",
    request_body = GenerateBody,
    responses(
        (status = 200, content_type = "text/event-stream", description = "The run's events", headers(("x-run-id" = String, description = "The run's id"))),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json", description = "The session is answering another message, or is archived"),
))]
async fn generate(
    State(chat): State<services::chat::Chat>,
    user: CurrentUser,
    Json(body): Json<GenerateBody>,
) -> ApiResult<Response> {
    let started = chat
        .generate(
            &user,
            services::chat::NewGeneration {
                connection_id: body.connection_id,
                prompt: body.prompt,
                slug: body.slug,
                session_id: body.session_id,
            },
        )
        .await?;
    Ok(services::run_stream::live(started))
}

/// The JSON Schema of dashboard YAML v1 (for editors: add
/// `# yaml-language-server: $schema=<this URL>` as the YAML's first line).
#[utoipa::path(get, path = "/v1/schemas/dashboard.json", tag = "dashboards", security(()),
    responses((status = 200, body = std::collections::HashMap<String, serde_json::Value>, description = "JSON Schema 2020-12", content_type = "application/schema+json")))]
async fn schema() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "application/schema+json"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        SCHEMA_JSON,
    )
}

/// Validates a dashboard's YAML without storing it (editor in its connection's team):
/// every problem at once, each with its path, line and column.
#[utoipa::path(post, path = "/v1/dashboards/validate", tag = "dashboards",
    request_body(description = "The YAML as `application/yaml` (or `text/yaml`), or `{\"yaml\": \"…\"}` as JSON",
        content((String = "application/yaml"), (YamlJson = "application/json"))),
    responses(
        (status = 200, body = ValidationReport),
        (status = 403, body = Problem, content_type = "application/problem+json"),
))]
async fn validate(
    State(dashboards): State<Dashboards>,
    user: CurrentUser,
    YamlBody(yaml): YamlBody,
) -> ApiResult<Json<ValidationReport>> {
    Ok(Json(dashboards.check(&user, &yaml, None).await?.report))
}

/// Metadata and the current YAML are revalidated on every use (their ETag is the version).
const REVALIDATE: &str = "private, no-cache";
/// A past version's YAML never changes.
const IMMUTABLE: &str = "private, max-age=31536000, immutable";

fn with_version(mut response: Response, version: i32) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::ETAG, conditional::etag(&version.to_string()));
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static(REVALIDATE));
    headers.insert(header::VARY, HeaderValue::from_static("Authorization"));
    response
}

/// Creates a dashboard under a team (editor). Its YAML is validated fully; its slug must be
/// free across Bridge.
#[utoipa::path(post, path = "/v1/teams/{team_id}/dashboards", tag = "dashboards",
    params(("team_id" = Uuid, Path)),
    request_body(description = "The YAML as `application/yaml` (or `text/yaml`), or `{\"yaml\": \"…\"}` as JSON",
        content((String = "application/yaml"), (YamlJson = "application/json"))),
    responses(
        (status = 201, body = Dashboard),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json", description = "Slug taken"),
        (status = 422, body = Problem, content_type = "application/problem+json", description = "Invalid dashboard"),
))]
async fn create_dashboard(
    State(dashboards): State<Dashboards>,
    user: CurrentUser,
    Path(team_id): Path<Uuid>,
    YamlBody(yaml): YamlBody,
) -> ApiResult<Response> {
    let dashboard = dashboards.create_from_yaml(team_id, &user, &yaml).await?;
    let location = format!("/v1/dashboards/{}", dashboard.slug);
    let version = dashboard.version;
    Ok(with_version(
        (
            StatusCode::CREATED,
            [(header::LOCATION, location)],
            Json(dashboard),
        )
            .into_response(),
        version,
    ))
}

#[derive(Serialize, ToSchema)]
pub struct DashboardList {
    pub dashboards: Vec<Dashboard>,
    pub next_cursor: Option<String>,
}

/// A team's dashboards, by slug (members).
#[utoipa::path(get, path = "/v1/teams/{team_id}/dashboards", tag = "dashboards",
    params(("team_id" = Uuid, Path), PageQuery),
    responses(
        (status = 200, body = DashboardList),
        (status = 404, body = Problem, content_type = "application/problem+json"),
))]
async fn list_dashboards(
    State(dashboards): State<Dashboards>,
    user: CurrentUser,
    Path(team_id): Path<Uuid>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<DashboardList>> {
    let page = page.parse::<String>()?;
    let (listed, next_cursor) = dashboards.list_for(team_id, &user, &page).await?;
    Ok(Json(DashboardList {
        dashboards: listed,
        next_cursor,
    }))
}

/// A dashboard's metadata (members). `ETag` is its version.
#[utoipa::path(get, path = "/v1/dashboards/{slug}", tag = "dashboards",
    params(("slug" = String, Path), ("If-None-Match" = Option<String>, Header, description = "ETags the caller holds: 304 when one is current")),
    responses(
        (status = 200, body = Dashboard, headers(("ETag" = String, description = "The version, quoted"))),
        (status = 304, description = "Not modified"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
))]
async fn get_dashboard(
    State(dashboards): State<Dashboards>,
    user: CurrentUser,
    Path(slug): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let (dashboard, _) = dashboards.get(&slug, &user, Role::Viewer).await?;
    let version = dashboard.version;
    if conditional::none_match(&headers, &version.to_string()) {
        return Ok(conditional::not_modified(
            &version.to_string(),
            HeaderValue::from_static(REVALIDATE),
        ));
    }
    Ok(with_version(Json(dashboard).into_response(), version))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct VersionQuery {
    /// A past version (default: the current one).
    pub version: Option<i32>,
}

/// A dashboard's YAML (members): the current version, or `?version=N`.
#[utoipa::path(get, path = "/v1/dashboards/{slug}/yaml", tag = "dashboards",
    params(("slug" = String, Path), VersionQuery, ("If-None-Match" = Option<String>, Header, description = "ETags the caller holds: 304 when one is current")),
    responses(
        (status = 200, body = String, description = "The YAML", content_type = "application/yaml",
            headers(("ETag" = String, description = "The version, quoted"))),
        (status = 304, description = "Not modified"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
))]
async fn get_yaml(
    State(dashboards): State<Dashboards>,
    user: CurrentUser,
    Path(slug): Path<String>,
    Query(q): Query<VersionQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    if q.version.is_some_and(|v| v < 1) {
        return Err(ApiError::invalid_field("version", "must be 1 or more"));
    }
    let cache_control = if q.version.is_some() {
        IMMUTABLE
    } else {
        REVALIDATE
    };
    if let Some(v) = q.version
        && conditional::none_match(&headers, &v.to_string())
    {
        // A version's YAML never changes, but the caller must still see the dashboard.
        dashboards.get(&slug, &user, Role::Viewer).await?;
        return Ok(conditional::not_modified(
            &v.to_string(),
            HeaderValue::from_static(cache_control),
        ));
    }
    let (version, yaml) = dashboards.yaml_of(&slug, &user, q.version).await?;
    if conditional::none_match(&headers, &version.to_string()) {
        return Ok(conditional::not_modified(
            &version.to_string(),
            HeaderValue::from_static(cache_control),
        ));
    }
    Ok(with_version(
        (
            [
                (header::CONTENT_TYPE, "application/yaml; charset=utf-8"),
                (header::CACHE_CONTROL, cache_control),
            ],
            yaml,
        )
            .into_response(),
        version,
    ))
}

/// The versions an `If-Match` header names (`None`: absent or `*`). Tags that are weak or
/// not a version match nothing.
fn if_match(headers: &HeaderMap) -> ApiResult<Option<Vec<i32>>> {
    Ok(conditional::if_match(headers)?
        .map(|tags| tags.iter().filter_map(|t| t.parse::<i32>().ok()).collect()))
}

/// Writes a new version of the dashboard's YAML (editor). With `If-Match`, only if the
/// dashboard is still at that version (else 412). The slug cannot change.
#[utoipa::path(put, path = "/v1/dashboards/{slug}/yaml", tag = "dashboards",
    params(("slug" = String, Path), ("If-Match" = Option<String>, Header, description = "Write only if the current version is one of these ETags (`\"3\"`, a list, or `*`); strong comparison: a weak `W/\"3\"` matches nothing")),
    request_body(description = "The YAML as `application/yaml` (or `text/yaml`), or `{\"yaml\": \"…\"}` as JSON",
        content((String = "application/yaml"), (YamlJson = "application/json"))),
    responses(
        (status = 200, body = Dashboard),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 412, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
))]
async fn put_yaml(
    State(dashboards): State<Dashboards>,
    user: CurrentUser,
    Path(slug): Path<String>,
    headers: HeaderMap,
    YamlBody(yaml): YamlBody,
) -> ApiResult<Response> {
    let expected = if_match(&headers)?;
    let dashboard = dashboards
        .update_from_yaml(&slug, &user, &yaml, expected.as_deref())
        .await?;
    let version = dashboard.version;
    Ok(with_version(Json(dashboard).into_response(), version))
}

#[derive(Serialize, ToSchema)]
pub struct VersionList {
    pub versions: Vec<Version>,
    pub next_cursor: Option<String>,
}

/// The dashboard's versions, newest first (members): who wrote each, when, its size and
/// its SHA-256. Read one with `GET …/yaml?version=N`.
#[utoipa::path(get, path = "/v1/dashboards/{slug}/versions", tag = "dashboards",
    params(("slug" = String, Path), PageQuery),
    responses(
        (status = 200, body = VersionList),
        (status = 404, body = Problem, content_type = "application/problem+json"),
))]
async fn list_versions(
    State(dashboards): State<Dashboards>,
    user: CurrentUser,
    Path(slug): Path<String>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<VersionList>> {
    let page = page.parse::<i32>()?;
    let (versions, next_cursor) = dashboards.versions(&slug, &user, &page).await?;
    Ok(Json(VersionList {
        versions,
        next_cursor,
    }))
}

/// Deletes a dashboard, its versions and its cached results (its owner, or an admin).
#[utoipa::path(delete, path = "/v1/dashboards/{slug}", tag = "dashboards",
    params(("slug" = String, Path)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
))]
async fn delete_dashboard(
    State(dashboards): State<Dashboards>,
    user: CurrentUser,
    Path(slug): Path<String>,
) -> ApiResult<StatusCode> {
    dashboards.delete_by(&slug, &user).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct LineageNode {
    /// `dashboard:<slug>`, `tile:<id>`, `query:<id>` or `table:<dataset.table>`.
    pub id: String,
    /// `dashboard`, `tile`, `query` or `table`.
    pub kind: &'static str,
    pub label: String,
    /// Tiles: their type. Tables: the catalog's table id, when scanned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct LineageEdge {
    pub from: String,
    pub to: String,
}

#[derive(Serialize, ToSchema)]
pub struct Lineage {
    pub dashboard_slug: String,
    pub version: i32,
    pub nodes: Vec<LineageNode>,
    pub edges: Vec<LineageEdge>,
}

/// What the dashboard is made of, down to warehouse tables (members): dashboard → tile →
/// query → (query it refs) → table, from the parsed SQL.
#[utoipa::path(get, path = "/v1/dashboards/{slug}/lineage", tag = "dashboards",
    params(("slug" = String, Path)),
    responses(
        (status = 200, body = Lineage),
        (status = 404, body = Problem, content_type = "application/problem+json"),
))]
async fn lineage(
    State(serving): State<Serving>,
    State(catalog): State<Catalog>,
    user: CurrentUser,
    Path(slug): Path<String>,
) -> ApiResult<Json<Lineage>> {
    let (dashboard, _) = serving.dashboard(&slug, &user, Role::Viewer).await?;
    let plan = serving.plan(&dashboard).await?;
    let catalog: BTreeMap<(String, String), Uuid> = catalog
        .scanned(dashboard.connection_id)
        .await?
        .into_iter()
        .map(|t| ((t.dataset, t.table), t.id))
        .collect();
    let mut nodes = vec![LineageNode {
        id: format!("dashboard:{slug}"),
        kind: "dashboard",
        label: plan.spec.title.clone(),
        detail: None,
    }];
    let mut edges = Vec::new();
    for tile in &plan.spec.layout {
        let id = format!("tile:{}", tile.id);
        nodes.push(LineageNode {
            id: id.clone(),
            kind: "tile",
            label: tile.title.clone().unwrap_or_else(|| tile.id.clone()),
            detail: Some(tile.r#type.as_str().to_owned()),
        });
        edges.push(LineageEdge {
            from: format!("dashboard:{slug}"),
            to: id.clone(),
        });
        if let Some(q) = &tile.query {
            edges.push(LineageEdge {
                from: id,
                to: format!("query:{q}"),
            });
        }
    }
    // Each compiled query reads its own tables and its refs'; a query's direct tables are
    // those its refs do not account for.
    let read: BTreeMap<&str, Vec<(String, String)>> = plan
        .queries
        .iter()
        .map(|q| {
            let tables = sqlguard::check(&q.sql, plan.dialect)
                .map(|ts| ts.into_iter().map(|t| (t.dataset, t.table)).collect())
                .unwrap_or_default();
            (q.id.as_str(), tables)
        })
        .collect();
    let mut tables: BTreeMap<(String, String), ()> = BTreeMap::new();
    for q in &plan.queries {
        nodes.push(LineageNode {
            id: format!("query:{}", q.id),
            kind: "query",
            label: q.id.clone(),
            detail: None,
        });
        let via_refs: HashSet<&(String, String)> = q
            .refs
            .iter()
            .flat_map(|r| read.get(r.as_str()).into_iter().flatten())
            .collect();
        let direct_refs = dashboard::template::refs(
            plan.spec
                .queries
                .iter()
                .find(|s| s.id == q.id)
                .map(|s| s.sql.as_str())
                .unwrap_or(""),
        );
        for r in direct_refs {
            edges.push(LineageEdge {
                from: format!("query:{}", q.id),
                to: format!("query:{r}"),
            });
        }
        for t in read.get(q.id.as_str()).into_iter().flatten() {
            if !via_refs.contains(t) {
                edges.push(LineageEdge {
                    from: format!("query:{}", q.id),
                    to: format!("table:{}.{}", t.0, t.1),
                });
                tables.insert(t.clone(), ());
            }
        }
    }
    for (t, _) in tables {
        nodes.push(LineageNode {
            id: format!("table:{}.{}", t.0, t.1),
            kind: "table",
            label: format!("{}.{}", t.0, t.1),
            detail: catalog.get(&t).map(Uuid::to_string),
        });
    }
    Ok(Json(Lineage {
        dashboard_slug: dashboard.slug,
        version: dashboard.version,
        nodes,
        edges,
    }))
}
