//! The dashboard spec (v1) as Rust types. The JSON Schema in `common/dashboard/schemas/dashboard.v1.json`
//! ([`SCHEMA_JSON`]) is the authority; these types mirror it field for field (unknown keys are
//! refused by both), and the tests check that every valid sample survives the round trip.
//!
//! A spec only exists after [`super::validate::parse`] has checked it, so the types carry
//! little validation of their own: what they do parse (durations, parameter values) they parse
//! strictly.

use std::{fmt, str::FromStr, time::Duration};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::{
    Date, OffsetDateTime, format_description::well_known::Rfc3339, macros::format_description,
};
use uuid::Uuid;

use base::ParamValue;

/// The JSON Schema of the format (draft 2020-12), served by the API and shown by editors.
pub const SCHEMA_JSON: &str = include_str!("../schemas/dashboard.v1.json");
/// The schema's `$id`, also what the `# yaml-language-server: $schema=` line names.
pub const SCHEMA_ID: &str = "https://bridge.example/v1/schemas/dashboard.json";

/// Cache TTL when the YAML sets none.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(24 * 3600);
/// The shortest `refresh.every` accepted.
pub const MIN_REFRESH: Duration = Duration::from_secs(5 * 60);
/// The shortest `cache.ttl` accepted.
pub const MIN_CACHE_TTL: Duration = Duration::from_secs(60);
/// The longest `cache.ttl` accepted.
pub const MAX_CACHE_TTL: Duration = Duration::from_secs(30 * 86400);
/// The largest `sql` accepted, in bytes.
pub const MAX_SQL_BYTES: usize = 100 * 1024;
/// The grid's width in columns.
pub const GRID_COLUMNS: u32 = 12;

/// A whole dashboard, as written in YAML.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardSpec {
    /// Always 1.
    #[serde(deserialize_with = "whole_u32")]
    pub version: u32,
    pub kind: Kind,
    pub slug: String,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub view_type: ViewType,
    /// The warehouse connection every query runs on (decides the team, dialect and catalog).
    pub connection: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub theme: Option<Theme>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<Refresh>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<ParameterSpec>,
    pub queries: Vec<QuerySpec>,
    pub layout: Vec<Tile>,
}

impl DashboardSpec {
    /// How long cached results stay fresh: `cache.ttl`, else 24 h.
    pub fn cache_ttl(&self) -> Duration {
        self.cache.as_ref().map_or(DEFAULT_CACHE_TTL, |c| c.ttl.0)
    }

    /// The precompute cadence, when the dashboard asks for one.
    pub fn refresh_every(&self) -> Option<Duration> {
        self.refresh.as_ref().map(|r| r.every.0)
    }

    /// `theme.color`, else neutral.
    pub fn theme_color(&self) -> ThemeColor {
        self.theme.as_ref().map(|t| t.color).unwrap_or_default()
    }

    pub fn query(&self, id: &str) -> Option<&QuerySpec> {
        self.queries.iter().find(|q| q.id == id)
    }

    pub fn parameter(&self, id: &str) -> Option<&ParameterSpec> {
        self.parameters.iter().find(|p| p.id == id)
    }

    pub fn tile(&self, id: &str) -> Option<&Tile> {
        self.layout.iter().find(|t| t.id == id)
    }
}

/// `kind: dashboard`, the only kind so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Dashboard,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ViewType {
    #[default]
    Analytical,
    Operational,
    Strategic,
}

impl ViewType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Analytical => "analytical",
            Self::Operational => "operational",
            Self::Strategic => "strategic",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Theme {
    pub color: ThemeColor,
}

/// Monotone (neutral) by default; the others for dashboards whose colour means something.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThemeColor {
    #[default]
    Neutral,
    Slate,
    Blue,
    Green,
    Amber,
    Red,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refresh {
    pub every: DurationSpec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSpec {
    pub ttl: DurationSpec,
}

/// A duration written as a whole number of minutes, hours or days (`15m`, `24h`, `7d`).
/// Serialises in the largest unit that divides it exactly (`24h` comes back as `1d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DurationSpec(pub Duration);

impl FromStr for DurationSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a duration like 15m, 24h or 7d");
        let unit = match s.as_bytes().last() {
            Some(b'm') => 60,
            Some(b'h') => 3600,
            Some(b'd') => 86400,
            _ => return Err(bad()),
        };
        let digits = &s[..s.len() - 1];
        if digits.is_empty()
            || digits.starts_with('0')
            || !digits.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        let n: u64 = digits.parse().map_err(|_| bad())?;
        let secs = n
            .checked_mul(unit)
            .ok_or_else(|| format!("`{s}` is too long a duration"))?;
        Ok(Self(Duration::from_secs(secs)))
    }
}

