//! The SQL guard against its public corpus (`samplefiles/sql-guard-corpus.jsonl`: one JSON
//! object per line, `{"dialect", "verdict", "sql", "why", "tables"?, "error_contains"?}`, where
//! `tables` lists what an allowed query reads, `dataset.table` or `catalog.dataset.table` as
//! the dialect resolves the names, in first-seen order, and `error_contains` is a fragment of
//! one of the messages a refused query must get), plus focused tests of CTE scoping, case
//! folding, error positions and reporting every problem at once.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use base::Dialect;
use serde::Deserialize;
use sqlguard::{GuardError, MAX_TOKENS, TableRef, check};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    dialect: Dialect,
    verdict: Verdict,
    sql: String,
    why: String,
    #[serde(default)]
    tables: Option<Vec<String>>,
    #[serde(default)]
    error_contains: Option<String>,
}

#[derive(Debug, Deserialize, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Verdict {
    Allow,
    Refuse,
}

fn corpus() -> Vec<Entry> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../samplefiles/sql-guard-corpus.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), i + 1))
        })
        .collect()
}

fn names(tables: &[TableRef]) -> Vec<String> {
    tables.iter().map(ToString::to_string).collect()
}

fn allowed(sql: &str, dialect: Dialect) -> Vec<String> {
    match check(sql, dialect) {
        Ok(tables) => names(&tables),
        Err(errors) => panic!("{sql:?} was refused: {errors:#?}"),
    }
}

fn refused(sql: &str, dialect: Dialect) -> Vec<GuardError> {
    match check(sql, dialect) {
        Ok(tables) => panic!("{sql:?} was allowed, reading {tables:?}"),
        Err(errors) => {
            assert!(!errors.is_empty());
            errors
        }
    }
}

/// The one error of a refusal with exactly one problem.
fn only_error(sql: &str, dialect: Dialect) -> GuardError {
    let mut errors = refused(sql, dialect);
    assert_eq!(errors.len(), 1, "{sql:?}: {errors:#?}");
    errors.remove(0)
}

fn position(error: &GuardError) -> (u64, u64) {
    (error.line.expect("a line"), error.column.expect("a column"))
}

