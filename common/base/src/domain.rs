//! Small domain newtypes shared by several functions ("parse, don't validate").

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A membership role. Ordered: each role can do everything the one before it can.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads dashboards and their data.
    Viewer,
    /// Also writes dashboards, chats, generates, validates and scans connections.
    Editor,
    /// Also manages connections, members, team settings and precompute.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Editor => "editor",
            Self::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "viewer" => Some(Self::Viewer),
            "editor" => Some(Self::Editor),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An email address, trimmed and lower-cased. Checked only for shape: the identity
/// provider, not Bridge, proves that someone owns it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let s = raw.trim().to_lowercase();
        if s.is_empty() {
            return Err("must not be empty");
        }
        if s.len() > 254 {
            return Err("must be at most 254 characters");
        }
        let Some((local, domain)) = s.split_once('@') else {
            return Err("must be an email address like name@example.com");
        };
        let plain = |p: &str| {
            !p.is_empty()
                && !p
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '@')
        };
        if !plain(local)
            || !plain(domain)
            || !domain.contains('.')
            || domain.starts_with('.')
            || domain.ends_with('.')
        {
            return Err("must be an email address like name@example.com");
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Per-team settings, stored as JSONB on `teams.settings`. Unknown keys are refused.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TeamSettings {
    /// Byte cap for any one warehouse query (dry-run estimate and `maximumBytesBilled`).
    /// Default 100 MB ([`DEFAULT_MAX_BYTES_BILLED`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 10_485_760, maximum = 100_000_000_000_000u64)]
    pub max_bytes_billed: Option<u64>,
    /// The most bytes one query's result may take (lowers `WAREHOUSE_MAX_RESULT_BYTES`,
    /// 4 MiB by default, never raises it); a larger result answers `result_too_large`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1024, maximum = 1_073_741_824)]
    pub max_result_bytes: Option<usize>,
    /// Budget: dollars of LLM calls per UTC day, all the team's chat and generation runs
    /// together. When spent, new runs answer 429 `budget_exceeded` until midnight UTC and
    /// runs under way stop at their next step. None: no budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 1_000_000)]
    pub daily_llm_usd: Option<f64>,
    /// Budget: bytes the team's warehouse jobs may process per UTC day (tiles, precompute,
    /// the agent's queries; dry runs are free and not counted). When spent, queries answer
    /// `budget_exceeded` (cached results are still served), precompute skips, and new
    /// chat and generation runs answer 429. None: no budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 10_485_760, maximum = 1_000_000_000_000_000u64)]
    pub daily_warehouse_bytes: Option<u64>,
    /// Budget: generation runs (`POST /v1/dashboards/generate`) each member may start per
    /// UTC day. None: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 100_000)]
    pub daily_generation_runs_per_user: Option<u32>,
}

pub const DEFAULT_MAX_BYTES_BILLED: u64 = 100_000_000;
/// BigQuery bills at least 10 MiB per query, so a lower cap would refuse every query.
pub const MIN_MAX_BYTES_BILLED: u64 = 10_485_760;

impl TeamSettings {
    /// Range checks serde cannot express; each problem names its field.
    pub fn check(&self) -> Vec<crate::FieldError> {
        let mut errors = Vec::new();
        if let Some(b) = self.max_bytes_billed
            && !(MIN_MAX_BYTES_BILLED..=100_000_000_000_000).contains(&b)
        {
            errors.push(crate::FieldError::new(
                "settings.max_bytes_billed",
                "must be between 10485760 (10 MiB, BigQuery's least billable query) and 100000000000000 (100 TB)",
            ));
        }
        if let Some(b) = self.max_result_bytes
            && !(1024..=1_073_741_824).contains(&b)
        {
            errors.push(crate::FieldError::new(
                "settings.max_result_bytes",
                "must be between 1024 and 1073741824 (1 GiB); the server's own cap applies above it",
            ));
        }
        if let Some(usd) = self.daily_llm_usd
            && !(usd.is_finite() && (0.0..=1_000_000.0).contains(&usd))
        {
            errors.push(crate::FieldError::new(
                "settings.daily_llm_usd",
                "must be a number of dollars between 0 and 1000000",
            ));
        }
        if let Some(b) = self.daily_warehouse_bytes
            && !(MIN_MAX_BYTES_BILLED..=1_000_000_000_000_000).contains(&b)
        {
            errors.push(crate::FieldError::new(
                "settings.daily_warehouse_bytes",
                "must be between 10485760 (10 MiB) and 1000000000000000 (1 PB)",
            ));
        }
        if let Some(n) = self.daily_generation_runs_per_user
            && n > 100_000
        {
            errors.push(crate::FieldError::new(
                "settings.daily_generation_runs_per_user",
                "must be between 0 and 100000",
            ));
        }
        errors
    }

    /// Whether any daily budget is set (the checks cost a query only then).
    pub fn has_budget(&self) -> bool {
        self.daily_llm_usd.is_some()
            || self.daily_warehouse_bytes.is_some()
            || self.daily_generation_runs_per_user.is_some()
    }

    pub fn max_bytes_billed(&self) -> u64 {
        self.max_bytes_billed.unwrap_or(DEFAULT_MAX_BYTES_BILLED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Viewer < Role::Editor && Role::Editor < Role::Admin);
        for r in [Role::Viewer, Role::Editor, Role::Admin] {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("owner"), None);
    }

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            Email::parse("  Ada@Example.COM ").map(|e| e.0),
            Ok("ada@example.com".into())
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "a b@example.com",
            "ada@example",
            "a@@b.com",
            "ada@.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(250))).is_err());
    }
}