impl fmt::Display for DurationSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        if secs != 0 && secs.is_multiple_of(86400) {
            write!(f, "{}d", secs / 86400)
        } else if secs != 0 && secs.is_multiple_of(3600) {
            write!(f, "{}h", secs / 3600)
        } else {
            write!(f, "{}m", secs / 60)
        }
    }
}

impl Serialize for DurationSpec {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DurationSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A typed value the viewer can set, bound as a query parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParameterSpec {
    pub id: String,
    pub r#type: ParamType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<serde_json::Value>>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl ParameterSpec {
    /// The value to bind for this parameter given what the viewer passed (a query-string
    /// value, if any): the passed value, else the default. `Ok(None)` when neither exists and
    /// the parameter is optional. Errors read as messages for the viewer.
    pub fn resolve(&self, raw: Option<&str>) -> Result<Option<ParamValue>, String> {
        let value = match raw {
            Some(raw) => self
                .r#type
                .parse_value(raw)
                .map_err(|e| format!("parameter `{}`: {e}", self.id))?,
            None => match &self.default {
                Some(default) => self
                    .r#type
                    .from_json(default)
                    .map_err(|e| format!("parameter `{}`: default {e}", self.id))?,
                None if self.required => {
                    return Err(format!("parameter `{}` is required", self.id));
                }
                None => return Ok(None),
            },
        };
        if let Some(allowed) = &self.allowed {
            let ok = allowed
                .iter()
                .any(|a| self.r#type.from_json(a).is_ok_and(|a| a == value));
            if !ok {
                let list: Vec<String> = allowed.iter().map(json_inline).collect();
                return Err(format!(
                    "parameter `{}` must be one of {}",
                    self.id,
                    list.join(", ")
                ));
            }
        }
        Ok(Some(value))
    }
}

fn json_inline(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    String,
    Int,
    Float,
    Bool,
    /// `YYYY-MM-DD`.
    Date,
    /// RFC 3339 with an offset.
    Timestamp,
}

impl ParamType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Int => "int",
            Self::Float => "float",
            Self::Bool => "bool",
            Self::Date => "date",
            Self::Timestamp => "timestamp",
        }
    }

    /// Parses a value as it arrives in a query string (`?region=EMEA&days=30`).
    /// Booleans accept `true`/`false`/`1`/`0` (any case).
    pub fn parse_value(&self, raw: &str) -> Result<ParamValue, String> {
        match self {
            Self::String => Ok(ParamValue::String(raw.to_owned())),
            Self::Int => raw
                .trim()
                .parse::<i64>()
                .map(ParamValue::Int)
                .map_err(|_| format!("`{raw}` is not an integer")),
            Self::Float => match raw.trim().parse::<f64>() {
                Ok(f) if f.is_finite() => Ok(ParamValue::Float(f)),
                _ => Err(format!("`{raw}` is not a number")),
            },
            Self::Bool => match raw.trim().to_ascii_lowercase().as_str() {
                "true" | "1" => Ok(ParamValue::Bool(true)),
                "false" | "0" => Ok(ParamValue::Bool(false)),
                _ => Err(format!("`{raw}` is not a boolean (true or false)")),
            },
            Self::Date => parse_date(raw.trim()).map(ParamValue::Date),
            Self::Timestamp => parse_timestamp(raw.trim()).map(ParamValue::Timestamp),
        }
    }

    /// Converts a value written in the YAML (a default, an allowed value).
    pub fn from_json(&self, v: &serde_json::Value) -> Result<ParamValue, String> {
        use serde_json::Value as J;
        let found = || format!("expected {}, found {}", self.describe(), describe_json(v));
        match (self, v) {
            (Self::String, J::String(s)) => Ok(ParamValue::String(s.clone())),
            (Self::Int, J::Number(n)) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => Ok(ParamValue::Int(i)),
                // 5.0 is an integer to JSON Schema; accept it here too.
                (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 =>
                {
                    #[allow(clippy::cast_possible_truncation)]
                    Ok(ParamValue::Int(f as i64))
                }
                _ => Err(found()),
            },
            (Self::Float, J::Number(n)) => n.as_f64().map(ParamValue::Float).ok_or_else(found),
            (Self::Bool, J::Bool(b)) => Ok(ParamValue::Bool(*b)),
            (Self::Date, J::String(s)) => parse_date(s).map(ParamValue::Date),
            (Self::Timestamp, J::String(s)) => parse_timestamp(s).map(ParamValue::Timestamp),
            _ => Err(found()),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::String => "a string",
            Self::Int => "an integer",
            Self::Float => "a number",
            Self::Bool => "true or false",
            Self::Date => "a date (YYYY-MM-DD)",
            Self::Timestamp => "an RFC 3339 timestamp",
        }
    }
}

