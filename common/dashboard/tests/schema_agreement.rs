//! The JSON Schema and the server's validator agree: on the samples, on a case for each rule
//! both can express (and its valid neighbours), and, rule by rule, on every value of a large
//! set (durations, dates, timestamps, the grid, templates). Where only the server can decide
//! (references between ids, cycles, overlaps, the YAML itself), the cases say so. Also: the
//! invalid samples' README says exactly what the validator reports, and the samples read the
//! same under a YAML 1.1 loader (such as ajv-cli's) as under ours.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::{collections::BTreeMap, fmt::Write, path::PathBuf, time::Duration};

use dashboard::{
    spec::{DurationSpec, MAX_CACHE_TTL, MIN_CACHE_TTL, MIN_REFRESH, ParamType, SCHEMA_JSON},
    template,
    validate::{self, Issue},
    yaml,
};
use serde_json::{Value, json};

fn samples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../samplefiles/dashboards")
}

fn read(path: &PathBuf) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml_files(dir: &PathBuf) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn name(path: &std::path::Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

fn show(issues: &[Issue]) -> String {
    let mut out = String::new();
    for i in issues {
        let _ = writeln!(
            out,
            "  {}:{} {} — {}",
            i.line.unwrap_or(0),
            i.column.unwrap_or(0),
            i.path,
            i.message
        );
    }
    out
}

fn schema() -> Value {
    serde_json::from_str(SCHEMA_JSON).unwrap()
}

/// The schema as a validator; `formats` makes `format` an assertion (as ajv-formats does),
/// which must change no verdict: the patterns already say everything the formats do.
fn validator(formats: bool) -> jsonschema::Validator {
    jsonschema::options()
        .should_validate_formats(formats)
        .build(&schema())
        .unwrap()
}

/// A validator for one node of the schema (its `$ref`s resolve against the whole schema's
/// `$defs`).
fn part(pointer: &str, formats: bool) -> jsonschema::Validator {
    let root = schema();
    let node = root
        .pointer(pointer)
        .unwrap_or_else(|| panic!("{pointer}"))
        .clone();
    let wrapped = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$defs": root["$defs"],
        "allOf": [node],
    });
    jsonschema::options()
        .should_validate_formats(formats)
        .build(&wrapped)
        .unwrap()
}

const HEAD: &str = "version: 1
kind: dashboard
slug: test
title: Test
connection: 00000000-0000-4000-8000-000000000001
";

/// A dashboard with one parameter `p` (`param`, the inside of its flow mapping after the id),
/// one query using it and one tile; `extra` goes before `parameters`.
fn with_param(extra: &str, param: &str) -> String {
    format!(
        "{HEAD}{extra}parameters:\n  - {{ id: p, {param} }}\nqueries:\n  - {{ id: q, sql: \"SELECT {{{{ param('p') }}}} AS n\" }}\nlayout:\n  - {{ id: t, type: kpi, query: q, value: n, position: {{ x: 0, y: 0, w: 3, h: 2 }} }}\n"
    )
}

/// A dashboard with top-level `extra` (refresh, cache), a query `base` and a second query
/// whose SQL is `sql` (a YAML scalar), and a tile at `position` showing the second.
fn with(extra: &str, sql: &str, position: &str) -> String {
    format!(
        "{HEAD}{extra}parameters:\n  - {{ id: p, type: int, default: 1 }}\nqueries:\n  - {{ id: base, sql: \"SELECT {{{{ param('p') }}}} AS n\" }}\n  - id: q\n    sql: {sql}\nlayout:\n  - {{ id: t, type: kpi, query: q, value: n, position: {position} }}\n"
    )
}

fn plain(extra: &str) -> String {
    with(
        extra,
        "\"SELECT n FROM {{ ref('base') }}\"",
        "{ x: 0, y: 0, w: 3, h: 2 }",
    )
}

fn tile_at(position: &str) -> String {
    with("", "\"SELECT n FROM {{ ref('base') }}\"", position)
}

