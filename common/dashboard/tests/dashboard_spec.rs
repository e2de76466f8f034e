//! The dashboard format (v1): the samples in `samplefiles/dashboards/`, the schema and the
//! Rust types agreeing, YAML pitfalls, positions, and every structural check.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::{collections::BTreeSet, fmt::Write, path::PathBuf, time::Duration};

use base::ParamValue;
use dashboard::{
    spec::{
        DashboardSpec, DurationSpec, ParamType, ParameterSpec, SCHEMA_ID, SCHEMA_JSON, ThemeColor,
        TileType, ViewType,
    },
    template,
    validate::{self, Issue, Parsed},
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

fn schema_validator() -> jsonschema::Validator {
    jsonschema::validator_for(&serde_json::from_str(SCHEMA_JSON).unwrap()).unwrap()
}

const HEAD: &str = "version: 1
kind: dashboard
slug: test
title: Test
connection: 00000000-0000-4000-8000-000000000001
";

/// A dashboard from the fixed head plus `rest`.
fn doc(rest: &str) -> String {
    format!("{HEAD}{rest}")
}

fn has(parsed: &Parsed, path: &str, fragment: &str) -> bool {
    parsed
        .errors
        .iter()
        .any(|e| e.path == path && e.message.contains(fragment))
}

// ---------------------------------------------------------------------------------------
// Samples

#[test]
fn the_valid_samples_parse_with_no_errors_and_no_warnings() {
    let files = yaml_files(&samples());
    assert!(
        files.len() >= 2,
        "valid samples expected in {}",
        samples().display()
    );
    for file in files {
        let source = read(&file);
        assert!(
            source.starts_with(&format!("# yaml-language-server: $schema={SCHEMA_ID}")),
            "{} names the schema on its first line",
            file.display()
        );
        let parsed = validate::parse(&source);
        assert!(
            parsed.is_valid() && parsed.warnings.is_empty(),
            "{}:\n{}{}",
            file.display(),
            show(&parsed.errors),
            show(&parsed.warnings)
        );
    }
}

#[test]
fn the_revenue_sample_uses_every_tile_type_a_parameter_and_a_ref() {
    let parsed = validate::parse(&read(&samples().join("revenue-overview.yaml")));
    let spec = parsed.spec.unwrap();
    let types: BTreeSet<&str> = spec.layout.iter().map(|t| t.r#type.as_str()).collect();
    assert_eq!(
        types,
        BTreeSet::from(["bar", "kpi", "line", "pie", "table", "text"])
    );
    assert!(!spec.parameters.is_empty());
    assert!(
        spec.queries
            .iter()
            .any(|q| !template::refs(&q.sql).is_empty())
    );
    assert_eq!(spec.cache_ttl(), Duration::from_secs(86400));
    assert_eq!(spec.refresh_every(), Some(Duration::from_secs(86400)));
    assert_eq!(spec.view_type, ViewType::Analytical);
    assert_eq!(spec.theme_color(), ThemeColor::Neutral);
}

/// Is every value of `input` in `output` (durations compared as durations)?
fn contained(input: &Value, output: &Value, path: &str) -> Result<(), String> {
    match (input, output) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let inner = format!("{path}.{k}");
                let w = b.get(k).ok_or(format!("{inner} is lost"))?;
                contained(v, w, &inner)?;
            }
            Ok(())
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                contained(v, w, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        (Value::String(a), Value::String(b))
            if path.ends_with(".every") || path.ends_with(".ttl") =>
        {
            let (a, b): (DurationSpec, DurationSpec) = (a.parse()?, b.parse()?);
            if a == b {
                Ok(())
            } else {
                Err(format!("{path}: {a} became {b}"))
            }
        }
        (a, b) if a == b => Ok(()),
        (a, b) => Err(format!("{path}: {a} became {b}")),
    }
}

#[test]
fn the_valid_samples_round_trip_through_the_rust_types() {
    let validator = schema_validator();
    for file in yaml_files(&samples()) {
        let source = read(&file);
        let (input, _) = yaml::load(&source).unwrap();
        let spec = validate::parse(&source).spec.unwrap();
        let output = serde_json::to_value(&spec).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&output)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", file.display());
        contained(&input, &output, "").unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let again: DashboardSpec = serde_json::from_value(output).unwrap();
        assert_eq!(again, spec, "{}", file.display());
    }
}

