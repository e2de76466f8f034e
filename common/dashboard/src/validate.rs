//! Everything about a dashboard YAML that can be checked without a warehouse, reported all at
//! once, each problem with its path (`layout[2].query`), line, column and a message a person
//! (or the agent writing the YAML) can act on.
//!
//! Three stages, each running only when the previous one passed:
//! 1. the YAML itself ([`super::yaml::load_all`]): syntax, duplicate keys, non-string keys,
//!    tags, a second document, size;
//! 2. the JSON Schema ([`SCHEMA_JSON`]): every error, translated into plain words, its JSON
//!    pointer turned into our path and located in the YAML;
//! 3. the structure ([`check_spec`]): what a schema cannot say (unique ids, known queries,
//!    refs and their cycles, declared parameters, a default among the allowed values,
//!    overlapping tiles, the SQL's size in bytes), plus warnings for parameters and queries
//!    nothing uses.
//!
//! Some rules are in both the schema (so that editors and other validators know them) and
//! the structural checks: the bounds of `refresh.every` and `cache.ttl`, dates and
//! timestamps that exist, a required parameter having no default, tiles fitting the grid,
//! the template syntax. A value breaking one of those can still be read into a spec, so such
//! errors ([`SOFT_RULES`]) do not stop stage 3: when the schema found nothing else, the
//! structural checks run and report them in their own words, along with everything else.
//! The tests check that the schema and this module agree on every rule both can express.
//!
//! SQL itself (one read-only statement, known tables, the byte cap) is checked elsewhere,
//! against the connection's dialect and catalog.

use std::{
    collections::{HashMap, HashSet},
    sync::LazyLock,
};

use jsonschema::{ValidationError, Validator, error::ValidationErrorKind, paths::LocationSegment};
use serde_json::Value;

use super::{
    spec::{
        DashboardSpec, DurationSpec, GRID_COLUMNS, MAX_CACHE_TTL, MAX_SQL_BYTES, MIN_CACHE_TTL,
        MIN_REFRESH, ParamType, SCHEMA_JSON, TileType,
    },
    template::{self, Piece},
    yaml::{self, Positions, push_index, push_key},
};

/// One problem, located. `line` and `column` are 1-based; absent when the problem has no
/// place in the YAML (e.g. the file is too large).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Issue {
    pub path: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

/// The outcome of [`parse`]: the spec whenever the YAML matched the schema, or broke only
/// rules the structural checks repeat ([`SOFT_RULES`]) (even if structural checks then
/// failed: see `errors`), the errors and warnings, and
/// the positions of the YAML's nodes for locating anything found later (SQL, columns).
#[derive(Debug, Clone)]
pub struct Parsed {
    pub spec: Option<DashboardSpec>,
    pub errors: Vec<Issue>,
    pub warnings: Vec<Issue>,
    pub positions: Positions,
}

impl Parsed {
    /// Line and column of `path`, or of its nearest ancestor present in the YAML.
    pub fn locate(&self, path: &str) -> (Option<usize>, Option<usize>) {
        self.positions.locate(path)
    }

    /// No errors (warnings allowed) and a spec.
    pub fn is_valid(&self) -> bool {
        self.errors.is_empty() && self.spec.is_some()
    }

    /// An issue at `path`, located (for callers adding their own findings, e.g. SQL checks).
    pub fn issue(&self, path: &str, message: impl Into<String>) -> Issue {
        let (line, column) = self.locate(path);
        Issue {
            path: path.to_owned(),
            line,
            column,
            message: message.into(),
        }
    }
}

struct Schema {
    json: Value,
    validator: Validator,
}

/// The compiled schema, built once.
static SCHEMA: LazyLock<Schema> = LazyLock::new(|| {
    let json: Value =
        serde_json::from_str(SCHEMA_JSON).expect("the embedded dashboard schema is valid JSON");
    let validator = jsonschema::validator_for(&json)
        .expect("the embedded dashboard schema is a valid JSON Schema");
    Schema { json, validator }
});

/// Checks a dashboard YAML: syntax, schema, structure. See the module documentation.
pub fn parse(yaml: &str) -> Parsed {
    let (value, positions) = match yaml::load_all(yaml) {
        Ok(loaded) => loaded,
        Err(errors) => {
            return Parsed {
                spec: None,
                errors,
                warnings: Vec::new(),
                positions: Positions::default(),
            };
        }
    };
    let (mut errors, soft) = schema_errors(&value, &positions, yaml);
    let mut warnings = Vec::new();
    let mut spec = None;
    if errors.is_empty() {
        // Straight from the value (the path-tracking deserialiser only for the error).
        let typed = <DashboardSpec as serde::Deserialize>::deserialize(&value)
            .or_else(|_| serde_path_to_error::deserialize::<_, DashboardSpec>(&value));
        match typed {
            Ok(s) => {
                let (e, w) = check_spec(&s, yaml, &positions);
                // The structural checks repeat the soft rules in the same words: what both
                // found is reported once, and what only the schema found (it is stricter on
                // a few timestamps) is kept.
                errors = soft;
                errors.retain(|i| !e.iter().any(|f| f.path == i.path && f.message == i.message));
                errors.extend(e);
                warnings = w;
                spec = Some(s);
            }
            Err(e) => {
                errors = soft;
                // The schema and the types agree (tested), so this is a bug; say so plainly.
                let path = serde_path(e.path());
                let (line, column) = positions.locate(&path);
                errors.push(Issue {
                    path,
                    line,
                    column,
                    message: format!("{} (the schema accepted it: please report)", e.inner()),
                });
            }
        }
    } else {
        errors.extend(soft);
    }
    sort(&mut errors);
    sort(&mut warnings);
    cap(&mut errors, "errors");
    cap(&mut warnings, "warnings");
    // The spec stays available after structural errors (callers then check SQL too, so that
    // every problem is reported at once); it is `None` only when the YAML or the schema failed
    // (beyond its soft rules).
    Parsed {
        spec,
        errors,
        warnings,
        positions,
    }
}

