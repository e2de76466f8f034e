//! SQL for teams and members. Every query that reads a team also proves the caller is in
//! it, so a non-member cannot tell a stranger's team from no team at all.

use edge::{
    ApiError, ApiResult, pagination::Page, tenancy::require, tenancy::team_not_found,
    tenancy::team_role,
};

use base::{crypto::random_bytes, domain::Email, domain::Role, domain::TeamSettings};

use serde::{Deserialize, Serialize};
use storage::{db::Client, db::Transaction};
use time::OffsetDateTime;
use tokio_postgres::{Row, types::Json};
use uuid::Uuid;

use crate::{model::Member, model::NewTeam, model::Team, model::TeamName};

const TEAM_COLUMNS: &str =
    "t.id, t.name, t.slug, t.settings, t.created_by, t.created_at, t.updated_at, m.role";

fn team_from_row(row: &Row) -> Team {
    let Json(settings): Json<TeamSettings> = row.get("settings");
    Team {
        id: row.get("id"),
        name: row.get("name"),
        slug: row.get("slug"),
        settings,
        created_by: row.get("created_by"),
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
        role: Role::parse(row.get("role")).unwrap_or(Role::Viewer),
    }
}

fn member_from_row(row: &Row) -> Member {
    Member {
        user_id: row.get("user_id"),
        email: row.get("email"),
        role: Role::parse(row.get("role")).unwrap_or(Role::Viewer),
        pending: row.get("pending"),
        added_at: row.get("added_at"),
    }
}

/// Four lower-case base-36 characters, to tell apart teams whose names slug alike.
fn slug_suffix() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    random_bytes::<4>()
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

pub async fn create_team(client: &mut Client, user_id: Uuid, new: &NewTeam) -> ApiResult<Team> {
    let tx = client.transaction().await?;
    let base = new.name.base_slug();
    for attempt in 0..8 {
        let slug = if attempt == 0 {
            base.clone()
        } else {
            format!("{base}-{}", slug_suffix())
        };
        let id = Uuid::now_v7();
        let inserted = tx
            .query_opt(
                "INSERT INTO teams (id, name, slug, created_by, settings) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (slug) DO NOTHING RETURNING created_at, updated_at",
                &[&id, &new.name.as_str(), &slug, &user_id, &Json(&new.settings)],
            )
            .await?;
        let Some(row) = inserted else { continue };
        tx.execute(
            "INSERT INTO team_members (team_id, user_id, role) VALUES ($1, $2, 'admin')",
            &[&id, &user_id],
        )
        .await?;
        tx.commit().await?;
        return Ok(Team {
            id,
            name: new.name.as_str().to_owned(),
            slug,
            settings: new.settings.clone(),
            created_by: Some(user_id),
            created_at: row.get(0),
            updated_at: row.get(1),
            role: Role::Admin,
        });
    }
    Err(ApiError::conflict(
        "slug_unavailable",
        "no free slug could be found for this name; try another name",
    ))
}

#[derive(Debug, Serialize, Deserialize)]
pub struct TeamCursor(String, Uuid);

pub async fn list_teams(
    client: &Client,
    user_id: Uuid,
    page: &Page<TeamCursor>,
) -> ApiResult<(Vec<Team>, Option<String>)> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {TEAM_COLUMNS} FROM team_members m JOIN teams t ON t.id = m.team_id \
             WHERE m.user_id = $1 AND ($2::text IS NULL OR (t.name, t.id) > ($2, $3)) \
             ORDER BY t.name, t.id LIMIT $4"
        ))
        .await?;
    let (after_name, after_id) = match &page.after {
        Some(TeamCursor(n, i)) => (Some(n.as_str()), Some(*i)),
        None => (None, None),
    };
    let rows = client
        .query(
            &stmt,
            &[&user_id, &after_name, &after_id, &page.fetch_limit()],
        )
        .await?;
    let mut teams: Vec<Team> = rows.iter().map(team_from_row).collect();
    let next = page.finish(&mut teams, |t| TeamCursor(t.name.clone(), t.id));
    Ok((teams, next))
}