fn sql(sql: &str) -> String {
    with("", sql, "{ x: 0, y: 0, w: 3, h: 2 }")
}

/// What a case is expected to get.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// Both accept it.
    Valid,
    /// Both refuse it.
    Invalid,
    /// The server refuses it for a reason no JSON Schema can state (the YAML itself, or a
    /// relation between two values); the schema accepts the document (or cannot read it).
    ServerOnly,
}

/// The schema's verdict: `None` when our loader cannot read the YAML (the schema then has
/// nothing to judge), else whether the document is valid, the same with and without formats.
fn schema_verdict(validators: &[jsonschema::Validator; 2], source: &str) -> Option<bool> {
    let (value, _) = yaml::load(source).ok()?;
    let verdict = validators[0].is_valid(&value);
    assert_eq!(
        verdict,
        validators[1].is_valid(&value),
        "formats change the verdict on:\n{source}"
    );
    Some(verdict)
}

/// The hand-written cases: each rule the schema and the server share, around its bounds.
fn cases() -> Vec<(String, String, Expect)> {
    use Expect::*;
    let mut out: Vec<(String, String, Expect)> = Vec::new();
    let mut add = |name: &str, source: String, expect: Expect| {
        out.push((name.to_owned(), source, expect));
    };
    add("the baseline", plain(""), Valid);

    // refresh.every: at least 5m
    for (every, expect) in [
        ("4m", Invalid),
        ("1m", Invalid),
        ("5m", Valid),
        ("9m", Valid),
        ("10m", Valid),
        ("1h", Valid),
        ("1d", Valid),
        ("0m", Invalid),
        ("05m", Invalid),
        ("300s", Invalid),
        ("999999999d", Valid),
        ("9999999999d", Invalid),
    ] {
        add(
            &format!("refresh every {every}"),
            plain(&format!("refresh: {{ every: {every} }}\n")),
            expect,
        );
    }
    // cache.ttl: 1m to 30d
    for (ttl, expect) in [
        ("1m", Valid),
        ("43200m", Valid),
        ("43201m", Invalid),
        ("99999m", Invalid),
        ("720h", Valid),
        ("721h", Invalid),
        ("30d", Valid),
        ("31d", Invalid),
        ("0d", Invalid),
    ] {
        add(
            &format!("cache ttl {ttl}"),
            plain(&format!("cache: {{ ttl: {ttl} }}\n")),
            expect,
        );
    }
    // Dates that exist, as defaults and as allowed values
    for (date, expect) in [
        ("2025-02-28", Valid),
        ("2025-02-29", Invalid),
        ("2025-02-30", Invalid),
        ("2024-02-29", Valid),
        ("2000-02-29", Valid),
        ("1900-02-29", Invalid),
        ("2025-04-30", Valid),
        ("2025-04-31", Invalid),
        ("2025-12-31", Valid),
        ("2025-13-01", Invalid),
        ("2025-00-10", Invalid),
        ("2025-01-00", Invalid),
        ("0000-02-29", Valid),
        ("2025-1-01", Invalid),
        ("tomorrow", Invalid),
    ] {
        add(
            &format!("date default {date}"),
            with_param("", &format!("type: date, default: \"{date}\"")),
            expect,
        );
        add(
            &format!("date allowed {date}"),
            with_param(
                "",
                &format!("type: date, allowed: [\"2025-01-01\", \"{date}\"]"),
            ),
            expect,
        );
    }
    // Timestamps that exist
    for (at, expect) in [
        ("2025-02-28T10:00:00Z", Valid),
        ("2025-02-28t10:00:00.123456z", Valid),
        ("2025-02-28T10:00:00+05:30", Valid),
        ("2025-02-28T10:00:00-00:00", Valid),
        ("2025-02-28T23:59:59+23:59", Valid),
        ("2025-02-30T10:00:00Z", Invalid),
        ("2025-02-28T24:00:00Z", Invalid),
        ("2025-02-28T10:60:00Z", Invalid),
        ("2025-02-28T10:00:61Z", Invalid),
        ("2025-02-28T10:00:00+24:00", Invalid),
        ("2025-02-28T10:00:00+05:60", Invalid),
        ("2025-02-28T10:00:00", Invalid),
        // Accepted by the time crate, refused by the schema and so by the server.
        ("2025-02-28 10:00:00Z", Invalid),
        ("2025-01-31T23:59:60Z", Invalid),
    ] {
        add(
            &format!("timestamp default {at}"),
            with_param("", &format!("type: timestamp, default: \"{at}\"")),
            expect,
        );
    }
    // A required parameter has no default
    for (param, expect) in [
        ("type: int, required: true", Valid),
        ("type: int, required: true, default: 3", Invalid),
        ("type: int, required: false, default: 3", Valid),
        ("type: int, default: 3", Valid),
        ("type: int, required: false", Valid),
    ] {
        add(&format!("parameter {param}"), with_param("", param), expect);
    }
    // The grid
    for (position, expect) in [
        ("{ x: 0, y: 0, w: 12, h: 2 }", Valid),
        ("{ x: 8, y: 0, w: 4, h: 2 }", Valid),
        ("{ x: 8, y: 0, w: 5, h: 2 }", Invalid),
        ("{ x: 11, y: 0, w: 1, h: 2 }", Valid),
        ("{ x: 11, y: 0, w: 2, h: 2 }", Invalid),
        ("{ x: 1, y: 0, w: 12, h: 2 }", Invalid),
        // Whole numbers written as floats are integers to JSON Schema, and so to the server.
        ("{ x: 0.0, y: 0, w: 3.0, h: 2.0 }", Valid),
        ("{ x: 8.0, y: 0, w: 5, h: 2 }", Invalid),
        ("{ x: 0.5, y: 0, w: 3, h: 2 }", Invalid),
    ] {
        add(&format!("tile at {position}"), tile_at(position), expect);
    }
    add(
        "version 1.0",
        plain("").replacen("version: 1\n", "version: 1.0\n", 1),
        Valid,
    );
    // Templates
    for (text, expect) in [
        ("\"SELECT n FROM {{ref('base')}}\"", Valid),
        (
            "\"SELECT n FROM {{\\n ref ( \\\"base\\\" )\\t}} WHERE n = {{ param('p') }}\"",
            Valid,
        ),
        (
            "\"SELECT n FROM {{ ref('base') }} WHERE '}}' <> '{'\"",
            Valid,
        ),
        ("\"SELECT n FROM {{ ref('base') }} WHERE x = '{'\"", Valid),
        ("\"SELECT n FROM {{ source('base') }}\"", Invalid),
        ("\"SELECT n FROM {{ ref(base) }}\"", Invalid),
        ("\"SELECT n FROM {{{ ref('base') }}\"", Invalid),
        ("\"SELECT n FROM {{ ref('base') \"", Invalid),
        ("\"SELECT n FROM {{ ref('base') | upper }}\"", Invalid),
        ("\"SELECT n FROM {{ ref('') }}\"", Invalid),
        ("\"SELECT n FROM {{ }}\"", Invalid),
        ("\"SELECT n FROM {{ ref('ba\\nse') }}\"", Invalid),
        ("\"SELECT n FROM {{ ref('base') }}{{ oops }}\"", Invalid),
    ] {
        add(&format!("sql {text}"), sql(text), expect);
    }

    // What only the server can say
    add(
        "two queries with one id",
        plain("").replace("id: q\n", "id: base\n"),
        ServerOnly,
    );
    add(
        "a default that is not allowed",
        with_param("", "type: int, default: 3, allowed: [1, 2]"),
        ServerOnly,
    );
    add(
        "an int default past 2^53 written as a float",
        with_param("", "type: int, default: 1.0e16"),
        ServerOnly,
    );
    add(
        "an SQL under 102400 characters but over 100 KB",
        sql(&format!("\"SELECT '{}' AS n\"", "é".repeat(60_000))),
        ServerOnly,
    );
    add(
        "a ref to no query",
        sql("\"SELECT n FROM {{ ref('nothing') }}\""),
        ServerOnly,
    );
    add(
        "an undeclared parameter",
        sql("\"SELECT n FROM {{ ref('base') }} WHERE {{ param('nope') }}\""),
        ServerOnly,
    );
    add(
        "a duplicate key",
        plain("").replacen("title: Test\n", "title: Test\ntitle: Again\n", 1),
        ServerOnly,
    );
    out
}