/// The most issues of one kind reported; a document with more gets a last issue saying so.
pub const MAX_ISSUES: usize = 200;

fn cap(issues: &mut Vec<Issue>, what: &str) {
    if issues.len() > MAX_ISSUES {
        let more = issues.len() - MAX_ISSUES;
        issues.truncate(MAX_ISSUES);
        issues.push(Issue {
            path: String::new(),
            line: None,
            column: None,
            message: format!("… and {more} more {what} not listed (fix these first)"),
        });
    }
}

fn sort(issues: &mut [Issue]) {
    issues.sort_by_key(|i| (i.line.unwrap_or(usize::MAX), i.column.unwrap_or(0)));
}

fn serde_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => push_index(&mut out, *index),
            Segment::Map { key } => push_key(&mut out, key),
            Segment::Enum { variant } => push_key(&mut out, variant),
            Segment::Unknown => {}
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// The schema's errors, in words

/// The schema's keywords whose errors leave the document readable into a spec and that the
/// structural checks repeat (keyword locations, a trailing `*` standing for anything): such
/// an error alone does not stop the structural checks (see the module documentation).
pub const SOFT_RULES: &[&str] = &[
    "/properties/refresh/properties/every/pattern",
    "/properties/cache/properties/ttl/pattern",
    "/$defs/date/pattern",
    "/$defs/date/format",
    "/$defs/timestamp/pattern",
    "/$defs/timestamp/format",
    "/$defs/parameter/dependentSchemas/default/properties/required/const",
    "/$defs/position/allOf/*",
    "/$defs/templates/pattern",
];

fn is_soft(schema_path: &str) -> bool {
    SOFT_RULES.iter().any(|rule| match rule.strip_suffix('*') {
        Some(prefix) => schema_path.starts_with(prefix),
        None => schema_path == *rule,
    })
}

/// The schema's errors in words: `(hard, soft)`, soft ones being those of [`SOFT_RULES`].
fn schema_errors(value: &Value, positions: &Positions, yaml: &str) -> (Vec<Issue>, Vec<Issue>) {
    let (mut hard, mut soft) = (Vec::new(), Vec::new());
    let mut seen: HashSet<(String, String)> = HashSet::new();
    for error in SCHEMA.validator.iter_errors(value) {
        let out = if is_soft(error.schema_path().as_str()) {
            &mut soft
        } else {
            &mut hard
        };
        for issue in translate(&error, value, positions, yaml) {
            if seen.insert((issue.path.clone(), issue.message.clone())) {
                out.push(issue);
            }
        }
    }
    (hard, soft)
}

/// Converts a JSON pointer into our path, using the document to tell list indices from keys.
fn instance_path(root: &Value, error: &ValidationError<'_>) -> String {
    let mut out = String::new();
    let mut node = Some(root);
    for segment in error.instance_path().segments() {
        let (key, index) = match &segment {
            LocationSegment::Index(i) => (i.to_string(), Some(*i)),
            LocationSegment::Property(p) => (p.to_string(), None),
        };
        match (node, index) {
            (Some(Value::Array(items)), Some(i)) => {
                push_index(&mut out, i);
                node = items.get(i);
            }
            (Some(Value::Object(map)), _) => {
                push_key(&mut out, &key);
                node = map.get(&key);
            }
            _ => {
                push_key(&mut out, &key);
                node = None;
            }
        }
    }
    out
}

fn child(path: &str, key: &str) -> String {
    let mut p = path.to_owned();
    push_key(&mut p, key);
    p
}

/// The last key of a path (`layout[0].x` → `x`).
fn last_key(path: &str) -> &str {
    match yaml::parent(path) {
        Some(up) => path[up.len()..]
            .trim_start_matches('.')
            .trim_start_matches("[\"")
            .trim_end_matches("\"]"),
        None => path,
    }
}

fn at_value(positions: &Positions, path: String, message: String) -> Issue {
    let (line, column) = positions.locate(&path);
    Issue {
        path,
        line,
        column,
        message,
    }
}

fn at_key(positions: &Positions, path: String, message: String) -> Issue {
    match positions.key(&path) {
        Some((line, column)) => Issue {
            path,
            line: Some(line),
            column: Some(column),
            message,
        },
        None => at_value(positions, path, message),
    }
}

/// The tile type of the tile at `path` (a tile, or a node inside one), when valid.
fn tile_type_at<'v>(root: &'v Value, path: &str) -> Option<(&'v str, &'v Value)> {
    let rest = path.strip_prefix("layout[")?;
    let index: usize = rest[..rest.find(']')?].parse().ok()?;
    let tile = root.get("layout")?.get(index)?;
    Some((tile.get("type")?.as_str()?, tile))
}

const TILE_TYPES: [&str; 7] = ["kpi", "line", "bar", "area", "pie", "table", "text"];

