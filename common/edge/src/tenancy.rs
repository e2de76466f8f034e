//! Team membership checks shared by every function.
//!
//! The rule: a caller who is not a member of an object's team gets 404, exactly as if the
//! object did not exist; a member without the role gets 403.

use uuid::Uuid;

use crate::{auth::CurrentUser, error::ApiError, error::ApiResult};

use base::domain::Role;

/// The caller's role in `team_id`, if they are a member.
pub async fn team_role(
    client: &impl deadpool_postgres::GenericClient,
    team_id: Uuid,
    user_id: Uuid,
) -> ApiResult<Option<Role>> {
    let stmt = client
        .prepare_cached("SELECT role FROM team_members WHERE team_id = $1 AND user_id = $2")
        .await?;
    let row = client.query_opt(&stmt, &[&team_id, &user_id]).await?;
    Ok(row.and_then(|r| Role::parse(r.get(0))))
}

/// Checks that `role` (the caller's role in the object's team, `None` when not a member)
/// is at least `needed`. `not_found` is the error for a non-member.
pub fn require(
    role: Option<Role>,
    needed: Role,
    not_found: impl FnOnce() -> ApiError,
) -> ApiResult<Role> {
    match role {
        None => Err(not_found()),
        Some(r) if r < needed => Err(ApiError::forbidden(format!(
            "this needs the {needed} role in the team; yours is {r}"
        ))),
        Some(r) => Ok(r),
    }
}

pub fn team_not_found() -> ApiError {
    ApiError::not_found("team_not_found", "no such team")
}

/// Checks the caller's role in a team, answering 404 to non-members.
pub async fn require_team_role(
    client: &impl deadpool_postgres::GenericClient,
    team_id: Uuid,
    user: &CurrentUser,
    needed: Role,
) -> ApiResult<Role> {
    require(
        team_role(client, team_id, user.id).await?,
        needed,
        team_not_found,
    )
}

/// A count this process moves on whenever it changes who may read what: a member added,
/// removed or given another role, a team's settings, a dashboard saved or deleted, a
/// connection deleted. Caches of access answers (`services::serving`'s) remember the count
/// they were made at and are not trusted once it moved, so this process sees its own
/// changes at once; other processes see them when their entries expire.
#[derive(Clone, Default, Debug)]
pub struct AccessEpoch(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl AccessEpoch {
    /// The count now.
    pub fn now(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Something changed who may read what: no access answer made before is trusted.
    pub fn changed(&self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }
}