pub async fn get_team(client: &Client, team_id: Uuid, user_id: Uuid) -> ApiResult<Team> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {TEAM_COLUMNS} FROM teams t \
             JOIN team_members m ON m.team_id = t.id AND m.user_id = $2 WHERE t.id = $1"
        ))
        .await?;
    client
        .query_opt(&stmt, &[&team_id, &user_id])
        .await?
        .map(|r| team_from_row(&r))
        .ok_or_else(team_not_found)
}

pub async fn patch_team(
    client: &mut Client,
    team_id: Uuid,
    user_id: Uuid,
    patch: crate::model::PatchTeam,
) -> ApiResult<Team> {
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            &format!(
                "SELECT {TEAM_COLUMNS} FROM teams t \
                 JOIN team_members m ON m.team_id = t.id AND m.user_id = $2 \
                 WHERE t.id = $1 FOR UPDATE OF t"
            ),
            &[&team_id, &user_id],
        )
        .await?;
    let current = row.as_ref().map(team_from_row);
    require(
        current.as_ref().map(|t| t.role),
        Role::Admin,
        team_not_found,
    )?;
    let Some(current) = current else {
        return Err(team_not_found());
    };
    let (name, settings): (Option<TeamName>, TeamSettings) = patch.apply(&current.settings)?;
    if name.as_ref().is_none_or(|n| n.as_str() == current.name) && settings == current.settings {
        return Ok(current);
    }
    let row = tx
        .query_one(
            "UPDATE teams SET name = COALESCE($2, name), settings = $3, updated_at = now() \
             WHERE id = $1 RETURNING name, settings, updated_at",
            &[
                &team_id,
                &name.as_ref().map(TeamName::as_str),
                &Json(&settings),
            ],
        )
        .await?;
    tx.commit().await?;
    let Json(settings): Json<TeamSettings> = row.get(1);
    Ok(Team {
        name: row.get(0),
        settings,
        updated_at: row.get(2),
        ..current
    })
}

#[derive(Debug, Serialize, Deserialize)]
pub struct MemberCursor(#[serde(with = "time::serde::rfc3339")] OffsetDateTime, Uuid);

const MEMBER_COLUMNS: &str =
    "m.user_id, u.email, m.role, u.subject IS NULL AS pending, m.created_at AS added_at";

pub async fn list_members(
    client: &Client,
    team_id: Uuid,
    user_id: Uuid,
    page: &Page<MemberCursor>,
) -> ApiResult<(Vec<Member>, Option<String>)> {
    require(
        team_role(client, team_id, user_id).await?,
        Role::Viewer,
        team_not_found,
    )?;
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {MEMBER_COLUMNS} FROM team_members m JOIN users u ON u.id = m.user_id \
             WHERE m.team_id = $1 AND ($2::timestamptz IS NULL OR (m.created_at, m.user_id) > ($2, $3)) \
             ORDER BY m.created_at, m.user_id LIMIT $4"
        ))
        .await?;
    let (after_at, after_id) = match &page.after {
        Some(MemberCursor(at, id)) => (Some(*at), Some(*id)),
        None => (None, None),
    };
    let rows = client
        .query(
            &stmt,
            &[&team_id, &after_at, &after_id, &page.fetch_limit()],
        )
        .await?;
    let mut members: Vec<Member> = rows.iter().map(member_from_row).collect();
    let next = page.finish(&mut members, |m| MemberCursor(m.added_at, m.user_id));
    Ok((members, next))
}

/// Locks the team row so that concurrent membership changes are serialised (two admins
/// demoting each other at once must not leave the team with none), and returns the
/// caller's role.
async fn lock_team(tx: &Transaction<'_>, team_id: Uuid, user_id: Uuid) -> ApiResult<Option<Role>> {
    let exists = tx
        .query_opt("SELECT 1 FROM teams WHERE id = $1 FOR UPDATE", &[&team_id])
        .await?;
    if exists.is_none() {
        return Ok(None);
    }
    team_role(tx, team_id, user_id).await
}