/// The keys a tile of `type` takes.
fn tile_keys(tile_type: &str) -> Vec<&'static str> {
    let mut keys = vec!["id", "type", "title"];
    keys.extend(match tile_type {
        "kpi" => &["query", "position", "value"][..],
        "line" | "bar" | "area" => &["query", "position", "x", "y", "series"][..],
        "pie" => &["query", "position", "label", "value"][..],
        "table" => &["query", "position", "columns"][..],
        "text" => &["position", "text"][..],
        _ => &[][..],
    });
    keys
}

fn field_hint(field: &str) -> &'static str {
    match field {
        "query" => " (the id of the query it shows)",
        "value" => " (the name of the column holding the number)",
        "x" => " (the column on the horizontal axis)",
        "y" => " (the column, or list of columns, to plot)",
        "label" => " (the column naming each slice)",
        "text" => " (the markdown to show)",
        _ => "",
    }
}

/// The allowed keys of the object at `path`, read from the schema.
fn object_keys(root: &Value, path: &str) -> Vec<String> {
    let schema = &SCHEMA.json;
    let defs = &schema["$defs"];
    let shape = strip_indices(path);
    let node = match shape.as_str() {
        "" => &schema["properties"],
        "theme" | "refresh" | "cache" => &schema["properties"][shape.as_str()]["properties"],
        "parameters[]" => &defs["parameter"]["properties"],
        "queries[]" => &defs["query"]["properties"],
        "layout[].position" => &defs["position"]["properties"],
        "layout[]" => {
            if let Some((t, _)) = tile_type_at(root, path)
                && TILE_TYPES.contains(&t)
            {
                return tile_keys(t).into_iter().map(str::to_owned).collect();
            }
            &defs["tile"]["properties"]
        }
        _ => return Vec::new(),
    };
    node.as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

fn strip_indices(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push('[');
            }
            ']' if in_index => {
                in_index = false;
                out.push(']');
            }
            _ if in_index => {}
            _ => out.push(c),
        }
    }
    out
}

fn type_name(t: &str) -> &'static str {
    match t {
        "object" => "a mapping",
        "array" => "a list",
        "string" => "a string",
        "integer" => "an integer",
        "number" => "a number",
        "boolean" => "true or false",
        "null" => "null",
        _ => "another type",
    }
}

/// A YAML-minded description of a value.
fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nothing (null)".to_owned(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string \"{}\"", shorten(s)),
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "a mapping".to_owned(),
    }
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 60 {
        let mut out: String = s.chars().take(57).collect();
        out.push('…');
        out
    } else {
        s.to_owned()
    }
}

fn inline(v: &Value) -> String {
    match v {
        Value::String(s) => shorten(s),
        other => shorten(&other.to_string()),
    }
}

fn pattern_message(pattern: &str, value: &Value) -> String {
    let v = inline(value);
    match pattern {
        "^[a-z0-9]+(-[a-z0-9]+)*$" => format!(
            "`{v}` is not a valid slug: use lowercase letters and digits, in words joined by \
             single hyphens (e.g. revenue-overview)"
        ),
        "^[a-z][a-z0-9_]{0,62}$" => format!(
            "`{v}` is not a valid id: start with a lowercase letter, then use lowercase \
             letters, digits or underscores (at most 63 characters)"
        ),
        "^[a-z][a-z0-9_-]{0,62}$" => format!(
            "`{v}` is not a valid tile id: start with a lowercase letter, then use lowercase \
             letters, digits, underscores or hyphens (at most 63 characters)"
        ),
        "^[1-9][0-9]*(m|h|d)$" => format!(
            "`{v}` is not a duration: write a whole number of minutes, hours or days \
             (e.g. 15m, 24h, 7d)"
        ),
        "\\S" => "must not be blank".to_owned(),
        p if p.starts_with("^[0-9a-fA-F]{8}") => format!(
            "`{v}` is not a UUID: use the id of a warehouse connection \
             (e.g. 00000000-0000-4000-8000-000000000001)"
        ),
        p => format!("`{v}` does not match the pattern {p}"),
    }
}

/// Why a date or timestamp the schema refuses is wrong, when the parameter's type accepts it
/// (the schema is stricter than [`ParamType::from_json`] on these; see the tests).
fn date_message(timestamp: bool, value: &Value) -> String {
    let v = inline(value);
    let s = value.as_str().unwrap_or_default();
    if !timestamp {
        return format!("`{v}` is not a date (YYYY-MM-DD)");
    }
    if s.get(17..19) == Some("60") {
        format!("`{v}` is a leap second (:60), which is not accepted: use :59")
    } else if s.len() > 10 && !matches!(s.as_bytes()[10], b'T' | b't') {
        format!("`{v}` is not an RFC 3339 timestamp: write T between the date and the time")
    } else {
        format!("`{v}` is not an RFC 3339 timestamp (e.g. 2025-01-31T12:00:00Z)")
    }
}

/// The message of a parameter's default or allowed value (`path`, under `parameters[i]`)
/// that its type refuses, as the structural checks word it.
fn parameter_value_message(root: &Value, path: &str, problem: &str) -> String {
    let rest = path.strip_prefix("parameters[").unwrap_or_default();
    let param = rest
        .find(']')
        .and_then(|end| rest[..end].parse::<usize>().ok())
        .and_then(|i| root.get("parameters")?.get(i));
    let id = param
        .and_then(|p| p.get("id")?.as_str())
        .unwrap_or_default();
    let t = param
        .and_then(|p| p.get("type")?.as_str())
        .unwrap_or_default();
    if path.ends_with(".default") {
        default_message(id, t, problem)
    } else {
        allowed_message(id, t, problem)
    }
}