/// One issue as a README row: path, `line:column`, message.
type Row = (String, String, String);

/// What `samplefiles/dashboards/invalid/README.md` says of each invalid sample.
struct Readme {
    /// file → (schema column, [(path, at, message)])
    errors: BTreeMap<String, (String, Vec<Row>)>,
    /// file → [(path, at, message)]
    warnings: BTreeMap<String, Vec<Row>>,
}

/// The cells of a table row (`|` escaped as `\|` inside a cell).
fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    let mut out = vec![String::new()];
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                out.last_mut().unwrap().push('|');
                chars.next();
            }
            '|' => out.push(String::new()),
            c => out.last_mut().unwrap().push(c),
        }
    }
    out.iter().map(|c| c.trim().to_owned()).collect()
}

fn unquote(cell: &str) -> String {
    match cell {
        "(root)" => String::new(),
        c => c.trim_matches('`').to_owned(),
    }
}

fn readme() -> Readme {
    let text = read(&samples().join("invalid/README.md"));
    let mut readme = Readme {
        errors: BTreeMap::new(),
        warnings: BTreeMap::new(),
    };
    let mut table = None;
    for line in text.lines() {
        if !line.starts_with('|') {
            table = None;
            continue;
        }
        let row = cells(line);
        if row[0] == "file" {
            table = Some(row.len());
            continue;
        }
        if row[0].starts_with("---") {
            continue;
        }
        match (table, row.as_slice()) {
            (Some(5), [file, schema, path, at, message]) => {
                let entry = readme
                    .errors
                    .entry(unquote(file))
                    .or_insert_with(|| (schema.clone(), Vec::new()));
                assert_eq!(&entry.0, schema, "{file}: one schema verdict per file");
                entry.1.push((unquote(path), at.clone(), message.clone()));
            }
            (Some(4), [file, path, at, message]) => readme
                .warnings
                .entry(unquote(file))
                .or_default()
                .push((unquote(path), at.clone(), message.clone())),
            _ => panic!("README: unexpected row {line}"),
        }
    }
    readme
}

