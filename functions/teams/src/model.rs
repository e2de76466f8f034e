//! Request and response bodies, and the domain values they parse into.

use base::{domain::Email, domain::Role, domain::TeamSettings};

use edge::{error::ApiError, error::FieldError};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

/// A team name: trimmed, 1 to 100 characters, no control characters.
#[derive(Debug, Clone)]
pub struct TeamName(String);

impl TeamName {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let s = raw.trim();
        let err = |m: &str| FieldError::new("name", m);
        if s.is_empty() {
            return Err(err("must not be empty"));
        }
        if s.chars().count() > 100 {
            return Err(err("must be at most 100 characters"));
        }
        if s.chars().any(char::is_control) {
            return Err(err("must not contain control characters"));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The slug a team of this name would like: lower-case ASCII words joined by hyphens.
    pub fn base_slug(&self) -> String {
        let slug = slug::slugify(&self.0);
        let mut out = String::new();
        for part in slug.split('-').filter(|p| !p.is_empty()) {
            if out.len() + part.len() + 1 > 48 {
                break;
            }
            if !out.is_empty() {
                out.push('-');
            }
            out.push_str(part);
        }
        if out.is_empty() {
            // A name with nothing transliterable, or one first word over 48 letters.
            out = slug
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .take(48)
                .collect();
        }
        if out.is_empty() {
            "team".to_owned()
        } else {
            out
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTeam {
    /// 1 to 100 characters. The slug is derived from it.
    #[schema(min_length = 1, max_length = 100, pattern = "\\S")]
    pub name: String,
    #[serde(default)]
    pub settings: Option<TeamSettings>,
}

pub struct NewTeam {
    pub name: TeamName,
    pub settings: TeamSettings,
}

impl TryFrom<CreateTeam> for NewTeam {
    type Error = ApiError;
    fn try_from(body: CreateTeam) -> Result<Self, ApiError> {
        let mut errors = Vec::new();
        let name = TeamName::parse(&body.name).map_err(|e| errors.push(e)).ok();
        let settings = body.settings.unwrap_or_default();
        errors.extend(settings.check());
        match name {
            Some(name) if errors.is_empty() => Ok(Self { name, settings }),
            _ => Err(ApiError::unprocessable(errors)),
        }
    }
}

/// A JSON merge patch (RFC 7396) of a team: absent keys are left alone; inside `settings`,
/// `null` removes a setting (back to its default).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchTeam {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<SettingsPatch>)]
    pub settings: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A merge patch of a team's settings (documentation of what [`PatchTeam::settings`]
/// accepts): each key sets that setting, `null` resets it to its default, an absent key
/// leaves it alone.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct SettingsPatch {
    /// See `TeamSettings.max_bytes_billed`.
    #[schema(minimum = 10_485_760, maximum = 100_000_000_000_000u64)]
    max_bytes_billed: Option<u64>,
    /// See `TeamSettings.max_result_bytes`.
    #[schema(minimum = 1024, maximum = 1_073_741_824)]
    max_result_bytes: Option<usize>,
    /// See `TeamSettings.daily_llm_usd`.
    #[schema(minimum = 0, maximum = 1_000_000)]
    daily_llm_usd: Option<f64>,
    /// See `TeamSettings.daily_warehouse_bytes`.
    #[schema(minimum = 10_485_760, maximum = 1_000_000_000_000_000u64)]
    daily_warehouse_bytes: Option<u64>,
    /// See `TeamSettings.daily_generation_runs_per_user`.
    #[schema(minimum = 0, maximum = 100_000)]
    daily_generation_runs_per_user: Option<u32>,
}

impl PatchTeam {
    /// The new name (if any) and the settings after applying the patch to `current`.
    pub fn apply(
        self,
        current: &TeamSettings,
    ) -> Result<(Option<TeamName>, TeamSettings), ApiError> {
        let mut errors = Vec::new();
        let name = self
            .name
            .as_deref()
            .map(TeamName::parse)
            .transpose()
            .map_err(|e| errors.push(e))
            .ok()
            .flatten();
        let mut settings = current.clone();
        if let Some(patch) = self.settings {
            let mut merged = match serde_json::to_value(current) {
                Ok(serde_json::Value::Object(m)) => m,
                _ => serde_json::Map::new(),
            };
            for (k, v) in patch {
                if v.is_null() {
                    merged.remove(&k);
                } else {
                    merged.insert(k, v);
                }
            }
            match edge::extract::parse_json::<TeamSettings>(
                &serde_json::to_vec(&merged).unwrap_or_default(),
            ) {
                Ok(s) => {
                    errors.extend(s.check());
                    settings = s;
                }
                Err(e) => errors.extend(e.errors.into_iter().map(|mut f| {
                    f.field = format!("settings.{}", f.field);
                    f
                })),
            }
        }
        if errors.is_empty() {
            Ok((name, settings))
        } else {
            Err(ApiError::unprocessable(errors))
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Team {
    pub id: Uuid,
    pub name: String,
    /// Unique across Bridge; derived from the name at creation.
    pub slug: String,
    pub settings: TeamSettings,
    /// Who created the team (its first admin); null once that user is gone.
    pub created_by: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// The caller's role in this team.
    pub role: Role,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TeamList {
    pub teams: Vec<Team>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    /// The person's email. They need not have signed in yet: the membership waits for
    /// their first sign-in with this (verified) address.
    pub email: String,
    pub role: Role,
}

impl AddMember {
    pub fn email(&self) -> Result<Email, ApiError> {
        Email::parse(&self.email)
            .map_err(|m| ApiError::unprocessable(vec![FieldError::new("email", m)]))
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMember {
    pub role: Role,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Member {
    pub user_id: Uuid,
    pub email: Option<String>,
    pub role: Role,
    /// True until the person signs in for the first time.
    pub pending: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub added_at: OffsetDateTime,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberList {
    pub members: Vec<Member>,
    pub next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slug(name: &str) -> String {
        TeamName::parse(name).expect("name").base_slug()
    }

    #[test]
    fn slugs_are_readable_and_bounded() {
        assert_eq!(slug("Data Platform"), "data-platform");
        assert_eq!(slug("  Café  Zürich!! "), "cafe-zurich");
        assert_eq!(slug("数据"), "shu-ju");
        assert_eq!(slug("🙂"), "slight-smile");
        assert_eq!(slug("---"), "team");
        let long = slug(&"word ".repeat(19));
        assert!(long.len() <= 48 && !long.ends_with('-'), "{long}");
        assert_eq!(slug(&"x".repeat(90)).len(), 48);
    }

    #[test]
    fn names_are_checked() {
        assert!(TeamName::parse("   ").is_err());
        assert!(TeamName::parse(&"n".repeat(101)).is_err());
        assert!(TeamName::parse("a\u{0007}b").is_err());
        assert_eq!(TeamName::parse("  Ops ").expect("ok").as_str(), "Ops");
    }

    #[test]
    fn settings_patches_merge_and_null_removes() {
        let current = TeamSettings {
            max_bytes_billed: Some(50_000_000),
            ..TeamSettings::default()
        };
        let patch: PatchTeam =
            serde_json::from_str(r#"{"settings":{"max_bytes_billed":null}}"#).expect("json");
        let (_, s) = patch.apply(&current).expect("ok");
        assert_eq!(s.max_bytes_billed, None);
        let patch: PatchTeam =
            serde_json::from_str(r#"{"settings":{"colour":"red"}}"#).expect("json");
        let e = patch.apply(&current).expect_err("unknown");
        assert_eq!(e.errors[0].field, "settings.colour");
        let patch: PatchTeam =
            serde_json::from_str(r#"{"settings":{"max_bytes_billed":5}}"#).expect("json");
        let e = patch.apply(&current).expect_err("range");
        assert_eq!(e.errors[0].field, "settings.max_bytes_billed");
    }
}