pub async fn add_member(
    client: &mut Client,
    team_id: Uuid,
    caller: Uuid,
    email: &Email,
    role: Role,
) -> ApiResult<Member> {
    let tx = client.transaction().await?;
    require(
        lock_team(&tx, team_id, caller).await?,
        Role::Admin,
        team_not_found,
    )?;
    // The person's account if they have signed in, else a placeholder their first sign-in claims.
    let user = tx
        .query_one(
            "WITH found AS ( \
                 SELECT id, subject IS NULL AS pending FROM users WHERE email = $1 \
                 ORDER BY subject IS NULL, last_seen_at DESC NULLS LAST LIMIT 1 \
             ), created AS ( \
                 INSERT INTO users (id, email) SELECT $2, $1 WHERE NOT EXISTS (SELECT 1 FROM found) \
                 ON CONFLICT (email) WHERE subject IS NULL DO UPDATE SET email = EXCLUDED.email \
                 RETURNING id, true AS pending \
             ) SELECT id, pending FROM found UNION ALL SELECT id, pending FROM created",
            &[&email.as_str(), &Uuid::now_v7()],
        )
        .await?;
    let user_id: Uuid = user.get(0);
    let inserted = tx
        .query_opt(
            "INSERT INTO team_members (team_id, user_id, role) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING RETURNING created_at",
            &[&team_id, &user_id, &role.as_str()],
        )
        .await?;
    let Some(row) = inserted else {
        return Err(ApiError::conflict(
            "already_member",
            format!("{email} is already a member of this team"),
        ));
    };
    tx.commit().await?;
    Ok(Member {
        user_id,
        email: Some(email.to_string()),
        role,
        pending: user.get(1),
        added_at: row.get(0),
    })
}

fn member_not_found() -> ApiError {
    ApiError::not_found("member_not_found", "that user is not a member of this team")
}

fn last_admin() -> ApiError {
    ApiError::conflict(
        "last_admin",
        "a team must keep at least one admin; make someone else admin first",
    )
}

/// The target's current role, and whether they are the team's only admin.
async fn target_role(tx: &Transaction<'_>, team_id: Uuid, target: Uuid) -> ApiResult<(Role, bool)> {
    let row = tx
        .query_opt(
            "SELECT role, (SELECT count(*) FROM team_members WHERE team_id = $1 AND role = 'admin') \
             FROM team_members WHERE team_id = $1 AND user_id = $2",
            &[&team_id, &target],
        )
        .await?
        .ok_or_else(member_not_found)?;
    let role = Role::parse(row.get(0)).unwrap_or(Role::Viewer);
    let admins: i64 = row.get(1);
    Ok((role, role == Role::Admin && admins <= 1))
}

pub async fn update_member(
    client: &mut Client,
    team_id: Uuid,
    caller: Uuid,
    target: Uuid,
    role: Role,
) -> ApiResult<Member> {
    let tx = client.transaction().await?;
    require(
        lock_team(&tx, team_id, caller).await?,
        Role::Admin,
        team_not_found,
    )?;
    let (_, only_admin) = target_role(&tx, team_id, target).await?;
    if only_admin && role != Role::Admin {
        return Err(last_admin());
    }
    let row = tx
        .query_one(
            &format!(
                "WITH m AS (UPDATE team_members SET role = $3, updated_at = now() \
                 WHERE team_id = $1 AND user_id = $2 RETURNING *) \
                 SELECT {MEMBER_COLUMNS} FROM m JOIN users u ON u.id = m.user_id"
            ),
            &[&team_id, &target, &role.as_str()],
        )
        .await?;
    tx.commit().await?;
    Ok(member_from_row(&row))
}

/// Admins remove anyone; any member may remove themselves (leave). Never the last admin.
pub async fn remove_member(
    client: &mut Client,
    team_id: Uuid,
    caller: Uuid,
    target: Uuid,
) -> ApiResult<()> {
    let tx = client.transaction().await?;
    let needed = if caller == target {
        Role::Viewer
    } else {
        Role::Admin
    };
    require(
        lock_team(&tx, team_id, caller).await?,
        needed,
        team_not_found,
    )?;
    let (_, only_admin) = target_role(&tx, team_id, target).await?;
    if only_admin {
        return Err(last_admin());
    }
    tx.execute(
        "DELETE FROM team_members WHERE team_id = $1 AND user_id = $2",
        &[&team_id, &target],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