fn rows(issues: &[Issue]) -> Vec<Row> {
    issues
        .iter()
        .map(|i| {
            let at = match (i.line, i.column) {
                (Some(l), Some(c)) => format!("{l}:{c}"),
                _ => String::new(),
            };
            (i.path.clone(), at, i.message.clone())
        })
        .collect()
}

fn table(file: &str, schema: &str, rows: &[Row]) -> String {
    let mut out = String::new();
    for (path, at, message) in rows {
        let path = if path.is_empty() {
            "(root)".to_owned()
        } else {
            format!("`{path}`")
        };
        let message = message.replace('|', "\\|");
        let _ = writeln!(
            out,
            "| `{file}` | {schema}{}{path} | {at} | {message} |",
            if schema.is_empty() { "" } else { " | " }
        );
    }
    out
}

// ---------------------------------------------------------------------------------------
// Verdicts

#[test]
fn the_schema_and_the_server_agree_on_every_case() {
    let mut corpus = cases();
    for file in yaml_files(&samples()) {
        corpus.push((name(&file), read(&file), Expect::Valid));
    }
    let readme = readme();
    for file in yaml_files(&samples().join("invalid")) {
        let file_name = name(&file);
        let (schema, _) = readme
            .errors
            .get(&file_name)
            .unwrap_or_else(|| panic!("the README lists {file_name}"));
        let expect = match schema.as_str() {
            "yes" => Expect::Invalid,
            "no" | "YAML" => Expect::ServerOnly,
            other => panic!("{file_name}: schema column `{other}`"),
        };
        corpus.push((format!("invalid/{file_name}"), read(&file), expect));
    }
    let validators = [validator(false), validator(true)];
    let mut wrong = Vec::new();
    for (name, source, expect) in &corpus {
        let parsed = validate::parse(source);
        let server = parsed.is_valid();
        let schema = schema_verdict(&validators, source);
        let ok = match expect {
            Expect::Valid => server && schema == Some(true),
            Expect::Invalid => !server && schema == Some(false),
            Expect::ServerOnly => !server && schema != Some(false),
        };
        if !ok {
            wrong.push(format!(
                "{name}: expected {expect:?}, server {}, schema {schema:?}\n{}",
                if server { "valid" } else { "invalid" },
                show(&parsed.errors)
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Each soft rule's error, when the schema also finds a hard one, is reported in the words of
/// the structural check (which only runs when the schema found nothing hard).
#[test]
fn the_schema_words_shared_rules_as_the_structural_checks_do() {
    let soft = format!(
        "{HEAD}refresh: {{ every: 4m }}\ncache: {{ ttl: 31d }}\nparameters:\n  - {{ id: d, type: date, default: \"2025-02-30\", required: true }}\n  - {{ id: s, type: timestamp, allowed: [\"2025-01-31T23:59:60Z\", \"2025-01-31 10:00:00Z\"] }}\nqueries:\n  - {{ id: q, sql: \"SELECT {{{{ param('d') }}}}, {{{{ param('s') }}}} AS n FROM {{{{ nope }}}}\" }}\nlayout:\n  - {{ id: t, type: kpi, query: q, value: n, position: {{ x: 9, y: 0, w: 4, h: 2 }} }}\n"
    );
    let alone = validate::parse(&soft);
    // Soft errors only: the structural checks ran (and so the spec is there).
    assert!(alone.spec.is_some(), "{}", show(&alone.errors));
    // With a hard error (a title that is a number) the schema reports them itself.
    let with_hard = validate::parse(&soft.replace("title: Test", "title: 2024"));
    assert!(with_hard.spec.is_none());
    let hard: Vec<Issue> = with_hard
        .errors
        .iter()
        .filter(|e| e.path != "title")
        .cloned()
        .collect();
    assert_eq!(
        rows(&hard),
        rows(&alone.errors),
        "schema:\n{}structural checks:\n{}",
        show(&hard),
        show(&alone.errors)
    );
    assert_eq!(alone.errors.len(), 8, "{}", show(&alone.errors));
    for fragment in [
        "refreshing every 4m is too often",
        "a cache TTL of 31d is too long",
        "`2025-02-30` is not a date",
        "`d` is required yet has a default",
        "`2025-01-31T23:59:60Z` is a leap second",
        "write T between the date and the time",
        "unknown function `nope` in template `{{ nope }}`",
        "tile `t` does not fit the 12-column grid: x 9 + w 4 = 13",
    ] {
        assert!(
            alone.errors.iter().any(|e| e.message.contains(fragment)),
            "{fragment}:\n{}",
            show(&alone.errors)
        );
    }
}

// ---------------------------------------------------------------------------------------
// Rule by rule, over many values

#[test]
fn durations_bounds_match_the_server() {
    let refresh = part("/properties/refresh/properties/every", false);
    let ttl = part("/properties/cache/properties/ttl", false);
    let mut values: Vec<String> = Vec::new();
    for (unit, max) in [("m", 50_000), ("h", 1_000), ("d", 100)] {
        values.extend((0..=max).map(|n| format!("{n}{unit}")));
        values.extend([
            format!("0{unit}"),
            format!("05{unit}"),
            format!("9999999999{unit}"),
            format!("99999999999{unit}"),
            format!("-5{unit}"),
            format!("1.5{unit}"),
            format!("+5{unit}"),
            format!(" 5{unit}"),
        ]);
    }
    values.extend(["", "m", "5", "5s", "5M", "1w"].map(str::to_owned));
    for v in &values {
        // The server: what `$defs/duration` admits (read by DurationSpec), within the bounds.
        let d = v.parse::<DurationSpec>().ok().filter(|_| v.len() <= 10);
        let server_refresh = d.is_some_and(|d| d.0 >= MIN_REFRESH);
        let server_ttl = d.is_some_and(|d| (MIN_CACHE_TTL..=MAX_CACHE_TTL).contains(&d.0));
        assert_eq!(refresh.is_valid(&json!(v)), server_refresh, "refresh {v}");
        assert_eq!(ttl.is_valid(&json!(v)), server_ttl, "ttl {v}");
    }
    assert_eq!(MIN_REFRESH, Duration::from_secs(300));
    assert_eq!(MAX_CACHE_TTL, Duration::from_secs(30 * 86400));
}

#[test]
fn dates_match_the_server() {
    let date = part("/$defs/date", false);
    let date_format = part("/$defs/date", true);
    let mut values: Vec<String> = Vec::new();
    let years = [
        0, 1, 4, 100, 400, 1600, 1700, 1900, 1999, 2000, 2023, 2024, 2025, 2100, 2400, 9996, 9999,
    ];
    for y in years {
        for m in 0..=13 {
            for d in 0..=32 {
                values.push(format!("{y:04}-{m:02}-{d:02}"));
            }
        }
    }
    values.extend((0..=9999).map(|y| format!("{y:04}-02-29")));
    values.extend(
        [
            "2025-1-01",
            "25-01-01",
            "+2025-01-01",
            "-2025-01-01",
            "12025-01-01",
            "2025-01-01T00:00:00Z",
            "2025/01/01",
            " 2025-01-01",
            "2025-01-01\n",
            "",
        ]
        .map(str::to_owned),
    );
    for v in &values {
        let server = ParamType::Date.from_json(&json!(v)).is_ok();
        assert_eq!(date.is_valid(&json!(v)), server, "{v:?}");
        assert_eq!(
            date_format.is_valid(&json!(v)),
            server,
            "{v:?} (with formats)"
        );
    }
}

#[test]
fn timestamps_match_the_server_but_for_separators_and_leap_seconds() {
    let timestamp = part("/$defs/timestamp", false);
    let with_formats = part("/$defs/timestamp", true);
    let dates = [
        "2024-02-29",
        "2025-02-29",
        "2025-04-30",
        "2025-04-31",
        "2025-12-31",
        "0000-01-01",
        "9999-12-31",
    ];
    let offsets = [
        "Z", "z", "+00:00", "-00:00", "+23:59", "-23:59", "+24:00", "+05:60", "+0530", "",
    ];
    let mut stricter = 0;
    for date in dates {
        for sep in ["T", "t", " ", "x"] {
            for hour in ["00", "09", "23", "24", "99"] {
                for minute in ["00", "59", "60"] {
                    for second in ["00", "59", "60", "61"] {
                        for fraction in ["", ".5", ".123456789123", "."] {
                            for offset in offsets {
                                let v = format!(
                                    "{date}{sep}{hour}:{minute}:{second}{fraction}{offset}"
                                );
                                let server = ParamType::Timestamp.from_json(&json!(v)).is_ok();
                                let schema = timestamp.is_valid(&json!(v));
                                assert_eq!(schema, with_formats.is_valid(&json!(v)), "{v}");
                                // The schema admits T or t only, and no leap second (the time
                                // crate takes any separator, and :60 at the end of a month):
                                // there the server follows the schema (a soft rule kept).
                                let exception = !matches!(sep, "T" | "t") || second == "60";
                                if exception && server {
                                    assert!(!schema, "{v}");
                                    stricter += 1;
                                } else {
                                    assert_eq!(schema, server, "{v}");
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(stricter > 0);
    for v in ["2025-01-31T23:59:60Z", "2025-01-31 10:00:00Z"] {
        let parsed = validate::parse(&with_param(
            "",
            &format!("type: timestamp, default: \"{v}\""),
        ));
        assert!(!parsed.is_valid(), "{v}");
    }
}

#[test]
fn the_grid_matches_the_server() {
    let position = part("/$defs/position", false);
    for x in 0..=12 {
        for w in 0..=13 {
            let server = x <= 11 && (1..=12).contains(&w) && x + w <= 12;
            let v = json!({ "x": x, "y": 0, "w": w, "h": 1 });
            assert_eq!(position.is_valid(&v), server, "x {x} w {w}");
        }
    }
}

#[test]
fn a_required_parameter_with_a_default_is_refused_by_both() {
    let parameter = part("/$defs/parameter", false);
    for required in [None, Some(true), Some(false)] {
        for default in [None, Some(3)] {
            let mut v = json!({ "id": "p", "type": "int" });
            if let Some(r) = required {
                v["required"] = json!(r);
            }
            if let Some(d) = default {
                v["default"] = json!(d);
            }
            let server = !(required == Some(true) && default.is_some());
            assert_eq!(parameter.is_valid(&v), server, "{v}");
        }
    }
}

/// A deterministic pseudo-random sequence (xorshift).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % n as u64).unwrap()
    }
}

#[test]
fn templates_match_the_server() {
    let templates = part("/$defs/templates", false);
    let agree = |sql: &str| {
        let server = template::scan_all(sql).1.is_empty();
        assert_eq!(templates.is_valid(&json!(sql)), server, "{sql:?}");
        server
    };
    for sql in [
        "SELECT * FROM {{ ref(\"a\") }} WHERE r = {{param('p')}} AND {{\n ref ( 'b' )\n}}",
        "SELECT '}}'",
        "",
        "{",
        "}",
        "{{ x }}",
        "{{ }}",
        "{{}}",
        "{{ ref(a) }}",
        "{{ ref(\"a') }}",
        "{{ ref(\"\") }}",
        "{{ ref(\"a\") | upper }}",
        "{{ ref \"a\" }}",
        "{{ source('a', 'b') }}",
        "{{ ref('a'",
        "{{ 1 + 1 }}",
        "{{ ref('}') }}",
        "{{ ref('a}') }}",
        "{{ ref('a}}') }}",
        "{{ ref('a{{b') }}",
        "{{ ref('a') }}}",
        "{{{ ref('a') }}",
        "{ {{ ref('a') }}",
        "{{ ref2('a') }}",
        "{{ REF('a') }}",
        "{{\u{b}ref('a') }}",
        "{{\u{c}ref('a')\r}}",
        "{{ ref('é') }}",
        "{{ ref('a\tb') }}",
    ] {
        agree(sql);
    }
    let tokens = [
        "{",
        "}",
        "{{",
        "}}",
        "ref",
        "param",
        "(",
        ")",
        "\"",
        "'",
        " ",
        "\n",
        "\r",
        "\t",
        "\u{b}",
        "\u{c}",
        "a",
        "x1",
        "é",
        "ref(",
        "{{ ref('a') }}",
        "{{param(\"p\")}}",
        "SELECT ",
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut valid, mut invalid) = (0, 0);
    for _ in 0..30_000 {
        let mut sql = String::new();
        for _ in 0..rng.below(14) {
            sql.push_str(tokens[rng.below(tokens.len())]);
        }
        if agree(&sql) {
            valid += 1;
        } else {
            invalid += 1;
        }
    }
    assert!(
        valid > 1000 && invalid > 1000,
        "{valid} valid, {invalid} invalid"
    );
    // The largest SQL the schema admits is judged quickly.
    let long = format!("SELECT {} FROM {{{{ ref('a') }}}}", "n, ".repeat(25_000));
    assert!(agree(&long));
}

// ---------------------------------------------------------------------------------------
// The invalid samples' README

#[test]
fn the_invalid_readme_matches_what_the_validator_reports() {
    let readme = readme();
    let dir = samples().join("invalid");
    let files: Vec<String> = yaml_files(&dir).iter().map(|p| name(p)).collect();
    let mut listed: Vec<String> = readme.errors.keys().cloned().collect();
    listed.sort();
    assert_eq!(
        files, listed,
        "the README lists every invalid sample, and only those"
    );
    let mut wrong = String::new();
    for file in &files {
        let parsed = validate::parse(&read(&dir.join(file)));
        assert!(!parsed.is_valid(), "{file} is invalid");
        let (schema, expected) = &readme.errors[file];
        if rows(&parsed.errors) != *expected {
            wrong.push_str(&table(file, schema, &rows(&parsed.errors)));
        }
        let warned = readme.warnings.get(file).cloned().unwrap_or_default();
        if rows(&parsed.warnings) != warned {
            wrong.push_str("warnings: ");
            wrong.push_str(&table(file, "", &rows(&parsed.warnings)));
        }
    }
    for file in readme.warnings.keys() {
        assert!(
            files.contains(file),
            "README warns about {file}, which is no sample"
        );
    }
    assert!(
        wrong.is_empty(),
        "samplefiles/dashboards/invalid/README.md should say:\n{wrong}"
    );
}

// ---------------------------------------------------------------------------------------
// YAML 1.1

/// Why a plain scalar reads differently under YAML 1.1 (as js-yaml 3, ajv-cli's loader, or
/// PyYAML read it) than under the 1.2 core schema we read it by, if it does. (`y` and `n`,
/// booleans in the 1.1 spec, are left out: those loaders read them as strings, and `y` is a
/// key of every position.)
fn yaml_1_1_reading(text: &str) -> Option<&'static str> {
    let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    // A 1.1 timestamp: YYYY-M-D, optionally followed by a time.
    let mut parts = text.splitn(3, '-');
    if let (Some(y), Some(m), Some(d)) = (parts.next(), parts.next(), parts.next()) {
        let day: String = d.chars().take_while(char::is_ascii_digit).collect();
        if y.len() == 4
            && digits(y.as_bytes())
            && (1..=2).contains(&m.len())
            && digits(m.as_bytes())
            && (1..=2).contains(&day.len())
        {
            return Some("a date (a timestamp in YAML 1.1)");
        }
    }
    let lower = text.to_ascii_lowercase();
    if ["yes", "no", "on", "off"].contains(&lower.as_str()) {
        return Some("a boolean in YAML 1.1");
    }
    let unsigned = text.trim_start_matches(['-', '+']).as_bytes();
    if unsigned.first().is_some_and(u8::is_ascii_digit) {
        if unsigned.contains(&b'_') || lower.starts_with("0b") || text.contains(':') {
            return Some("a number in YAML 1.1");
        }
        if unsigned.len() > 1 && unsigned[0] == b'0' && digits(unsigned) {
            return Some("an octal number in YAML 1.1");
        }
        if lower.starts_with("0o") {
            return Some("a string in YAML 1.1");
        }
    }
    None
}

#[test]
fn the_samples_read_the_same_under_yaml_1_1() {
    use saphyr_parser::{Event, Parser, ScalarStyle};
    // The check itself.
    for (text, differs) in [
        ("2025-01-31", true),
        ("2025-1-1", true),
        ("2025-01-31T10:00:00Z", true),
        ("NO", true),
        ("on", true),
        ("1_000", true),
        ("12:30", true),
        ("010", true),
        ("0b11", true),
        ("EMEA", false),
        ("24h", false),
        ("/", false),
        ("10", false),
        ("00000000-0000-4000-8000-000000000001", false),
        ("SELECT 1", false),
    ] {
        assert_eq!(yaml_1_1_reading(text).is_some(), differs, "{text}");
    }
    let mut found = Vec::new();
    let mut files = yaml_files(&samples());
    files.extend(yaml_files(&samples().join("invalid")));
    for file in files {
        let source = read(&file);
        // A file the parser stops on (bad-yaml.yaml) is checked up to there.
        for (event, span) in Parser::new_from_str(&source).map_while(Result::ok) {
            if let Event::Scalar(text, ScalarStyle::Plain, _, None) = event
                && let Some(why) = yaml_1_1_reading(&text)
            {
                found.push(format!(
                    "{}:{}: `{text}` is {why}: quote it",
                    name(&file),
                    span.start.line()
                ));
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}