fn default_message(id: &str, t: &str, problem: &str) -> String {
    format!("the default of `{id}` (a {t} parameter): {problem}")
}

fn allowed_message(id: &str, t: &str, problem: &str) -> String {
    format!("an allowed value of `{id}` (a {t} parameter): {problem}")
}

fn required_with_default_message(id: &str) -> String {
    format!(
        "`{id}` is required yet has a default: a required parameter must be passed by the \
         viewer, so drop `default` or `required: true`"
    )
}

fn refresh_message(every: DurationSpec) -> String {
    format!("refreshing every {every} is too often: at least 5m")
}

fn cache_ttl_message(ttl: DurationSpec) -> Option<String> {
    if ttl.0 < MIN_CACHE_TTL {
        Some("the cache TTL must be at least 1m".to_owned())
    } else if ttl.0 > MAX_CACHE_TTL {
        Some(format!("a cache TTL of {ttl} is too long: at most 30d"))
    } else {
        None
    }
}

fn grid_message(id: &str, x: u64, w: u64) -> String {
    format!(
        "tile `{id}` does not fit the {GRID_COLUMNS}-column grid: x {x} + w {w} = {}, more \
         than {GRID_COLUMNS}",
        x + w
    )
}

/// A whole number in JSON (`8` or `8.0`).
fn whole(v: Option<&Value>) -> Option<u64> {
    let v = v?;
    v.as_u64().or_else(|| {
        let f = v.as_f64()?;
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        (f.fract() == 0.0 && (0.0..1e15).contains(&f)).then_some(f as u64)
    })
}

/// The errors of the soft rules in words (`None` for the other keywords).
fn translate_soft(
    error: &ValidationError<'_>,
    path: &str,
    root: &Value,
    positions: &Positions,
    yaml: &str,
) -> Option<Vec<Issue>> {
    let schema_path = error.schema_path().as_str();
    let instance = error.instance();
    let one = |message: String| Some(vec![at_value(positions, path.to_owned(), message)]);
    let duration = instance
        .as_str()
        .and_then(|s| s.parse::<DurationSpec>().ok());
    match schema_path {
        // A value that is no duration at all: `$defs/duration`'s own error says so.
        "/properties/refresh/properties/every/pattern" => match duration {
            Some(d) => one(refresh_message(d)),
            None => Some(Vec::new()),
        },
        "/properties/cache/properties/ttl/pattern" => match duration.and_then(cache_ttl_message) {
            Some(message) => one(message),
            None => Some(Vec::new()),
        },
        "/$defs/date/pattern" | "/$defs/date/format" => {
            let problem = match ParamType::Date.from_json(instance) {
                Err(e) => e,
                Ok(_) => date_message(false, instance),
            };
            one(parameter_value_message(root, path, &problem))
        }
        "/$defs/timestamp/pattern" | "/$defs/timestamp/format" => {
            let problem = match ParamType::Timestamp.from_json(instance) {
                Err(e) => e,
                Ok(_) => date_message(true, instance),
            };
            one(parameter_value_message(root, path, &problem))
        }
        "/$defs/parameter/dependentSchemas/default/properties/required/const" => {
            // Only `required: true` is at fault; another value has its own type error.
            if **instance != Value::Bool(true) {
                return Some(Vec::new());
            }
            let parent = yaml::parent(path).unwrap_or_default();
            let id = root
                .pointer(&format!("/parameters/{}", index_of(parent)?))
                .and_then(|p| p.get("id")?.as_str())
                .unwrap_or_default();
            one(required_with_default_message(id))
        }
        p if p.starts_with("/$defs/position/allOf/") => {
            // Reported at the position, as the structural check does.
            let position_path = yaml::parent(path).unwrap_or_default();
            let tile_path = yaml::parent(position_path).unwrap_or_default();
            let tile = root.pointer(&format!("/layout/{}", index_of(tile_path)?));
            let position = tile.and_then(|t| t.get("position"));
            let id = tile.and_then(|t| t.get("id")?.as_str()).unwrap_or_default();
            let x = whole(position.and_then(|p| p.get("x")));
            let w = whole(position.and_then(|p| p.get("w")));
            let (Some(x), Some(w)) = (x, w) else {
                return Some(Vec::new());
            };
            Some(vec![at_value(
                positions,
                position_path.to_owned(),
                grid_message(id, x, w),
            )])
        }
        "/$defs/templates/pattern" => {
            let sql = instance.as_str().unwrap_or_default();
            let (_, errors) = template::scan_all(sql);
            Some(
                errors
                    .into_iter()
                    .map(
                        |e| match template_at(yaml, positions, path, sql, e.offset) {
                            Some((line, column)) => Issue {
                                path: path.to_owned(),
                                line: Some(line),
                                column: Some(column),
                                message: e.message,
                            },
                            None => at_value(positions, path.to_owned(), e.message),
                        },
                    )
                    .collect(),
            )
        }
        _ => None,
    }
}

/// The index of the last `[i]` of a path (`layout[3]` → 3).
fn index_of(path: &str) -> Option<usize> {
    let open = path.rfind('[')?;
    path[open + 1..].strip_suffix(']')?.parse().ok()
}

fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).clamp(1, 3);
    candidates
        .into_iter()
        .map(|c| (levenshtein(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    suggest(word, candidates)
        .map(|s| format!("; did you mean `{s}`?"))
        .unwrap_or_default()
}

fn translate(
    error: &ValidationError<'_>,
    root: &Value,
    positions: &Positions,
    yaml: &str,
) -> Vec<Issue> {
    let path = instance_path(root, error);
    if let Some(issues) = translate_soft(error, &path, root, positions, yaml) {
        return issues;
    }
    let schema_path = error.schema_path().as_str();
    let instance = error.instance();
    let in_tile_rules = schema_path.contains("/$defs/tile/allOf/");
    let tile = tile_type_at(root, &path);
    if in_tile_rules && !tile.is_some_and(|(t, _)| TILE_TYPES.contains(&t)) {
        // No valid type: the type's own error says what matters.
        return Vec::new();
    }
    let one = |message: String| vec![at_value(positions, path.clone(), message)];
    match error.kind() {
        ValidationErrorKind::Required { property } => {
            let key = property.as_str().unwrap_or_default();
            let message = match (in_tile_rules, tile) {
                (true, Some((t, _))) => {
                    format!("a {t} tile needs `{key}`{}", field_hint(key))
                }
                _ => format!("missing required key `{key}`"),
            };
            vec![at_value(positions, child(&path, key), message)]
        }
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let allowed = object_keys(root, &path);
            unexpected
                .iter()
                .map(|key| {
                    let hint = match suggest(key, allowed.iter().map(String::as_str)) {
                        _ if key == "<<" => {
                            "; YAML merge keys are not supported (YAML 1.2 has none): \
                             write the keys out"
                                .to_owned()
                        }
                        Some(s) => format!("; did you mean `{s}`?"),
                        None if allowed.is_empty() => String::new(),
                        None => format!("; expected one of: {}", allowed.join(", ")),
                    };
                    at_key(
                        positions,
                        child(&path, key),
                        format!("unknown key `{key}`{hint}"),
                    )
                })
                .collect()
        }
        ValidationErrorKind::FalseSchema => {
            let key = last_key(&path).to_owned();
            let message = match tile {
                Some(("text", _)) if key == "query" => {
                    "a text tile shows no query: remove `query`".to_owned()
                }
                Some((t, _)) if key == "text" => {
                    format!("`text` is only for text tiles, and this is a {t} tile")
                }
                Some((t, _)) => format!(
                    "`{key}` is not used by {t} tiles, which take: {}",
                    tile_keys(t)[3..].join(", ")
                ),
                None => format!("`{key}` is not allowed here"),
            };
            vec![at_key(positions, path.clone(), message)]
        }
        ValidationErrorKind::Type { kind } => {
            use jsonschema::error::TypeKind;
            let expected: Vec<&str> = match kind {
                TypeKind::Single(t) => vec![type_name(t.as_str())],
                TypeKind::Multiple(set) => set.iter().map(|t| type_name(t.as_str())).collect(),
            };
            let mut message = format!(
                "expected {}, found {}",
                expected.join(" or "),
                describe(instance)
            );
            if expected == ["a string"] && matches!(&**instance, Value::Number(_) | Value::Bool(_))
            {
                message.push_str(" (quote it to make it text)");
            }
            if schema_path.contains("/$defs/parameter/allOf/")
                && let Some(t) = parameter_type(root, &path)
            {
                message.push_str(&format!(", as the parameter's type is {t}"));
            }
            one(message)
        }
        ValidationErrorKind::Constant { expected_value } => one(format!(
            "must be {expected_value}, not {}",
            describe(instance)
        )),
        ValidationErrorKind::Enum { options } => {
            let options: Vec<&str> = options
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let found = inline(instance);
            let hint = match instance.as_str() {
                Some(s) => did_you_mean(s, options.iter().copied()),
                None => String::new(),
            };
            one(format!(
                "`{found}` is not one of: {}{hint}",
                options.join(", ")
            ))
        }
        ValidationErrorKind::Pattern { pattern } => one(pattern_message(pattern, instance)),
        ValidationErrorKind::MinLength { limit } => one(if *limit <= 1 {
            "must not be empty".to_owned()
        } else {
            format!("is too short: at least {limit} characters")
        }),
        ValidationErrorKind::MaxLength { limit } => one(format!(
            "is too long: {} characters, at most {limit}",
            instance.as_str().map_or(0, |s| s.chars().count())
        )),
        ValidationErrorKind::Minimum { limit } => one(format!(
            "{} is too small: at least {limit}",
            inline(instance)
        )),
        ValidationErrorKind::Maximum { limit } => one(format!(
            "{} is too large: at most {limit}",
            inline(instance)
        )),
        ValidationErrorKind::MinItems { limit } => one(if *limit <= 1 {
            match path.as_str() {
                "queries" => "a dashboard needs at least one query".to_owned(),
                _ => "must list at least one entry".to_owned(),
            }
        } else {
            format!("must list at least {limit} entries")
        }),
        ValidationErrorKind::MaxItems { limit } => one(format!(
            "lists {} entries, at most {limit}",
            instance.as_array().map_or(0, Vec::len)
        )),
        ValidationErrorKind::UniqueItems => {
            let dup = instance.as_array().and_then(|items| {
                items
                    .iter()
                    .enumerate()
                    .find(|(i, v)| items[..*i].contains(v))
                    .map(|(_, v)| inline(v))
            });
            one(match dup {
                Some(d) => format!("lists `{d}` more than once"),
                None => "lists the same entry more than once".to_owned(),
            })
        }
        ValidationErrorKind::AnyOf { .. } | ValidationErrorKind::OneOfNotValid { .. } => {
            one(if last_key(&path) == "y" {
                match &**instance {
                    Value::Array(items) if items.is_empty() => {
                        "must list at least one column".to_owned()
                    }
                    Value::Array(items) if items.len() > 20 => {
                        format!("lists {} columns, at most 20", items.len())
                    }
                    Value::Array(_) => {
                        "must be a list of distinct, non-empty column names".to_owned()
                    }
                    other => format!(
                        "expected a column name or a list of column names, found {}",
                        describe(other)
                    ),
                }
            } else {
                format!("{} does not match any allowed form", describe(instance))
            })
        }
        _ => one(error.to_string()),
    }
}

fn parameter_type<'v>(root: &'v Value, path: &str) -> Option<&'v str> {
    let rest = path.strip_prefix("parameters[")?;
    let index: usize = rest[..rest.find(']')?].parse().ok()?;
    root.get("parameters")?.get(index)?.get("type")?.as_str()
}