fn describe_json(v: &serde_json::Value) -> String {
    use serde_json::Value as J;
    match v {
        J::Null => "null".into(),
        J::Bool(b) => format!("the boolean {b}"),
        J::Number(n) => format!("the number {n}"),
        J::String(s) => format!("the string \"{s}\""),
        J::Array(_) => "a list".into(),
        J::Object(_) => "a mapping".into(),
    }
}

fn parse_date(s: &str) -> Result<Date, String> {
    // `[year]` also reads a sign (`+2025-01-31`, `-0001-01-01`), which YYYY-MM-DD has not.
    s.bytes()
        .next()
        .filter(u8::is_ascii_digit)
        .and_then(|_| Date::parse(s, format_description!("[year]-[month]-[day]")).ok())
        .ok_or_else(|| format!("`{s}` is not a date (YYYY-MM-DD)"))
}

fn parse_timestamp(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &Rfc3339)
        .map_err(|_| format!("`{s}` is not an RFC 3339 timestamp (e.g. 2025-01-31T12:00:00Z)"))
}

/// One named SQL query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuerySpec {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// May contain `{{ ref("query") }}` and `{{ param("name") }}` (see [`super::template`]).
    pub sql: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TileType {
    Kpi,
    Line,
    Bar,
    Area,
    Pie,
    Table,
    Text,
}

impl TileType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kpi => "kpi",
            Self::Line => "line",
            Self::Bar => "bar",
            Self::Area => "area",
            Self::Pie => "pie",
            Self::Table => "table",
            Self::Text => "text",
        }
    }

    /// Every type but `text` shows a query's result.
    pub fn needs_query(self) -> bool {
        self != Self::Text
    }
}

/// A tile on the 12-column grid. The type-specific fields (`value`, `x`, `y`, `series`,
/// `label`, `columns`, `text`) are only present for the types that use them; the schema
/// refuses the others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tile {
    pub id: String,
    pub r#type: TileType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    pub position: Position,
    /// kpi: the number's column; pie: the slice size's column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// line, bar, area: the horizontal axis' column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// line, bar, area: the plotted column or columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<Columns>,
    /// line, bar, area: one line/bar/area per distinct value of this column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series: Option<String>,
    /// pie: the slice name's column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// table: the columns shown, in order (all when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
    /// text: markdown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

impl Tile {
    /// Every output column the tile names, with the field that names it (`value`, `x`,
    /// `y`, `y[1]`, `series`, `label`, `columns[0]`), in field order. For checking the names
    /// against the query's columns once the warehouse has described them.
    pub fn column_refs(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let singles = [("value", &self.value), ("x", &self.x)];
        out.extend(
            singles
                .into_iter()
                .filter_map(|(f, c)| Some((f.to_owned(), c.clone()?))),
        );
        match &self.y {
            Some(Columns::One(c)) => out.push(("y".to_owned(), c.clone())),
            Some(Columns::Many(cs)) => {
                out.extend(
                    cs.iter()
                        .enumerate()
                        .map(|(i, c)| (format!("y[{i}]"), c.clone())),
                );
            }
            None => {}
        }
        let singles = [("series", &self.series), ("label", &self.label)];
        out.extend(
            singles
                .into_iter()
                .filter_map(|(f, c)| Some((f.to_owned(), c.clone()?))),
        );
        if let Some(cs) = &self.columns {
            out.extend(
                cs.iter()
                    .enumerate()
                    .map(|(i, c)| (format!("columns[{i}]"), c.clone())),
            );
        }
        out
    }
}