#[test]
fn corpus_verdicts() {
    let mut failures = Vec::new();
    for (i, entry) in corpus().iter().enumerate() {
        let line = i + 1;
        let result = check(&entry.sql, entry.dialect);
        match (entry.verdict, result) {
            (Verdict::Allow, Ok(tables)) => {
                let got = names(&tables);
                let want = entry.tables.clone().unwrap_or_default();
                if got != want {
                    failures.push(format!(
                        "line {line} ({}): tables {got:?}, expected {want:?}",
                        entry.why
                    ));
                }
            }
            (Verdict::Allow, Err(errors)) => failures.push(format!(
                "line {line} ({}): refused: {:?}",
                entry.why,
                errors.iter().map(ToString::to_string).collect::<Vec<_>>()
            )),
            (Verdict::Refuse, Ok(tables)) => failures.push(format!(
                "line {line} ({}): allowed, reading {:?}",
                entry.why,
                names(&tables)
            )),
            (Verdict::Refuse, Err(errors)) => {
                if let Some(fragment) = &entry.error_contains
                    && !errors.iter().any(|e| e.message.contains(fragment.as_str()))
                {
                    failures.push(format!(
                        "line {line} ({}): no message contains {fragment:?}: {:?}",
                        entry.why,
                        errors.iter().map(ToString::to_string).collect::<Vec<_>>()
                    ));
                }
                for error in &errors {
                    if error.message.trim().is_empty() {
                        failures.push(format!("line {line}: an empty message"));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} corpus entries failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn corpus_is_well_formed_and_large_enough() {
    let corpus = corpus();
    for dialect in [Dialect::Bigquery, Dialect::Postgres] {
        let of = |verdict| {
            corpus
                .iter()
                .filter(|e| e.dialect == dialect && e.verdict == verdict)
                .count()
        };
        let (allow, refuse) = (of(Verdict::Allow), of(Verdict::Refuse));
        assert!(
            allow + refuse >= 60,
            "{dialect:?}: {allow} + {refuse} entries"
        );
        assert!(
            allow >= 30 && refuse >= 30,
            "{dialect:?}: {allow} allow, {refuse} refuse"
        );
    }
    for entry in &corpus {
        assert!(!entry.why.trim().is_empty(), "{entry:?}");
        match entry.verdict {
            Verdict::Allow => assert!(
                entry.tables.is_some() && entry.error_contains.is_none(),
                "{entry:?}"
            ),
            Verdict::Refuse => assert!(entry.tables.is_none(), "{entry:?}"),
        }
    }
}

#[test]
fn ctes_are_scoped() {
    let pg = Dialect::Postgres;
    // Visible in the body and in later CTEs of the same WITH.
    assert_eq!(
        allowed(
            "WITH a AS (SELECT * FROM s.t1), b AS (SELECT * FROM a) SELECT * FROM a, b",
            pg
        ),
        ["s.t1"]
    );
    // Not in earlier CTEs, unless RECURSIVE.
    let error = only_error(
        "WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a",
        pg,
    );
    assert!(error.message.contains("qualify `b`"), "{error}");
    assert_eq!(
        allowed(
            "WITH RECURSIVE a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a",
            pg
        ),
        Vec::<String>::new()
    );
    // Not in its own body unless RECURSIVE (there, a same-named table would be read).
    let error = only_error("WITH t AS (SELECT * FROM t) SELECT * FROM t", pg);
    assert_eq!(position(&error), (1, 26));
    assert!(allowed(
        "WITH RECURSIVE t AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM t WHERE n < 5) SELECT * FROM t",
        pg
    )
    .is_empty());
    // A CTE defined in a subquery is not visible outside it.
    let error = only_error(
        "SELECT * FROM (WITH x AS (SELECT 1) SELECT * FROM x) s JOIN x ON true",
        pg,
    );
    assert!(error.message.contains("qualify `x`"), "{error}");
    // An inner WITH shadows an outer one and goes out of scope after its query.
    assert_eq!(
        allowed(
            "WITH t AS (SELECT * FROM s.outer_t) \
             SELECT * FROM (WITH t AS (SELECT * FROM s.inner_t) SELECT * FROM t) i, t",
            pg
        ),
        ["s.outer_t", "s.inner_t"]
    );
    // A CTE's name with a schema in front is a table.
    assert_eq!(
        allowed("WITH q AS (SELECT 1) SELECT * FROM q, s.q", pg),
        ["s.q"]
    );
    // CTEs in subqueries in expressions see the outer WITH.
    assert_eq!(
        allowed(
            "WITH q AS (SELECT 1 AS x) SELECT * FROM s.t WHERE x IN (SELECT x FROM q) \
             AND EXISTS (WITH r AS (SELECT * FROM q) SELECT * FROM r)",
            pg
        ),
        ["s.t"]
    );
    // The same on BigQuery, where CTE names are case-insensitive.
    assert_eq!(
        allowed(
            "WITH Recent AS (SELECT * FROM sales.orders) SELECT * FROM RECENT",
            Dialect::Bigquery
        ),
        ["sales.orders"]
    );
}

#[test]
fn identifiers_resolve_as_the_dialect_does() {
    let pg = Dialect::Postgres;
    assert_eq!(
        allowed(
            r#"SELECT * FROM Sales.Orders, "Sales"."Orders", "sales".ORDERS, DB.Sales."Line Items""#,
            pg
        ),
        ["sales.orders", "Sales.Orders", "db.sales.Line Items"]
    );
    // CTE names fold too: unquoted Q is q; quoted "Q" is not.
    assert!(allowed("WITH Q AS (SELECT 1) SELECT * FROM q", pg).is_empty());
    assert!(allowed(r#"WITH "q" AS (SELECT 1) SELECT * FROM Q"#, pg).is_empty());
    assert!(
        only_error(r#"WITH "Q" AS (SELECT 1) SELECT * FROM Q"#, pg)
            .message
            .contains("qualify `q`")
    );
    // BigQuery keeps case and splits backquoted paths; projects may hold hyphens.
    let bq = Dialect::Bigquery;
    assert_eq!(
        check(
            "SELECT * FROM `my-proj.Sales.Orders` JOIN my-proj.Sales.Items USING (id) \
             JOIN `my-proj`.Sales.`Orders` USING (id) JOIN Sales.orders USING (id)",
            bq
        )
        .unwrap(),
        [
            TableRef {
                catalog: Some("my-proj".into()),
                dataset: "Sales".into(),
                table: "Orders".into()
            },
            TableRef {
                catalog: Some("my-proj".into()),
                dataset: "Sales".into(),
                table: "Items".into()
            },
            TableRef {
                catalog: None,
                dataset: "Sales".into(),
                table: "orders".into()
            },
        ]
    );
}

#[test]
fn parameters_pass() {
    assert_eq!(
        allowed(
            "SELECT * FROM analytics.orders WHERE region = @region AND day >= @start_date",
            Dialect::Bigquery
        ),
        ["analytics.orders"]
    );
    assert_eq!(
        allowed(
            "SELECT * FROM analytics.orders WHERE region = $1 AND day >= $2::date LIMIT $3",
            Dialect::Postgres
        ),
        ["analytics.orders"]
    );
}

#[test]
fn errors_carry_line_and_column() {
    let pg = Dialect::Postgres;
    // A refused function on the third line.
    let error = only_error(
        "SELECT id\nFROM analytics.orders\nWHERE id > nextval('s')",
        pg,
    );
    assert_eq!(position(&error), (3, 12));
    assert!(error.message.contains("nextval"));
    // An unqualified table.
    assert_eq!(position(&only_error("SELECT *\n  FROM orders", pg)), (2, 8));
    // A four-part name.
    assert_eq!(position(&only_error("SELECT * FROM a.b.c.d", pg)), (1, 15));
    // A locking clause points at FOR.
    assert_eq!(
        position(&only_error(
            "SELECT *\nFROM analytics.orders\n  FOR UPDATE",
            pg
        )),
        (3, 3)
    );
    // A data-modifying CTE points at its statement.
    assert_eq!(
        position(&only_error(
            "WITH d AS (\n  DELETE FROM analytics.orders RETURNING *\n) SELECT * FROM d",
            pg
        )),
        (2, 3)
    );
    // A statement other than a query points at its first keyword, after comments.
    let error = only_error("-- clean up\n  TRUNCATE analytics.orders", pg);
    assert_eq!(position(&error), (2, 3));
    assert_eq!(
        error.message,
        "only SELECT queries may run: found TRUNCATE (it writes data)"
    );
    // Parse errors keep sqlparser's position, and the end of input is placed after the last
    // character.
    let error = only_error("SELECT *\nFROM analytics.orders\nWHERE amount >", pg);
    assert_eq!(position(&error), (3, 15));
    assert!(
        error
            .message
            .starts_with("could not parse this as PostgreSQL: ")
    );
    let error = only_error("SELECT * FROM analytics.orders WHERE x = 'oops", pg);
    assert_eq!(position(&error), (1, 42));
    let error = only_error("SELECT *\nFROM analytics.events_* ", Dialect::Bigquery);
    assert_eq!(position(&error), (2, 23));
    assert!(
        error
            .message
            .starts_with("could not parse this as BigQuery SQL: ")
    );
    // A second statement is located by its first token.
    let errors = refused("SELECT 1 /* ; */;\n  DROP TABLE x", pg);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(errors.iter().all(|e| position(e) == (2, 3)), "{errors:#?}");
    // Errors that have no place.
    let error = only_error("  -- nothing\n", pg);
    assert_eq!((error.line, error.column), (None, None));
}

#[test]
fn every_problem_is_reported_at_once() {
    let sql = "SELECT nextval('s'), pg_sleep(1)\n\
               FROM orders\n\
               JOIN dblink('x', 'y') AS d(a int) ON true\n\
               WHERE EXISTS (SELECT 1 FROM a.b.c.d)\n\
               FOR UPDATE";
    let errors = refused(sql, Dialect::Postgres);
    let summary: Vec<((u64, u64), &str)> = errors
        .iter()
        .map(|e| (position(e), e.message.as_str()))
        .collect();
    assert_eq!(errors.len(), 6, "{summary:#?}");
    // Sorted by position.
    let positions: Vec<(u64, u64)> = errors.iter().map(position).collect();
    let mut sorted = positions.clone();
    sorted.sort();
    assert_eq!(positions, sorted);
    for (error, fragment) in errors.iter().zip([
        "`nextval`",
        "`pg_sleep`",
        "qualify `orders`",
        "`dblink`",
        "4 parts",
        "FOR UPDATE",
    ]) {
        assert!(error.message.contains(fragment), "{summary:#?}");
    }

    // Several statements: the count, and what each non-query is.
    let errors = refused(
        "SELECT 1; DELETE FROM analytics.t WHERE true; DROP TABLE analytics.t",
        Dialect::Bigquery,
    );
    let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(errors.len(), 3, "{messages:#?}");
    assert!(messages[0].contains("found 3 statements"));
    assert!(messages[1].contains("found DELETE"));
    assert!(messages[2].contains("found DROP TABLE"));
}

#[test]
fn tables_are_distinct_and_in_first_seen_order() {
    assert_eq!(
        allowed(
            "SELECT (SELECT max(x) FROM s.z) FROM s.b JOIN s.a USING (id) \
             WHERE id IN (SELECT id FROM s.b UNION SELECT id FROM s.z)",
            Dialect::Postgres
        ),
        ["s.z", "s.b", "s.a"]
    );
}

#[test]
fn nested_statements_are_refused() {
    let error = only_error(
        "WITH d AS (DELETE FROM analytics.orders RETURNING *) SELECT * FROM d",
        Dialect::Postgres,
    );
    assert_eq!(
        error.message,
        "only read-only queries may run: WITH query `d` runs DELETE (a data-modifying WITH query)"
    );
}

#[test]
fn messages_read_well() {
    let pg = Dialect::Postgres;
    assert_eq!(
        only_error("DELETE FROM analytics.orders", pg).message,
        "only SELECT queries may run: found DELETE (it writes data)"
    );
    assert_eq!(
        only_error("SELECT * FROM orders", pg).message,
        "qualify `orders` with its schema, e.g. analytics.orders (or, if it is meant to be a \
         WITH query, define that before it is used)"
    );
    assert!(
        only_error("SELECT * FROM orders", Dialect::Bigquery)
            .message
            .starts_with("qualify `orders` with its dataset, e.g. analytics.orders")
    );
    assert_eq!(
        only_error("SELECT pg_catalog.nextval('s')", pg).message,
        "function `pg_catalog.nextval` is not allowed: it changes a sequence (a write)"
    );
    assert_eq!(
        only_error("", pg).message,
        "the SQL is empty: write one SELECT query"
    );
}

#[test]
fn errors_serialize_for_the_api() {
    let error = only_error("SELECT * FROM orders", Dialect::Postgres);
    let json = serde_json::to_value(&error).unwrap();
    assert_eq!(json["line"], 1);
    assert_eq!(json["column"], 15);
    let tables = check("SELECT * FROM p.d.t", Dialect::Bigquery).unwrap();
    assert_eq!(
        serde_json::to_value(&tables).unwrap(),
        serde_json::json!([{"catalog": "p", "dataset": "d", "table": "t"}])
    );
}

#[test]
fn very_long_sql_is_refused_without_exhausting_the_stack() {
    // Left-deep chains nest one level per operator; past the cap the guard refuses before
    // parsing, below it the walk fits comfortably in a test thread's stack.
    let long = format!("SELECT {}", vec!["1"; MAX_TOKENS].join(" + "));
    let error = only_error(&long, Dialect::Postgres);
    assert!(error.message.contains("too long"), "{error}");
    let just_under = format!(
        "SELECT {} FROM s.t",
        vec!["1"; MAX_TOKENS / 2 - 4].join(" + ")
    );
    assert_eq!(
        names(&check(&just_under, Dialect::Postgres).unwrap()),
        ["s.t"]
    );
    // Eight tokens per operand.
    let unions = vec!["SELECT 1 FROM s.t"; MAX_TOKENS / 8 - 1].join(" UNION ALL ");
    assert_eq!(names(&check(&unions, Dialect::Bigquery).unwrap()), ["s.t"]);
}