// ---------------------------------------------------------------------------------------
// The structure

struct Checker<'a> {
    yaml: &'a str,
    positions: &'a Positions,
    errors: Vec<Issue>,
    warnings: Vec<Issue>,
}

impl Checker<'_> {
    fn error(&mut self, path: String, message: String) {
        self.errors.push(at_value(self.positions, path, message));
    }

    fn error_at(&mut self, path: String, at: Option<(usize, usize)>, message: String) {
        match at {
            Some((line, column)) => self.errors.push(Issue {
                path,
                line: Some(line),
                column: Some(column),
                message,
            }),
            None => self.error(path, message),
        }
    }

    fn warning(&mut self, path: String, message: String) {
        self.warnings.push(at_value(self.positions, path, message));
    }

    fn template_at(&self, path: &str, sql: &str, offset: usize) -> Option<(usize, usize)> {
        template_at(self.yaml, self.positions, path, sql, offset)
    }
}

/// Where the template at byte `offset` of the sql at `path` is in the YAML. The n-th
/// `{{` of the value is the n-th `{{` of the scalar's source text, whatever its style
/// (plain, quoted, literal `|` or folded `>`), as neither escapes nor folding make or
/// break a `{{`; so this is exact except for a `{{` written with escapes or split by a
/// fold, where it falls back to the scalar's start.
fn template_at(
    yaml: &str,
    positions: &Positions,
    path: &str,
    sql: &str,
    offset: usize,
) -> Option<(usize, usize)> {
    let nth = sql.get(..offset)?.matches("{{").count();
    let (line, column) = positions.get(path)?;
    let span = positions.span(path)?;
    let source = yaml.get(span)?;
    let (at, _) = source.match_indices("{{").nth(nth)?;
    let before = &source[..at];
    Some(match before.rfind('\n') {
        None => (line, column + before.chars().count()),
        Some(nl) => (
            line + before.matches('\n').count(),
            before[nl + 1..].chars().count() + 1,
        ),
    })
}

/// How a query reaches another: through a ref in its SQL (byte offset of the `{{`), or its
/// `depends_on` (index in the list).
#[derive(Debug, Clone, Copy)]
enum Edge {
    Ref(usize),
    DependsOn(usize),
}

/// The structural checks of a spec that passed the schema: `(errors, warnings)`. `yaml` and
/// `positions` only serve to locate issues (pass `""` and empty positions for a spec built
/// in code).
pub fn check_spec(
    spec: &DashboardSpec,
    yaml: &str,
    positions: &Positions,
) -> (Vec<Issue>, Vec<Issue>) {
    let mut c = Checker {
        yaml,
        positions,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    check_durations(&mut c, spec);
    check_parameters(&mut c, spec);
    let graph = check_queries(&mut c, spec);
    check_cycles(&mut c, spec, &graph);
    check_tiles(&mut c, spec);
    check_unused(&mut c, spec);
    (c.errors, c.warnings)
}

fn check_durations(c: &mut Checker<'_>, spec: &DashboardSpec) {
    if let Some(r) = &spec.refresh
        && r.every.0 < MIN_REFRESH
    {
        c.error("refresh.every".into(), refresh_message(r.every));
    }
    if let Some(message) = spec.cache.as_ref().and_then(|c| cache_ttl_message(c.ttl)) {
        c.error("cache.ttl".into(), message);
    }
}

/// Reports repeated ids; answers the index of each id's first occurrence.
fn unique_ids<'s>(
    c: &mut Checker<'_>,
    what: &str,
    list: &str,
    ids: impl Iterator<Item = &'s str>,
) -> HashMap<&'s str, usize> {
    let mut first: HashMap<&str, usize> = HashMap::new();
    for (i, id) in ids.enumerate() {
        if let Some(&j) = first.get(id) {
            let line = c
                .positions
                .get(&format!("{list}[{j}]"))
                .map(|(l, _)| format!(", line {l}"))
                .unwrap_or_default();
            c.error(
                format!("{list}[{i}].id"),
                format!("duplicate {what} id `{id}`: already used by {list}[{j}]{line}"),
            );
        } else {
            first.insert(id, i);
        }
    }
    first
}

