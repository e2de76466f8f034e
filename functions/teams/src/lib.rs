//! The teams function: create and list teams, read and change them, manage their members.
//!
//! Roles: any member reads the team and its members; admins change the team and its
//! membership; anyone may leave. A non-member gets 404 on every route of a team.

pub mod model;
mod store;
pub mod usage;

use axum::{
    extract::{FromRef, State},
    http::{StatusCode, header},
    response::IntoResponse,
};
use edge::{
    ApiResult, CurrentUser, Edge, error::Problem, extract::Json, extract::Path, extract::Query,
    pagination::PageQuery,
};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use model::{
    AddMember, CreateTeam, Member, MemberList, NewTeam, PatchTeam, Team, TeamList, UpdateMember,
};

/// Every route of the teams function, in any state an [`Edge`] can be had from (the teams
/// function runs with the edge alone; `bridge serve` merges these into its own state).
pub fn router<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    Edge: FromRef<S>,
{
    OpenApiRouter::new()
        .routes(routes!(create_team, list_teams))
        .routes(routes!(get_team, patch_team))
        .routes(routes!(list_members, add_member))
        .routes(routes!(update_member, remove_member))
        .routes(routes!(team_usage))
}

/// The team's cost ledger (admins): every LLM call and warehouse job in the range, summed
/// per day, dashboard, user or kind, with today's spending against the daily budgets.
#[utoipa::path(get, path = "/v1/teams/{team_id}/usage", tag = "teams",
    params(("team_id" = Uuid, Path), usage::UsageQuery),
    responses(
        (status = 200, body = usage::Usage),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
))]
async fn team_usage(
    State(state): State<Edge>,
    user: CurrentUser,
    Path(team_id): Path<Uuid>,
    Query(q): Query<usage::UsageQuery>,
) -> ApiResult<Json<usage::Usage>> {
    let ask = q.check()?;
    let client = state.db.get().await?;
    Ok(Json(usage::usage(&client, team_id, user.id, ask).await?))
}

/// Creates a team; the caller becomes its admin. Its slug comes from the name, with a short
/// suffix when another team already has that slug.
#[utoipa::path(post, path = "/v1/teams", tag = "teams", request_body = CreateTeam, responses(
    (status = 201, body = Team, description = "Created; `Location` names it"),
    (status = 400, body = Problem, content_type = "application/problem+json"),
    (status = 401, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
async fn create_team(
    State(state): State<Edge>,
    user: CurrentUser,
    Json(body): Json<CreateTeam>,
) -> ApiResult<impl IntoResponse> {
    let new = NewTeam::try_from(body)?;
    let mut client = state.db.get().await?;
    let team = store::create_team(&mut client, user.id, &new).await?;
    tracing::info!(team_id = %team.id, slug = %team.slug, "team created");
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/v1/teams/{}", team.id))],
        Json(team),
    ))
}

/// Lists the caller's teams, by name.
#[utoipa::path(get, path = "/v1/teams", tag = "teams", params(PageQuery), responses(
    (status = 200, body = TeamList),
    (status = 400, body = Problem, content_type = "application/problem+json"),
    (status = 401, body = Problem, content_type = "application/problem+json"),
))]
async fn list_teams(
    State(state): State<Edge>,
    user: CurrentUser,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<TeamList>> {
    let page = page.parse()?;
    let client = state.db.get().await?;
    let (teams, next_cursor) = store::list_teams(&client, user.id, &page).await?;
    Ok(Json(TeamList { teams, next_cursor }))
}

/// Reads a team the caller belongs to.
#[utoipa::path(get, path = "/v1/teams/{team_id}", tag = "teams",
    params(("team_id" = Uuid, Path)),
    responses(
        (status = 200, body = Team),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
))]
async fn get_team(
    State(state): State<Edge>,
    user: CurrentUser,
    Path(team_id): Path<Uuid>,
) -> ApiResult<Json<Team>> {
    let client = state.db.get().await?;
    Ok(Json(store::get_team(&client, team_id, user.id).await?))
}