// What each invalid sample must produce is in `samplefiles/dashboards/invalid/README.md`,
// which `schema_agreement.rs` compares with the validator's answers.

#[test]
fn schema_errors_are_all_reported_each_on_its_line() {
    let parsed = validate::parse(&read(&samples().join("invalid/schema-errors.yaml")));
    let got: Vec<(&str, usize, usize)> = parsed
        .errors
        .iter()
        .map(|e| (e.path.as_str(), e.line.unwrap(), e.column.unwrap()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("version", 1, 10),
            ("slug", 3, 7),
            ("theme.color", 6, 8),
            ("theme.colour", 6, 10),
            ("layout[0].value", 10, 5),
            ("layout[0].position.x", 10, 55),
            ("layout[1].type", 11, 24),
        ],
        "{}",
        show(&parsed.errors)
    );
    assert!(has(&parsed, "version", "must be 1"));
    assert!(has(&parsed, "slug", "not a valid slug"));
    assert!(has(&parsed, "layout[0].value", "a kpi tile needs `value`"));
    assert!(has(&parsed, "layout[0].position.x", "at most 11"));
    assert!(has(&parsed, "layout[1].type", "`donut` is not one of"));
}

// ---------------------------------------------------------------------------------------
// All at once

#[test]
fn every_structural_problem_is_reported_at_once() {
    let source = doc(r#"refresh: { every: 2m }
cache: { ttl: 31d }
parameters:
  - { id: region, type: string, default: EMEA, required: true }
  - { id: region, type: string }
  - { id: unused, type: int, default: 3, allowed: [1, 2] }
queries:
  - id: a
    sql: SELECT * FROM {{ ref("b") }} WHERE r = {{ param("regoin") }}
  - id: b
    depends_on: [a, zzz]
    sql: SELECT {{ oops }} FROM t
  - id: a
    sql: SELECT 1
layout:
  - { id: t1, type: kpi, query: a, value: n, position: { x: 0, y: 0, w: 4, h: 2 } }
  - { id: t1, type: kpi, query: c, value: n, position: { x: 2, y: 0, w: 4, h: 2 } }
  - { id: t3, type: table, query: b, position: { x: 9, y: 5, w: 4, h: 2 } }
"#);
    let parsed = validate::parse(&source);
    let expected = [
        ("refresh.every", "too often"),
        ("cache.ttl", "too long"),
        ("parameters[0].required", "is required yet has a default"),
        ("parameters[1].id", "duplicate parameter id `region`"),
        ("parameters[2].default", "not one of the allowed values"),
        (
            "queries[0].sql",
            "names no declared parameter; did you mean `region`?",
        ),
        ("queries[0].sql", "a → b → a"),
        ("queries[1].depends_on[1]", "`zzz`, which is no query"),
        ("queries[1].sql", "`{{ oops }}`"),
        ("queries[2].id", "duplicate query id `a`"),
        ("layout[1].id", "duplicate tile id `t1`"),
        ("layout[1].query", "`c`, which does not exist"),
        ("layout[1].position", "overlaps tile `t1`"),
        ("layout[2].position", "x 9 + w 4 = 13"),
    ];
    for (path, fragment) in expected {
        assert!(
            has(&parsed, path, fragment),
            "{path} {fragment}:\n{}",
            show(&parsed.errors)
        );
    }
    assert_eq!(
        parsed.errors.len(),
        expected.len(),
        "{}",
        show(&parsed.errors)
    );
    assert!(
        parsed
            .errors
            .iter()
            .all(|e| e.line.is_some() && e.column.is_some())
    );
    // Sorted by position.
    let lines: Vec<usize> = parsed.errors.iter().map(|e| e.line.unwrap()).collect();
    assert!(lines.windows(2).all(|w| w[0] <= w[1]), "{lines:?}");
    let warned: Vec<&str> = parsed.warnings.iter().map(|w| w.path.as_str()).collect();
    // `region` is used by no query (the SQL says `regoin`), twice declared; `unused` neither.
    assert_eq!(
        warned,
        vec!["parameters[0]", "parameters[1]", "parameters[2]"],
        "{}",
        show(&parsed.warnings)
    );
}

#[test]
fn a_flood_of_problems_is_capped() {
    let mut source = doc("queries:\n  - { id: q, sql: SELECT 1 AS n }\nlayout:\n");
    for t in 0..30 {
        let _ = writeln!(
            source,
            "  - {{ id: t{t}, type: kpi, query: q, value: n, position: {{ x: 0, y: 0, w: 3, h: 2 }} }}"
        );
    }
    // 30 tiles in one place: 435 overlapping pairs.
    let parsed = validate::parse(&source);
    assert_eq!(parsed.errors.len(), validate::MAX_ISSUES + 1);
    assert!(
        parsed
            .errors
            .last()
            .unwrap()
            .message
            .contains("235 more errors")
    );
}

#[test]
fn unused_parameters_and_queries_are_warnings_not_errors() {
    let parsed = validate::parse(&doc(r#"parameters:
  - { id: region, type: string }
queries:
  - { id: shown, sql: SELECT 1 AS n }
  - { id: base, sql: SELECT 1 AS n }
  - { id: built, sql: "SELECT n FROM {{ ref('base') }}" }
  - { id: orphan, sql: SELECT 1 AS n }
layout:
  - { id: a, type: kpi, query: shown, value: n, position: { x: 0, y: 0, w: 3, h: 2 } }
  - { id: b, type: kpi, query: built, value: n, position: { x: 3, y: 0, w: 3, h: 2 } }
"#));
    assert!(parsed.is_valid(), "{}", show(&parsed.errors));
    let warned: Vec<(&str, &str)> = parsed
        .warnings
        .iter()
        .map(|w| (w.path.as_str(), w.message.as_str()))
        .collect();
    assert_eq!(warned.len(), 2, "{warned:?}");
    assert!(warned[0].0 == "parameters[0]" && warned[0].1.contains("`region`"));
    assert!(warned[1].0 == "queries[3]" && warned[1].1.contains("`orphan`"));
}

#[test]
fn tile_types_require_and_refuse_their_fields() {
    let parsed = validate::parse(&doc(r#"queries:
  - { id: q, sql: SELECT 1 AS n }
layout:
  - { id: a, type: line, query: q, y: n, position: { x: 0, y: 0, w: 3, h: 2 } }
  - { id: b, type: pie, query: q, value: n, columns: [n], position: { x: 3, y: 0, w: 3, h: 2 } }
  - { id: c, type: text, position: { x: 6, y: 0, w: 3, h: 2 } }
  - { id: d, type: table, query: q, text: hi, position: { x: 9, y: 0, w: 3, h: 2 } }
  - { id: e, type: bar, query: q, x: n, y: [], position: { x: 0, y: 2, w: 3, h: 2 } }
  - { id: f, type: area, query: q, x: n, y: 3, position: { x: 3, y: 2, w: 3, h: 2 } }
"#));
    for (path, fragment) in [
        ("layout[0].x", "a line tile needs `x`"),
        ("layout[1].label", "a pie tile needs `label`"),
        (
            "layout[1].columns",
            "`columns` is not used by pie tiles, which take: query, position, label, value",
        ),
        ("layout[2].text", "a text tile needs `text`"),
        ("layout[3].text", "`text` is only for text tiles"),
        ("layout[4].y", "must list at least one column"),
        (
            "layout[5].y",
            "expected a column name or a list of column names, found the number 3",
        ),
    ] {
        assert!(
            has(&parsed, path, fragment),
            "{path}:\n{}",
            show(&parsed.errors)
        );
    }
    assert_eq!(parsed.errors.len(), 7, "{}", show(&parsed.errors));
}

#[test]
fn unknown_keys_are_pointed_at_by_their_key() {
    let parsed = validate::parse(&doc(r#"queries:
  - id: q
    sql: SELECT 1 AS n
    cache: 5m
layout:
  - id: a
    type: kpi
    query: q
    value: n
    postion: { x: 0, y: 0, w: 3, h: 2 }
"#));
    let e = parsed
        .errors
        .iter()
        .find(|e| e.path == "queries[0].cache")
        .unwrap();
    assert_eq!((e.line, e.column), (Some(9), Some(5)), "{e:?}");
    let e = parsed
        .errors
        .iter()
        .find(|e| e.path == "layout[0].postion")
        .unwrap();
    assert_eq!((e.line, e.column), (Some(15), Some(5)));
    assert!(e.message.contains("did you mean `position`?"), "{e:?}");
    assert!(has(
        &parsed,
        "layout[0].position",
        "missing required key `position`"
    ));
}

// ---------------------------------------------------------------------------------------
// YAML

#[test]
fn yaml_scalars_follow_the_1_2_core_schema() {
    let (v, _) = yaml::load(
        "a: EMEA\nb: NO\nc: on\nd: yes\ne: 2024-01-01\nf: 24h\ng: 1.0\nh: 0x10\ni: ~\nj:\n\
         k: \"123\"\nl: 'true'\nm: 1_000\nn: +1\no: .5\np: True\nq: null\nr: 0o17\ns: 1e3\n\
         t: !!str 42\nu: 12:30\nv: -7\n",
    )
    .unwrap();
    assert_eq!(
        v,
        json!({
            "a": "EMEA", "b": "NO", "c": "on", "d": "yes", "e": "2024-01-01", "f": "24h",
            "g": 1.0, "h": 16, "i": null, "j": null, "k": "123", "l": "true", "m": "1_000",
            "n": 1, "o": 0.5, "p": true, "q": null, "r": 15, "s": 1000.0, "t": "42",
            "u": "12:30", "v": -7
        })
    );
}

#[test]
fn yaml_1_1_booleans_stay_strings_in_a_whole_dashboard() {
    let parsed = validate::parse(&doc(r#"parameters:
  - { id: country, type: string, default: NO, allowed: [NO, SE, DK] }
  - { id: flag, type: string, default: on }
  - { id: day, type: date, default: 2024-01-01 }
queries:
  - { id: q, sql: "SELECT {{ param('country') }}, {{ param('flag') }}, {{ param('day') }} AS n" }
layout:
  - { id: a, type: kpi, query: q, value: n, position: { x: 0, y: 0, w: 3, h: 2 } }
"#));
    assert!(parsed.is_valid(), "{}", show(&parsed.errors));
    let spec = parsed.spec.unwrap();
    assert_eq!(spec.parameters[0].default, Some(json!("NO")));
    assert_eq!(spec.parameters[1].default, Some(json!("on")));
    assert_eq!(
        spec.parameters[2].resolve(None).unwrap(),
        Some(ParamValue::Date(time::macros::date!(2024 - 01 - 01)))
    );
}

fn load_error(source: &str) -> Issue {
    match yaml::load(source) {
        Ok(_) => panic!("expected an error for {source:?}"),
        Err(e) => e,
    }
}

#[test]
fn yaml_features_that_make_no_sense_here_are_refused_clearly() {
    let e = load_error("a: 1\nb: 2\na: 3\n");
    assert_eq!((e.line, e.column), (Some(3), Some(1)));
    assert!(e.message.contains("duplicate key `a`"), "{e:?}");

    let e = load_error("a:\n  b: 1\n  \"b\": 2\n");
    assert!(e.message.contains("duplicate key `b`"), "{e:?}");

    let e = load_error("a: 1\n---\nb: 2\n");
    assert!(e.message.contains("only one YAML document"), "{e:?}");
    assert_eq!(e.line, Some(2));

    let e = load_error("a:\n  true: 1\n");
    assert_eq!((e.path.as_str(), e.line, e.column), ("a", Some(2), Some(3)));
    assert!(e.message.contains("the boolean true"), "{e:?}");

    let e = load_error("? [a, b]\n: c\n");
    assert!(e.message.contains("a list"), "{e:?}");

    let e = load_error("a: !thing { b: 1 }\n");
    assert!(e.message.contains("tags (`!thing`)"), "{e:?}");

    let e = load_error("a: !!int twelve\n");
    assert!(e.message.contains("does not match its tag"), "{e:?}");

    let e = load_error("a: .inf\n");
    assert_eq!(e.path, "a");

    let e = load_error("a: [1, 2\n");
    assert!(e.message.starts_with("YAML syntax error"), "{e:?}");
    assert!(e.line.is_some() && e.column.is_some());

    let e = load_error("a:\n\tb: 1\n");
    assert!(e.message.starts_with("YAML syntax error"), "{e:?}");

    assert!(load_error("").message.contains("empty"));
    assert!(load_error("# only a comment\n").message.contains("empty"));

    let big = format!("a: \"{}\"\n", "x".repeat(yaml::MAX_YAML_BYTES));
    let e = load_error(&big);
    assert!(e.message.contains("1 MiB") && e.line.is_none(), "{e:?}");

    let deep = format!("a: {}1{}\n", "[".repeat(40), "]".repeat(40));
    assert!(load_error(&deep).message.contains("nests deeper"));
}

#[test]
fn merge_keys_are_unknown_keys_with_a_hint() {
    let parsed = validate::parse(&doc(r#"queries:
  - { id: q, sql: SELECT 1 AS n }
layout:
  - &base { id: a, type: kpi, query: q, value: n, position: { x: 0, y: 0, w: 3, h: 2 } }
  - <<: *base
    id: b
"#));
    assert!(
        has(&parsed, "layout[1][\"<<\"]", "merge keys are not supported"),
        "{}",
        show(&parsed.errors)
    );
}

#[test]
fn anchors_and_aliases_resolve() {
    let (v, positions) = yaml::load("base: &p { x: 0, y: 0 }\nother: *p\n").unwrap();
    assert_eq!(v["other"], json!({"x": 0, "y": 0}));
    assert_eq!(positions.get("other"), Some((2, 8)));
}

#[test]
fn positions_cover_values_keys_and_items() {
    let source = "title: T\nqueries:\n  - id: a\n    sql: |\n      SELECT 1\nlayout: []\n";
    let (_, p) = yaml::load(source).unwrap();
    assert_eq!(p.get(""), Some((1, 1)));
    assert_eq!(p.get("title"), Some((1, 8)));
    assert_eq!(p.key("title"), Some((1, 1)));
    assert_eq!(p.get("queries[0]"), Some((3, 5)));
    assert_eq!(p.get("queries[0].id"), Some((3, 9)));
    assert_eq!(p.get("queries[0].sql"), Some((5, 7)));
    assert_eq!(p.get("layout"), Some((6, 9)));
    assert_eq!(p.locate("queries[0].depends_on[3]"), (Some(3), Some(5)));
    assert_eq!(p.locate("nowhere.at.all"), (Some(1), Some(1)));
    let span = p.span("queries[0].sql").unwrap();
    assert!(source[span].starts_with("SELECT 1"));
}

/// Where `{{ ref("missing") }}` lands in the YAML, whatever the scalar's style.
#[test]
fn template_problems_are_located_inside_every_scalar_style() {
    let cases: &[(&str, usize, usize)] = &[
        // plain, on the key's line
        ("    sql: SELECT n FROM {{ ref(\"missing\") }}\n", 8, 24),
        // single-quoted
        ("    sql: 'SELECT n FROM {{ ref(\"missing\") }}'\n", 8, 25),
        // double-quoted, with escapes before the template
        (
            "    sql: \"SELECT \\\"n\\\" FROM {{ ref('missing') }}\"\n",
            8,
            29,
        ),
        // literal block, after a blank line and a more-indented line
        (
            "    sql: |\n\n      SELECT n\n        FROM x\n      JOIN {{ ref('missing') }}\n",
            12,
            12,
        ),
        // folded block
        (
            "    sql: >-\n      SELECT n\n      FROM\n      {{ ref('missing') }}\n",
            11,
            7,
        ),
        // literal block with an explicit indentation indicator
        (
            "    sql: |2\n        SELECT n FROM {{ ref('missing') }}\n",
            9,
            23,
        ),
        // multi-line plain scalar
        (
            "    sql: SELECT n\n      FROM {{ ref('missing') }}\n",
            9,
            12,
        ),
        // multi-line double-quoted scalar
        (
            "    sql: \"SELECT n\n      FROM {{ ref('missing') }}\"\n",
            9,
            12,
        ),
        // non-ASCII text before it: columns count characters
        (
            "    sql: SELECT 'é' AS n FROM {{ ref('missing') }}\n",
            8,
            31,
        ),
    ];
    for (sql, line, column) in cases {
        let source = doc(&format!(
            "queries:\n  - id: q\n{sql}layout:\n  - {{ id: a, type: kpi, query: q, value: n, position: {{ x: 0, y: 0, w: 3, h: 2 }} }}\n"
        ));
        let parsed = validate::parse(&source);
        let e = parsed
            .errors
            .iter()
            .find(|e| e.message.contains("names no query"))
            .unwrap_or_else(|| panic!("{sql:?}:\n{}", show(&parsed.errors)));
        assert_eq!(
            (e.line, e.column),
            (Some(*line), Some(*column)),
            "{sql:?}:\n{source}"
        );
        let text: Vec<&str> = source.lines().collect();
        let at: String = text[line - 1].chars().skip(column - 1).take(2).collect();
        assert_eq!(at, "{{", "{sql:?}");
    }
}

#[test]
fn crlf_line_endings_locate_like_lf() {
    let source = doc("queries:\n  - id: q\n    sql: |\n      SELECT n\n      FROM {{ ref('nope') }}\nlayout: []\n")
        .replace('\n', "\r\n");
    let parsed = validate::parse(&source);
    let e = parsed
        .errors
        .iter()
        .find(|e| e.message.contains("names no query"))
        .unwrap();
    assert_eq!((e.line, e.column), (Some(10), Some(12)));
}

// ---------------------------------------------------------------------------------------
// The schema and the types

#[test]
fn the_schema_is_a_valid_2020_12_json_schema() {
    let schema: Value = serde_json::from_str(SCHEMA_JSON).unwrap();
    jsonschema::draft202012::meta::validate(&schema).unwrap();
    assert_eq!(schema["$id"], SCHEMA_ID);
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    // Every property carries a description for editors.
    fn described(node: &Value, path: &str) {
        if let Some(props) = node.get("properties").and_then(Value::as_object) {
            for (k, v) in props {
                if v.is_object() {
                    assert!(
                        v.get("description").is_some() || v.get("$ref").is_some(),
                        "{path}.{k} has a description"
                    );
                    described(v, &format!("{path}.{k}"));
                }
            }
        }
    }
    described(&schema, "");
    for (name, def) in schema["$defs"].as_object().unwrap() {
        described(def, name);
    }
}

fn enum_of(schema: &Value, pointer: &str) -> BTreeSet<String> {
    schema
        .pointer(pointer)
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("{pointer}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

fn names<T: serde::Serialize>(values: &[T]) -> BTreeSet<String> {
    values
        .iter()
        .map(|v| {
            serde_json::to_value(v)
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

#[test]
fn the_schema_and_the_rust_types_agree() {
    use TileType::*;
    let schema: Value = serde_json::from_str(SCHEMA_JSON).unwrap();
    assert_eq!(
        enum_of(&schema, "/$defs/tile/properties/type/enum"),
        names(&[Kpi, Line, Bar, Area, Pie, Table, Text])
    );
    assert_eq!(
        enum_of(&schema, "/$defs/parameter/properties/type/enum"),
        names(&[
            ParamType::String,
            ParamType::Int,
            ParamType::Float,
            ParamType::Bool,
            ParamType::Date,
            ParamType::Timestamp
        ])
    );
    assert_eq!(
        enum_of(&schema, "/properties/view_type/enum"),
        names(&[
            ViewType::Analytical,
            ViewType::Operational,
            ViewType::Strategic
        ])
    );
    assert_eq!(
        enum_of(&schema, "/properties/theme/properties/color/enum"),
        names(&[
            ThemeColor::Neutral,
            ThemeColor::Slate,
            ThemeColor::Blue,
            ThemeColor::Green,
            ThemeColor::Amber,
            ThemeColor::Red
        ])
    );

    // A spec with every field set serialises to exactly the schema's properties.
    let full = validate::parse(&doc(r#"description: d
view_type: strategic
theme: { color: red }
refresh: { every: 1h }
cache: { ttl: 2h }
parameters:
  - { id: p, type: int, default: 1, label: P, allowed: [1, 2] }
  - { id: r, type: string, required: true }
queries:
  - { id: a, description: d, sql: "SELECT {{ param('p') }}, {{ param('r') }} AS n" }
  - { id: b, sql: "SELECT * FROM {{ ref('a') }}", depends_on: [a] }
layout:
  - { id: t1, type: line, title: T, query: b, x: n, y: [n], series: n, position: { x: 0, y: 0, w: 3, h: 2 } }
  - { id: t2, type: pie, query: b, label: n, value: n, position: { x: 3, y: 0, w: 3, h: 2 } }
  - { id: t3, type: table, query: b, columns: [n], position: { x: 6, y: 0, w: 3, h: 2 } }
  - { id: t4, type: text, text: hi, position: { x: 9, y: 0, w: 3, h: 2 } }
"#));
    let spec = full
        .spec
        .unwrap_or_else(|| panic!("{}", show(&full.errors)));
    let v = serde_json::to_value(&spec).unwrap();
    assert_eq!(keys(&v), keys(&schema["properties"]));
    assert_eq!(
        keys(&v["theme"]),
        keys(&schema["properties"]["theme"]["properties"])
    );
    assert_eq!(
        keys(&v["refresh"]),
        keys(&schema["properties"]["refresh"]["properties"])
    );
    assert_eq!(
        keys(&v["cache"]),
        keys(&schema["properties"]["cache"]["properties"])
    );
    let param_keys: BTreeSet<String> = v["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(keys)
        .collect();
    assert_eq!(
        param_keys,
        keys(&schema["$defs"]["parameter"]["properties"])
    );
    let query_keys: BTreeSet<String> = v["queries"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(keys)
        .collect();
    assert_eq!(query_keys, keys(&schema["$defs"]["query"]["properties"]));
    let tile_keys: BTreeSet<String> = v["layout"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(keys)
        .collect();
    assert_eq!(tile_keys, keys(&schema["$defs"]["tile"]["properties"]));
    assert_eq!(
        keys(&v["layout"][0]["position"]),
        keys(&schema["$defs"]["position"]["properties"])
    );
    assert!(schema_validator().is_valid(&v));
}

#[test]
fn tiles_list_the_columns_they_name() {
    let parsed = validate::parse(&read(&samples().join("web-traffic.yaml")));
    let spec = parsed.spec.unwrap();
    let refs = |id: &str| spec.tile(id).unwrap().column_refs();
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    };
    assert_eq!(refs("events"), pairs(&[("value", "events")]));
    assert_eq!(
        refs("page-funnel"),
        pairs(&[
            ("x", "event_date"),
            ("y[0]", "views"),
            ("y[1]", "carts"),
            ("y[2]", "checkouts")
        ])
    );
    assert_eq!(
        refs("by-page"),
        pairs(&[("x", "page"), ("y", "events"), ("series", "event_type")])
    );
    assert_eq!(
        refs("types"),
        pairs(&[("value", "events"), ("label", "event_type")])
    );
    assert!(refs("page-table").is_empty());
}

#[test]
fn parameters_resolve_from_the_query_string_or_their_default() {
    let p: ParameterSpec = serde_json::from_value(json!({
        "id": "region", "type": "string", "default": "EMEA", "allowed": ["EMEA", "AMER"]
    }))
    .unwrap();
    assert_eq!(p.resolve(None), Ok(Some(ParamValue::String("EMEA".into()))));
    assert_eq!(
        p.resolve(Some("AMER")),
        Ok(Some(ParamValue::String("AMER".into())))
    );
    assert!(
        p.resolve(Some("APAC"))
            .unwrap_err()
            .contains("must be one of EMEA, AMER")
    );

    let p: ParameterSpec =
        serde_json::from_value(json!({ "id": "days", "type": "int", "required": true })).unwrap();
    assert!(p.resolve(None).unwrap_err().contains("required"));
    assert_eq!(p.resolve(Some("30")), Ok(Some(ParamValue::Int(30))));
    assert!(p.resolve(Some("thirty")).is_err());

    let p: ParameterSpec =
        serde_json::from_value(json!({ "id": "at", "type": "timestamp" })).unwrap();
    assert_eq!(p.resolve(None), Ok(None));
    assert!(matches!(
        p.resolve(Some("2025-03-01T10:00:00+02:00")),
        Ok(Some(ParamValue::Timestamp(_)))
    ));
}

// ---------------------------------------------------------------------------------------
// Size

/// A dashboard of `queries` queries (every fourth refs the previous one; a parameter in
/// some) and `tiles` tiles of every type, four to a row.
fn generated(queries: usize, tiles: usize) -> String {
    let mut y = String::from(
        "version: 1\nkind: dashboard\nslug: generated\ntitle: Generated\n\
         connection: 00000000-0000-4000-8000-000000000001\n\
         parameters:\n  - { id: region, type: string, default: EMEA }\nqueries:\n",
    );
    for q in 0..queries {
        let from = if q % 4 == 3 {
            format!("{{{{ ref(\"q{}\") }}}}", q - 1)
        } else {
            "analytics.revenue_daily".to_owned()
        };
        let _ = write!(
            y,
            "  - id: q{q}\n    sql: |\n      SELECT date, region, revenue AS value, orders\n      FROM {from}\n      WHERE region = {{{{ param(\"region\") }}}}\n"
        );
    }
    y.push_str("layout:\n");
    for t in 0..tiles {
        let (x, row) = ((t % 4) * 3, (t / 4) * 2);
        let q = t % queries;
        let fields = match t % 7 {
            0 => "type: kpi, value: value".to_owned(),
            1 => "type: line, x: date, y: value, series: region".to_owned(),
            2 => "type: bar, x: region, y: [value, orders]".to_owned(),
            3 => "type: area, x: date, y: value".to_owned(),
            4 => "type: pie, label: region, value: value".to_owned(),
            5 => "type: table, columns: [date, region, value]".to_owned(),
            _ => "type: text, text: \"Some **markdown**.\"".to_owned(),
        };
        let query = if t % 7 == 6 {
            String::new()
        } else {
            format!("query: q{q}, ")
        };
        let _ = writeln!(
            y,
            "  - {{ id: t{t}, {fields}, {query}title: Tile {t}, position: {{ x: {x}, y: {row}, w: 3, h: 2 }} }}"
        );
    }
    y
}

#[test]
fn a_generated_dashboard_of_50_tiles_and_20_queries_validates() {
    let source = generated(20, 50);
    let parsed = validate::parse(&source);
    assert!(parsed.is_valid(), "{}", show(&parsed.errors));
    let spec = parsed.spec.unwrap();
    assert_eq!((spec.queries.len(), spec.layout.len()), (20, 50));
}

#[test]
fn limits_of_the_format_hold() {
    // 101 queries is one too many.
    let parsed = validate::parse(&generated(101, 1));
    assert!(
        has(&parsed, "queries", "at most 100"),
        "{}",
        show(&parsed.errors)
    );
    // An SQL over 100 KB (the schema counts characters; the check counts bytes).
    let long = format!("SELECT '{}' AS n", "é".repeat(60_000));
    let parsed = validate::parse(&doc(&format!(
        "queries:\n  - id: q\n    sql: \"{long}\"\nlayout:\n  - {{ id: a, type: kpi, query: q, value: n, position: {{ x: 0, y: 0, w: 3, h: 2 }} }}\n"
    )));
    assert!(
        has(&parsed, "queries[0].sql", "the limit is 102400 bytes"),
        "{}",
        show(&parsed.errors)
    );
}

#[test]
fn alias_expansion_is_bounded() {
    // Each level doubles: 2^20 nodes if it were expanded.
    let mut source = String::from("a0: &a0 [x, x]\n");
    for i in 1..=20 {
        let p = i - 1;
        source.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}]\n"));
    }
    let e = load_error(&source);
    assert!(e.message.contains("aliases expand to more than"), "{e:?}");
}

#[test]
fn the_loader_reports_every_problem_at_once() {
    let issues = yaml::load_all("a: 1\na: 2\n1: x\nb: !custom y\n").unwrap_err();
    let found: Vec<_> = issues
        .iter()
        .map(|i| {
            (
                i.line,
                i.message.split(':').next().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(issues.len(), 3, "{found:?}");
    assert!(issues[0].message.contains("duplicate key `a`"));
    assert_eq!(issues[1].line, Some(3));
    assert!(issues[1].message.contains("the number 1"));
    assert!(issues[2].message.contains("tags (`!custom`)"));
    assert_eq!(issues[2].path, "b");
}