fn check_parameters(c: &mut Checker<'_>, spec: &DashboardSpec) {
    unique_ids(
        c,
        "parameter",
        "parameters",
        spec.parameters.iter().map(|p| p.id.as_str()),
    );
    for (i, p) in spec.parameters.iter().enumerate() {
        let t = p.r#type;
        let default = match &p.default {
            Some(d) => match t.from_json(d) {
                Ok(v) => Some(v),
                Err(e) => {
                    c.error(
                        format!("parameters[{i}].default"),
                        default_message(&p.id, t.as_str(), &e),
                    );
                    None
                }
            },
            None => None,
        };
        let mut allowed = Vec::new();
        for (k, a) in p.allowed.iter().flatten().enumerate() {
            match t.from_json(a) {
                Ok(v) => allowed.push(v),
                Err(e) => c.error(
                    format!("parameters[{i}].allowed[{k}]"),
                    allowed_message(&p.id, t.as_str(), &e),
                ),
            }
        }
        if let (Some(d), Some(list)) = (&default, &p.allowed)
            && allowed.len() == list.len()
            && !allowed.contains(d)
        {
            c.error(
                format!("parameters[{i}].default"),
                format!(
                    "the default `{}` is not one of the allowed values",
                    p.default.as_ref().map(inline).unwrap_or_default()
                ),
            );
        }
        if p.required && p.default.is_some() {
            c.error(
                format!("parameters[{i}].required"),
                required_with_default_message(&p.id),
            );
        }
    }
}

/// Checks ids, sizes, templates and depends_on; answers the graph of known edges
/// (query index → [(target index, how)]), self-edges excluded.
fn check_queries(c: &mut Checker<'_>, spec: &DashboardSpec) -> Vec<Vec<(usize, Edge)>> {
    let ids = unique_ids(
        c,
        "query",
        "queries",
        spec.queries.iter().map(|q| q.id.as_str()),
    );
    let params: Vec<&str> = spec.parameters.iter().map(|p| p.id.as_str()).collect();
    let mut graph = vec![Vec::new(); spec.queries.len()];
    for (i, q) in spec.queries.iter().enumerate() {
        let sql_path = format!("queries[{i}].sql");
        if q.sql.len() > MAX_SQL_BYTES {
            c.error(
                sql_path.clone(),
                format!(
                    "the SQL is {} bytes; the limit is {MAX_SQL_BYTES} bytes (100 KB)",
                    q.sql.len()
                ),
            );
        }
        let (pieces, template_errors) = template::scan_all(&q.sql);
        for e in template_errors {
            let at = c.template_at(&sql_path, &q.sql, e.offset);
            c.error_at(sql_path.clone(), at, e.message);
        }
        for located in pieces {
            match located.piece {
                Piece::Text(_) => {}
                Piece::Ref(name) => {
                    let at = c.template_at(&sql_path, &q.sql, located.offset);
                    if name == q.id {
                        c.error_at(sql_path.clone(), at, format!("query `{name}` refs itself"));
                    } else if let Some(&j) = ids.get(name) {
                        if !graph[i].iter().any(|(t, _)| *t == j) {
                            graph[i].push((j, Edge::Ref(located.offset)));
                        }
                    } else {
                        let hint = did_you_mean(name, ids.keys().copied());
                        c.error_at(
                            sql_path.clone(),
                            at,
                            format!("{{{{ ref(\"{name}\") }}}} names no query{hint}"),
                        );
                    }
                }
                Piece::Param(name) => {
                    if !params.contains(&name) {
                        let at = c.template_at(&sql_path, &q.sql, located.offset);
                        let hint = match suggest(name, params.iter().copied()) {
                            Some(s) => format!("; did you mean `{s}`?"),
                            None => " (declare it under `parameters`)".to_owned(),
                        };
                        c.error_at(
                            sql_path.clone(),
                            at,
                            format!(
                                "{{{{ param(\"{name}\") }}}} names no declared parameter{hint}"
                            ),
                        );
                    }
                }
            }
        }
        for (k, dep) in q.depends_on.iter().enumerate() {
            let path = format!("queries[{i}].depends_on[{k}]");
            if *dep == q.id {
                c.error(path, format!("query `{dep}` cannot depend on itself"));
            } else if let Some(&j) = ids.get(dep.as_str()) {
                if !graph[i].iter().any(|(t, _)| *t == j) {
                    graph[i].push((j, Edge::DependsOn(k)));
                }
            } else {
                let hint = did_you_mean(dep, ids.keys().copied());
                c.error(
                    path,
                    format!("depends_on names `{dep}`, which is no query{hint}"),
                );
            }
        }
    }
    graph
}

/// Every cycle found by a depth-first search (one per back edge), each reported once at the
/// edge leaving its first query in document order.
fn check_cycles(c: &mut Checker<'_>, spec: &DashboardSpec, graph: &[Vec<(usize, Edge)>]) {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let n = graph.len();
    let mut mark = vec![Mark::New; n];
    let mut cycles: Vec<Vec<usize>> = Vec::new();
    for start in 0..n {
        if mark[start] != Mark::New {
            continue;
        }
        // Iterative DFS: (node, next edge to follow).
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        mark[start] = Mark::Open;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if let Some(&(to, _)) = graph[node].get(*next) {
                *next += 1;
                match mark[to] {
                    Mark::New => {
                        mark[to] = Mark::Open;
                        stack.push((to, 0));
                    }
                    Mark::Open => {
                        let from = stack.iter().position(|(q, _)| *q == to).unwrap_or(0);
                        let mut cycle: Vec<usize> = stack[from..].iter().map(|(q, _)| *q).collect();
                        let min = cycle
                            .iter()
                            .enumerate()
                            .min_by_key(|(_, q)| **q)
                            .map_or(0, |(i, _)| i);
                        cycle.rotate_left(min);
                        if !cycles.contains(&cycle) {
                            cycles.push(cycle);
                        }
                    }
                    Mark::Done => {}
                }
            } else {
                mark[node] = Mark::Done;
                stack.pop();
            }
        }
    }
    for cycle in cycles {
        let names: Vec<&str> = cycle
            .iter()
            .chain(cycle.first())
            .map(|&q| spec.queries[q].id.as_str())
            .collect();
        let (from, to) = (cycle[0], cycle[1 % cycle.len()]);
        let edge = graph[from].iter().find(|(t, _)| *t == to).map(|(_, e)| *e);
        let message = format!(
            "queries form a cycle through ref and depends_on: {}",
            names.join(" → ")
        );
        match edge {
            Some(Edge::Ref(offset)) => {
                let path = format!("queries[{from}].sql");
                let at = c.template_at(&path, &spec.queries[from].sql, offset);
                c.error_at(path, at, message);
            }
            Some(Edge::DependsOn(k)) => {
                c.error(format!("queries[{from}].depends_on[{k}]"), message)
            }
            None => c.error(format!("queries[{from}]"), message),
        }
    }
}