/// Renames a team or changes its settings (admin). A JSON merge patch: absent keys stay;
/// a `null` setting returns to its default.
#[utoipa::path(patch, path = "/v1/teams/{team_id}", tag = "teams",
    params(("team_id" = Uuid, Path)), request_body = PatchTeam,
    responses(
        (status = 200, body = Team),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
))]
async fn patch_team(
    State(state): State<Edge>,
    user: CurrentUser,
    Path(team_id): Path<Uuid>,
    Json(patch): Json<PatchTeam>,
) -> ApiResult<Json<Team>> {
    let mut client = state.db.get().await?;
    let team = store::patch_team(&mut client, team_id, user.id, patch).await?;
    // The team's caps are part of what its dashboards' cached answers are made under.
    state.access_epoch.changed();
    Ok(Json(team))
}

/// Lists a team's members in the order they joined.
#[utoipa::path(get, path = "/v1/teams/{team_id}/members", tag = "members",
    params(("team_id" = Uuid, Path), PageQuery),
    responses(
        (status = 200, body = MemberList),
        (status = 404, body = Problem, content_type = "application/problem+json"),
))]
async fn list_members(
    State(state): State<Edge>,
    user: CurrentUser,
    Path(team_id): Path<Uuid>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<MemberList>> {
    let page = page.parse()?;
    let client = state.db.get().await?;
    let (members, next_cursor) = store::list_members(&client, team_id, user.id, &page).await?;
    Ok(Json(MemberList {
        members,
        next_cursor,
    }))
}

/// Adds someone by email with a role (admin). They need not have signed in yet.
#[utoipa::path(post, path = "/v1/teams/{team_id}/members", tag = "members",
    params(("team_id" = Uuid, Path)), request_body = AddMember,
    responses(
        (status = 201, body = Member),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json", description = "Already a member"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
))]
async fn add_member(
    State(state): State<Edge>,
    user: CurrentUser,
    Path(team_id): Path<Uuid>,
    Json(body): Json<AddMember>,
) -> ApiResult<impl IntoResponse> {
    let email = body.email()?;
    let mut client = state.db.get().await?;
    let member = store::add_member(&mut client, team_id, user.id, &email, body.role).await?;
    Ok((StatusCode::CREATED, Json(member)))
}

/// Changes a member's role (admin). The last admin cannot be demoted.
#[utoipa::path(patch, path = "/v1/teams/{team_id}/members/{user_id}", tag = "members",
    params(("team_id" = Uuid, Path), ("user_id" = Uuid, Path)), request_body = UpdateMember,
    responses(
        (status = 200, body = Member),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json", description = "Last admin"),
))]
async fn update_member(
    State(state): State<Edge>,
    user: CurrentUser,
    Path((team_id, member_id)): Path<(Uuid, Uuid)>,
    Json(body): Json<UpdateMember>,
) -> ApiResult<Json<Member>> {
    let mut client = state.db.get().await?;
    let member = store::update_member(&mut client, team_id, user.id, member_id, body.role).await?;
    state.access_epoch.changed();
    Ok(Json(member))
}

/// Removes a member (admin), or leaves the team (any member, their own id). The last admin
/// cannot be removed.
#[utoipa::path(delete, path = "/v1/teams/{team_id}/members/{user_id}", tag = "members",
    params(("team_id" = Uuid, Path), ("user_id" = Uuid, Path)),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json", description = "Last admin"),
))]
async fn remove_member(
    State(state): State<Edge>,
    user: CurrentUser,
    Path((team_id, member_id)): Path<(Uuid, Uuid)>,
) -> ApiResult<StatusCode> {
    let mut client = state.db.get().await?;
    store::remove_member(&mut client, team_id, user.id, member_id).await?;
    state.access_epoch.changed();
    Ok(StatusCode::NO_CONTENT)
}