/// One column name, or a list of them (`y: revenue` or `y: [revenue, orders]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Columns {
    One(String),
    Many(Vec<String>),
}

impl Columns {
    pub fn as_slice(&self) -> &[String] {
        match self {
            Self::One(c) => std::slice::from_ref(c),
            Self::Many(cs) => cs,
        }
    }
}

/// A tile's place on the grid, in columns (x, w) and rows (y, h).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Position {
    #[serde(deserialize_with = "whole_u32")]
    pub x: u32,
    #[serde(deserialize_with = "whole_u32")]
    pub y: u32,
    #[serde(deserialize_with = "whole_u32")]
    pub w: u32,
    #[serde(deserialize_with = "whole_u32")]
    pub h: u32,
}

/// A `u32` written as an integer or as a float with no fractional part (`2.0`): JSON Schema's
/// `integer` admits both, and so does YAML's `2.0` reach us as a float.
fn whole_u32<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    struct Whole;
    impl serde::de::Visitor<'_> for Whole {
        type Value = u32;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a whole number from 0 to 4294967295")
        }

        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<u32, E> {
            u32::try_from(v)
                .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
        }

        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<u32, E> {
            u32::try_from(v).map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
        }

        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<u32, E> {
            if v.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&v) {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                Ok(v as u32)
            } else {
                Err(E::invalid_value(serde::de::Unexpected::Float(v), &self))
            }
        }
    }
    deserializer.deserialize_any(Whole)
}

impl Position {
    /// One past the rightmost column.
    pub fn right(&self) -> u32 {
        self.x.saturating_add(self.w)
    }

    /// One past the bottom row.
    pub fn bottom(&self) -> u32 {
        self.y.saturating_add(self.h)
    }

    pub fn overlaps(&self, other: &Position) -> bool {
        self.x < other.right()
            && other.x < self.right()
            && self.y < other.bottom()
            && other.y < self.bottom()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print_in_their_largest_exact_unit() {
        let d: DurationSpec = "24h".parse().unwrap_or(DurationSpec(Duration::ZERO));
        assert_eq!(d.0, Duration::from_secs(86400));
        assert_eq!(d.to_string(), "1d");
        assert_eq!(
            DurationSpec(Duration::from_secs(90 * 60)).to_string(),
            "90m"
        );
        assert_eq!(
            DurationSpec(Duration::from_secs(3 * 3600)).to_string(),
            "3h"
        );
        for bad in [
            "",
            "h",
            "0m",
            "05m",
            "5s",
            "1.5h",
            "-1d",
            "99999999999999999999d",
        ] {
            assert!(bad.parse::<DurationSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn parameter_values_parse_by_type() {
        assert_eq!(ParamType::Int.parse_value(" 42"), Ok(ParamValue::Int(42)));
        assert!(ParamType::Int.parse_value("4.2").is_err());
        assert!(ParamType::Float.parse_value("NaN").is_err());
        assert_eq!(
            ParamType::Bool.parse_value("TRUE"),
            Ok(ParamValue::Bool(true))
        );
        assert!(ParamType::Date.parse_value("2025-02-30").is_err());
        assert!(ParamType::Date.parse_value("2025-02-28").is_ok());
        assert!(ParamType::Date.parse_value("+2025-02-28").is_err());
        assert!(ParamType::Date.parse_value("-2025-02-28").is_err());
        assert!(
            ParamType::Timestamp
                .parse_value("2025-02-28T10:00:00+01:00")
                .is_ok()
        );
        assert!(
            ParamType::Timestamp
                .parse_value("2025-02-28 10:00")
                .is_err()
        );
        assert_eq!(
            ParamType::Int.from_json(&serde_json::json!(5.0)),
            Ok(ParamValue::Int(5))
        );
        assert!(ParamType::String.from_json(&serde_json::json!(5)).is_err());
    }
}