fn check_tiles(c: &mut Checker<'_>, spec: &DashboardSpec) {
    unique_ids(
        c,
        "tile",
        "layout",
        spec.layout.iter().map(|t| t.id.as_str()),
    );
    let query_ids: Vec<&str> = spec.queries.iter().map(|q| q.id.as_str()).collect();
    for (i, t) in spec.layout.iter().enumerate() {
        match (&t.query, t.r#type) {
            (Some(_), TileType::Text) => c.error(
                format!("layout[{i}].query"),
                "a text tile shows no query: remove `query`".into(),
            ),
            (None, ty) if ty.needs_query() => c.error(
                format!("layout[{i}].query"),
                format!(
                    "a {} tile needs `query`{}",
                    ty.as_str(),
                    field_hint("query")
                ),
            ),
            (Some(q), _) if !query_ids.contains(&q.as_str()) => {
                let hint = did_you_mean(q, query_ids.iter().copied());
                c.error(
                    format!("layout[{i}].query"),
                    format!(
                        "tile `{}` shows query `{q}`, which does not exist{hint}",
                        t.id
                    ),
                );
            }
            _ => {}
        }
        let p = t.position;
        if p.right() > GRID_COLUMNS {
            c.error(
                format!("layout[{i}].position"),
                grid_message(&t.id, p.x.into(), p.w.into()),
            );
        }
    }
    for (j, b) in spec.layout.iter().enumerate() {
        for (i, a) in spec.layout[..j].iter().enumerate() {
            let (pa, pb) = (a.position, b.position);
            if !pa.overlaps(&pb) {
                continue;
            }
            let cols = (pa.x.max(pb.x), pa.right().min(pb.right()) - 1);
            let rows = (pa.y.max(pb.y), pa.bottom().min(pb.bottom()) - 1);
            let span = |(lo, hi): (u32, u32), one: &str, many: &str| {
                if lo == hi {
                    format!("{one} {lo}")
                } else {
                    format!("{many} {lo}–{hi}")
                }
            };
            let line = c
                .positions
                .get(&format!("layout[{i}]"))
                .map(|(l, _)| format!(", line {l}"))
                .unwrap_or_default();
            c.error(
                format!("layout[{j}].position"),
                format!(
                    "tile `{}` overlaps tile `{}` (layout[{i}]{line}): both cover {} of {}",
                    b.id,
                    a.id,
                    span(cols, "column", "columns"),
                    span(rows, "row", "rows")
                ),
            );
        }
    }
}

fn check_unused(c: &mut Checker<'_>, spec: &DashboardSpec) {
    let mut used_params: Vec<&str> = Vec::new();
    let mut reffed: Vec<&str> = Vec::new();
    for q in &spec.queries {
        for located in template::scan_all(&q.sql).0 {
            match located.piece {
                Piece::Param(p) => used_params.push(p),
                Piece::Ref(r) if r != q.id => reffed.push(r),
                _ => {}
            }
        }
    }
    for (i, p) in spec.parameters.iter().enumerate() {
        if !used_params.contains(&p.id.as_str()) {
            c.warning(
                format!("parameters[{i}]"),
                format!("parameter `{}` is declared but no query uses it", p.id),
            );
        }
    }
    for (i, q) in spec.queries.iter().enumerate() {
        let shown = spec
            .layout
            .iter()
            .any(|t| t.query.as_deref() == Some(&q.id));
        if !shown && !reffed.contains(&q.id.as_str()) {
            c.warning(
                format!("queries[{i}]"),
                format!(
                    "query `{}` is neither shown by a tile nor used by another query's ref",
                    q.id
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levenshtein_and_suggestions() {
        assert_eq!(levenshtein("revenue_dialy", "revenue_daily"), 2);
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(
            suggest("revenue_dialy", ["orders", "revenue_daily"]),
            Some("revenue_daily")
        );
        assert_eq!(suggest("zzz", ["orders"]), None);
    }

    #[test]
    fn the_schema_compiles() {
        assert!(SCHEMA.json.is_object());
    }

    #[test]
    fn every_soft_rule_names_a_keyword_of_the_schema() {
        for rule in SOFT_RULES {
            let pointer = rule.trim_end_matches("/*");
            assert!(SCHEMA.json.pointer(pointer).is_some(), "{rule}");
        }
        assert!(is_soft("/$defs/position/allOf/3/then/properties/w/maximum"));
        assert!(!is_soft("/$defs/date/type"));
        assert!(!is_soft("/$defs/duration/pattern"));
    }
}
