//! The SQL guard: proves, with a real SQL parser in the connection's dialect (never keyword
//! matching), that a dashboard query is exactly one read-only query, and reports every table it
//! reads so the caller can check them against the connection's scanned catalog.
//!
//! The SQL it sees has already been through Bridge's templating: `{{ ref("q") }}` became a CTE
//! named `q`, and `{{ param("p") }}` a bound parameter (`@p` on BigQuery, `$1`, `$2`… on
//! Postgres), so both parameter forms parse and pass as placeholders.
//!
//! [`check`] parses with [`sqlparser`] (BigQuery or PostgreSQL dialect) and refuses, reporting
//! every problem at once with its line and column:
//!
//! 1. anything but exactly one statement (`SELECT 1; SELECT 2`, an empty string); trailing
//!    semicolons and comments are fine;
//! 2. any statement that is not a query: DML (`INSERT`, `UPDATE`, `DELETE`, `MERGE`,
//!    `TRUNCATE`), DDL (`CREATE`, `ALTER`, `DROP`…), `EXPLAIN` (and `EXPLAIN ANALYZE`, which runs
//!    its statement), session and transaction control (`SET`, `BEGIN`, `COMMIT`…), scripting
//!    (`DECLARE`, `IF`, `CALL`, `EXECUTE IMMEDIATE`, BigQuery `BEGIN … END`), `EXPORT DATA`,
//!    `COPY`, `GRANT`…; syntax the parser does not know (Postgres `DO`, BigQuery `LOOP`) is
//!    refused as a parse error;
//! 3. any statement nested inside the query, such as a data-modifying CTE
//!    (`WITH d AS (DELETE FROM t RETURNING *) SELECT …`);
//! 4. `SELECT … INTO` (creates a table) and locking clauses (`FOR UPDATE`, `FOR SHARE`; the
//!    parser rejects `FOR NO KEY UPDATE` / `FOR KEY SHARE` outright);
//! 5. every function that is not on the dialect's allow-list ([`functions`]: aggregates,
//!    window, math, string, date, JSON, array, conditional…; on Postgres unqualified or
//!    `pg_catalog.`, never another schema's), naming the function; and Postgres's
//!    `OPERATOR(schema.op)` with a schema other than `pg_catalog`;
//! 6. unqualified tables (a one-part name that is not a CTE in scope) and names of more than three
//!    parts; and, on BigQuery, a FROM path that starts with the alias of another FROM item
//!    (`FROM analytics.orders o, o.items`, an implicit UNNEST), which would otherwise look like
//!    a table: write `UNNEST(o.items)`;
//! 7. table functions other than a small read-only set (see [`functions::POSTGRES_TABLE`]; on
//!    BigQuery only `UNNEST`, fed by `GENERATE_ARRAY`, `GENERATE_DATE_ARRAY`… as needed), and the
//!    `TABLE x` shorthand.
//!
//! Identifiers are compared the way the warehouse resolves them, so that the guard and the
//! warehouse never read a name differently: Postgres folds unquoted identifiers to lower case
//! and decodes Unicode-escaped ones (`U&"pg\005fsleep"` is `pg_sleep`, with `UESCAPE` if
//! given) before the parser sees them; BigQuery quoted identifiers with escape sequences
//! (`` `a\x2eb` ``) are refused. Two Postgres constructs the parser does not know and that
//! cannot hide a table or a function, `BETWEEN SYMMETRIC` and window frames' `EXCLUDE …`, are
//! read without those keywords (the warehouse still runs the SQL as written).
//!
//! Tables are every table factor's name (FROM, JOIN, subqueries, CTE bodies, set operations,
//! LATERAL, `IN (subquery)`, `EXISTS`, scalar subqueries, pipe operators…), minus names that
//! refer to a CTE in scope: a CTE is visible in the body of its WITH and in the later CTEs of
//! the same WITH; with `RECURSIVE` every CTE of the WITH is visible throughout it; an inner WITH
//! shadows an outer one. Postgres folds unquoted identifiers to lower case; BigQuery keeps them
//! as written (and compares CTE names case-insensitively, as BigQuery does), and splits a
//! backquoted `` `my-proj.sales.orders` `` into its parts.
//!
//! What the guard cannot see: what a user-defined function does (a Postgres function may write;
//! a BigQuery remote function calls out). Run queries under a read-only role or transaction
//! as well.

use std::{fmt, ops::ControlFlow};

use serde::Serialize;
use sqlparser::{
    ast::{
        BinaryOperator, Expr, Ident, ObjectName, ObjectNamePart, PipeOperator, Query, Select,
        SetExpr, Spanned, Statement, TableFactor, TableWithJoins, Visit, Visitor,
    },
    dialect::{BigQueryDialect, PostgreSqlDialect},
    keywords::Keyword,
    parser::{Parser, ParserError},
    tokenizer::{Location, Token, TokenWithSpan, Tokenizer},
};

use base::Dialect;

pub mod functions;
mod lexical;

/// A table the query reads, as written (identifier case as the dialect resolves it: Postgres
/// folds unquoted identifiers to lower case; BigQuery keeps case).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct TableRef {
    /// BigQuery project / Postgres database, when written (three-part names).
    pub catalog: Option<String>,
    /// BigQuery dataset / Postgres schema. Always present: unqualified tables are an error.
    pub dataset: String,
    pub table: String,
}

impl fmt::Display for TableRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(catalog) = &self.catalog {
            write!(f, "{catalog}.")?;
        }
        write!(f, "{}.{}", self.dataset, self.table)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuardError {
    pub message: String,
    /// 1-based line and column within the SQL text, when known (sqlparser's spans / parse errors).
    pub line: Option<u64>,
    pub column: Option<u64>,
}

impl GuardError {
    fn at(message: impl Into<String>, location: Location) -> Self {
        let known = location.line > 0;
        Self {
            message: message.into(),
            line: known.then_some(location.line),
            column: known.then_some(location.column),
        }
    }

    fn nowhere(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            line: None,
            column: None,
        }
    }
}

impl fmt::Display for GuardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => {
                write!(f, "line {line}, column {column}: {}", self.message)
            }
            _ => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for GuardError {}

/// Parses `sql` in `dialect` and checks it. Ok: the distinct tables it reads, in first-seen order.
/// Err: every problem found (at least one), not just the first.
pub fn check(sql: &str, dialect: Dialect) -> Result<Vec<TableRef>, Vec<GuardError>> {
    let statements = match parse(sql, dialect) {
        Ok(statements) => statements,
        Err(error) => return Err(vec![error]),
    };
    if statements.is_empty() {
        return Err(vec![GuardError::nowhere(
            "the SQL is empty: write one SELECT query",
        )]);
    }

    let mut guard = Guard::new(sql, dialect);
    let single_query = matches!(statements.as_slice(), [Statement::Query(_)]);
    // Where each statement starts, from the tokens (error path only: spans of many
    // non-query statements are empty or start past their keyword).
    let starts = if single_query {
        Vec::new()
    } else {
        statement_starts(sql, dialect, &statements)
    };
    let start = |i: usize| starts.get(i).copied().unwrap_or(Location::empty());
    if statements.len() > 1 {
        guard.errors.push(GuardError::at(
            format!(
                "exactly one query may run, found {} statements: remove everything after the first",
                statements.len()
            ),
            start(1),
        ));
    }
    for (i, statement) in statements.iter().enumerate() {
        match statement {
            Statement::Query(query) => {
                let _ = query.visit(&mut guard);
            }
            other => {
                let (label, hint) = describe(other);
                guard.errors.push(GuardError::at(
                    format!("only SELECT queries may run: found {label}{hint}"),
                    start(i),
                ));
            }
        }
    }

    if guard.errors.is_empty() {
        Ok(guard.into_tables())
    } else {
        let mut errors = guard.errors;
        errors.sort_by_key(|e| (e.line, e.column));
        Err(errors)
    }
}

/// The most tokens (not counting whitespace and comments) a query may have. sqlparser builds
/// left-deep trees for chains such as `a + b + …` or `… UNION ALL …`, and walking or dropping a
/// tree tens of thousands of levels deep overflows a 2 MiB thread stack; this bound keeps every
/// tree well below that. A 15-line dashboard query has about 150 tokens.
pub const MAX_TOKENS: usize = 20_000;

fn parser_dialect(dialect: Dialect) -> &'static dyn sqlparser::dialect::Dialect {
    match dialect {
        Dialect::Bigquery => &BigQueryDialect {},
        Dialect::Postgres => &PostgreSqlDialect {},
    }
}

fn parse(sql: &str, dialect: Dialect) -> Result<Vec<Statement>, GuardError> {
    let parser_dialect = parser_dialect(dialect);
    let tokens = Tokenizer::new(parser_dialect, sql)
        .tokenize_with_location()
        .map_err(|e| parse_error(sql, e.into(), dialect))?;
    let tokens = lexical::normalise(tokens, dialect)?;
    let significant = tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .count();
    if significant > MAX_TOKENS {
        return Err(GuardError::nowhere(format!(
            "the SQL is too long to check: {significant} tokens, at most {MAX_TOKENS}"
        )));
    }
    Parser::new(parser_dialect)
        .with_tokens_with_locations(tokens)
        .parse_statements()
        .map_err(|e| parse_error(sql, e, dialect))
}

/// The significant tokens of `sql` (no whitespace or comments), for locating things on the
/// error path.
fn tokens(sql: &str, dialect: Dialect) -> Vec<TokenWithSpan> {
    let tokens = Tokenizer::new(parser_dialect(dialect), sql).tokenize_with_location();
    let mut tokens = tokens.unwrap_or_default();
    tokens.retain(|t| !matches!(t.token, Token::Whitespace(_)));
    tokens
}

/// Where each statement starts: its first token after the semicolon that ends the previous one.
fn statement_starts(sql: &str, dialect: Dialect, statements: &[Statement]) -> Vec<Location> {
    let tokens = tokens(sql, dialect);
    let position = |l: Location| (l.line, l.column);
    let mut next = 0;
    let mut starts = Vec::with_capacity(statements.len());
    for statement in statements {
        while tokens
            .get(next)
            .is_some_and(|t| t.token == Token::SemiColon)
        {
            next += 1;
        }
        let start = tokens.get(next).map_or(Location::empty(), |t| t.span.start);
        starts.push(start);
        let end = position(statement.span().end).max(position(start));
        next = tokens
            .iter()
            .position(|t| t.token == Token::SemiColon && position(t.span.start) >= end)
            .unwrap_or(tokens.len());
    }
    starts
}

fn parse_error(sql: &str, error: ParserError, dialect: Dialect) -> GuardError {
    let language = match dialect {
        Dialect::Bigquery => "BigQuery SQL",
        Dialect::Postgres => "PostgreSQL",
    };
    let text = match error {
        ParserError::ParserError(text) | ParserError::TokenizerError(text) => text,
        ParserError::RecursionLimitExceeded => {
            return GuardError::nowhere(
                "the query nests too deeply to check: simplify it (e.g. with WITH queries)",
            );
        }
    };
    // sqlparser appends " at Line: L, Column: C" to its messages.
    if let Some((message, position)) = text.rsplit_once(" at Line: ")
        && let Some((line, column)) = position.split_once(", Column: ")
        && let (Ok(line), Ok(column)) = (line.trim().parse(), column.trim().parse())
    {
        return GuardError::at(
            format!("could not parse this as {language}: {message}"),
            Location::of(line, column),
        );
    }
    let message = format!("could not parse this as {language}: {text}");
    if text.ends_with("found: EOF") {
        // The end of input has no span: point just past the last non-blank character.
        let text = sql.trim_end();
        let line = 1 + text.matches('\n').count() as u64;
        let column = 1 + text.rsplit('\n').next().unwrap_or_default().chars().count() as u64;
        return GuardError::at(message, Location::of(line, column));
    }
    GuardError::nowhere(message)
}

/// A statement's name as a person would write it, and a hint about what it does.
fn describe(statement: &Statement) -> (String, &'static str) {
    const WRITES: &str = " (it writes data)";
    const SCHEMA: &str = " (it changes the schema or permissions)";
    const SESSION: &str = " (session or transaction control)";
    const SCRIPT: &str = " (scripting)";
    match statement {
        Statement::Drop { object_type, .. } => (format!("DROP {object_type}"), SCHEMA),
        Statement::Explain { analyze: true, .. } => (
            "EXPLAIN ANALYZE".into(),
            " (it runs the statement it explains)",
        ),
        Statement::Explain { .. } => ("EXPLAIN".into(), ""),
        Statement::ExplainTable { .. } => ("DESCRIBE".into(), ""),
        Statement::StartTransaction {
            statements,
            has_end_keyword,
            ..
        } if *has_end_keyword || !statements.is_empty() => ("BEGIN … END block".into(), SCRIPT),
        Statement::StartTransaction { begin: true, .. } => ("BEGIN".into(), SESSION),
        Statement::Execute {
            immediate: true, ..
        } => ("EXECUTE IMMEDIATE".into(), SCRIPT),
        Statement::ExportData(_) => ("EXPORT DATA".into(), WRITES),
        Statement::Case(_) => ("CASE statement".into(), SCRIPT),
        _ => {
            let variant = variant_name(statement);
            let hint = match variant.as_str() {
                "Insert" | "Update" | "Delete" | "Merge" | "Truncate" | "Copy"
                | "CopyIntoSnowflake" | "Load" | "LoadData" | "Directory" | "Unload" => WRITES,
                "Set" | "StartTransaction" | "Commit" | "Rollback" | "Savepoint"
                | "ReleaseSavepoint" | "Use" | "Reset" | "Discard" | "Lock" | "LockTables"
                | "UnlockTables" | "LISTEN" | "UNLISTEN" | "NOTIFY" | "Kill" => SESSION,
                "Declare" | "If" | "While" | "Raise" | "Call" | "Execute" | "Prepare"
                | "Deallocate" | "Assert" | "Return" | "Print" | "Open" | "Close" | "Fetch"
                | "Throw" | "RaisError" | "WaitFor" => SCRIPT,
                "Analyze" | "Vacuum" | "OptimizeTable" | "Msck" | "Cache" | "UNCache" | "Flush"
                | "Pragma" => " (maintenance)",
                v if v.starts_with("Create")
                    || v.starts_with("Alter")
                    || v.starts_with("Drop")
                    || v.starts_with("Rename")
                    || matches!(v, "Comment" | "Grant" | "Revoke" | "Deny") =>
                {
                    SCHEMA
                }
                _ => "",
            };
            if variant.starts_with("Show") {
                return ("SHOW".into(), " (not a query)");
            }
            (words(&variant), hint)
        }
    }
}

/// `CreateTable(…)` → `CreateTable`: the variant's name, from its `Debug` form (error path only).
fn variant_name(statement: &Statement) -> String {
    format!("{statement:?}")
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect()
}

/// `CreateTable` → `CREATE TABLE`.
fn words(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    let mut previous_lower = false;
    for c in camel.chars() {
        if c.is_ascii_uppercase() && previous_lower {
            out.push(' ');
        }
        previous_lower = c.is_ascii_lowercase();
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// A name as written, without quotes, for messages.
fn written(name: &ObjectName) -> String {
    let mut out = String::new();
    for part in &name.0 {
        if !out.is_empty() {
            out.push('.');
        }
        match part {
            ObjectNamePart::Identifier(ident) => out.push_str(&ident.value),
            ObjectNamePart::Function(function) => out.push_str(&function.name.value),
        }
    }
    out
}

/// The CTEs declared by one WITH clause, and how many of them are visible at this point of the
/// walk.
struct CteFrame {
    /// The query that owns the WITH clause.
    query: *const Query,
    /// Each CTE's name (normalised) and body.
    ctes: Vec<(String, *const Query)>,
    visible: usize,
    recursive: bool,
}

/// The walk over one query: sqlparser's derived visitor reaches every node, so nothing nested
/// escapes the checks.
struct Guard<'a> {
    sql: &'a str,
    dialect: Dialect,
    tables: Vec<(TableRef, Location)>,
    errors: Vec<GuardError>,
    ctes: Vec<CteFrame>,
    /// BigQuery only: the FROM aliases of each enclosing SELECT, with the factor that
    /// introduced each.
    aliases: Vec<Vec<(String, *const TableFactor)>>,
    /// The CTE being entered when its body is a data-modifying statement.
    writing_cte: Option<String>,
}

impl<'a> Guard<'a> {
    fn new(sql: &'a str, dialect: Dialect) -> Self {
        Self {
            sql,
            dialect,
            tables: Vec::new(),
            errors: Vec::new(),
            ctes: Vec::new(),
            aliases: Vec::new(),
            writing_cte: None,
        }
    }

    fn into_tables(mut self) -> Vec<TableRef> {
        // First seen in the text; the sort is stable, so spanless names keep walk order.
        self.tables
            .sort_by_key(|(_, at)| (at.line == 0, at.line, at.column));
        let mut out: Vec<TableRef> = Vec::with_capacity(self.tables.len());
        for (table, _) in self.tables {
            if !out.contains(&table) {
                out.push(table);
            }
        }
        out
    }

    fn refuse(&mut self, message: impl Into<String>, at: Location) {
        self.errors.push(GuardError::at(message, at));
    }

    /// An identifier as the dialect resolves it.
    fn normalise(&self, ident: &Ident) -> String {
        match (self.dialect, ident.quote_style) {
            (Dialect::Postgres, None) => ident.value.to_ascii_lowercase(),
            _ => ident.value.clone(),
        }
    }

    fn same_cte_name(&self, a: &str, b: &str) -> bool {
        match self.dialect {
            Dialect::Postgres => a == b,
            Dialect::Bigquery => a.eq_ignore_ascii_case(b),
        }
    }

    fn is_cte_in_scope(&self, name: &str) -> bool {
        self.ctes.iter().rev().any(|frame| {
            frame.ctes[..frame.visible]
                .iter()
                .any(|(cte, _)| self.same_cte_name(cte, name))
        })
    }

    /// The name's parts as the dialect resolves them, or `None` (after reporting) when a part
    /// is not a plain identifier.
    fn parts(&mut self, name: &ObjectName) -> Option<Vec<String>> {
        let mut parts = Vec::with_capacity(name.0.len());
        for part in &name.0 {
            match part {
                ObjectNamePart::Identifier(ident) => {
                    let value = self.normalise(ident);
                    if self.dialect == Dialect::Bigquery && value.contains('.') {
                        parts.extend(value.split('.').map(str::to_owned));
                    } else {
                        parts.push(value);
                    }
                }
                ObjectNamePart::Function(_) => {
                    self.refuse(
                        format!(
                            "`{}`: names computed by a function are not supported",
                            written(name)
                        ),
                        name.span().start,
                    );
                    return None;
                }
            }
        }
        Some(parts)
    }

    /// A table factor's name: a CTE in scope, or a table to report.
    fn table(&mut self, factor: &TableFactor, name: &ObjectName) {
        let at = name.span().start;
        let Some(parts) = self.parts(name) else {
            return;
        };
        if parts.iter().any(String::is_empty) {
            self.refuse(format!("`{}` has an empty name part", written(name)), at);
            return;
        }
        let (catalog, dataset, table) = match parts.as_slice() {
            [single] => {
                if !self.is_cte_in_scope(single) {
                    let container = match self.dialect {
                        Dialect::Bigquery => "dataset",
                        Dialect::Postgres => "schema",
                    };
                    self.refuse(
                        format!(
                            "qualify `{single}` with its {container}, e.g. analytics.{single} \
                             (or, if it is meant to be a WITH query, define that before it is \
                             used)"
                        ),
                        at,
                    );
                }
                return;
            }
            [dataset, table] => (None, dataset, table),
            [catalog, dataset, table] => (Some(catalog.clone()), dataset, table),
            _ => {
                let most = match self.dialect {
                    Dialect::Bigquery => "project.dataset.table",
                    Dialect::Postgres => "database.schema.table",
                };
                self.refuse(
                    format!(
                        "`{}` has {} parts: a table name has at most three ({most})",
                        written(name),
                        parts.len()
                    ),
                    at,
                );
                return;
            }
        };
        if self.dialect == Dialect::Bigquery
            && let Some(first) = parts.first()
            && self.is_alias_of_other(first, factor)
        {
            let name = written(name);
            self.refuse(
                format!(
                    "`{name}` starts with `{first}`, the alias of another FROM item, so BigQuery \
                     reads it as that row's array (an implicit UNNEST): write UNNEST({name}) \
                     instead, or give the other table a different alias"
                ),
                at,
            );
            return;
        }
        self.tables.push((
            TableRef {
                catalog,
                dataset: dataset.clone(),
                table: table.clone(),
            },
            at,
        ));
    }

    fn is_alias_of_other(&self, first: &str, factor: &TableFactor) -> bool {
        self.aliases.iter().flatten().any(|(alias, owner)| {
            !std::ptr::eq(*owner, factor) && alias.eq_ignore_ascii_case(first)
        })
    }

    /// A function's name as the dialect resolves it, for the allow-list: Postgres's last
    /// part when the name is unqualified or `pg_catalog.` (else `None`: another schema's
    /// function is never built in); BigQuery's whole dotted name, lower case, without a
    /// leading `SAFE.`.
    fn builtin_name(&self, name: &ObjectName) -> Option<String> {
        let mut idents = Vec::with_capacity(name.0.len());
        for part in &name.0 {
            idents.push(part.as_ident()?);
        }
        match self.dialect {
            Dialect::Postgres => match idents.as_slice() {
                [f] => Some(self.normalise(f)),
                [schema, f] if self.normalise(schema) == "pg_catalog" => Some(self.normalise(f)),
                _ => None,
            },
            Dialect::Bigquery => {
                let parts: Vec<String> = idents
                    .iter()
                    .flat_map(|i| i.value.split('.'))
                    .map(str::to_ascii_lowercase)
                    .collect();
                let skip = usize::from(parts.len() > 1 && parts[0] == "safe");
                Some(parts[skip..].join("."))
            }
        }
    }

    fn allowed_function(&self, name: &ObjectName, table: bool) -> bool {
        let Some(builtin) = self.builtin_name(name) else {
            return false;
        };
        match (self.dialect, table) {
            (Dialect::Postgres, false) => functions::POSTGRES.contains(&builtin.as_str()),
            (Dialect::Postgres, true) => functions::POSTGRES_TABLE.contains(&builtin.as_str()),
            (Dialect::Bigquery, false) => functions::bigquery_allows(&builtin),
            (Dialect::Bigquery, true) => false,
        }
    }

    fn function(&mut self, name: &ObjectName) {
        if self.allowed_function(name, false) {
            return;
        }
        let builtin = self.builtin_name(name);
        let why = match (self.dialect, builtin.as_deref().and_then(functions::reason)) {
            (_, Some(reason)) => reason,
            (Dialect::Postgres, None) if builtin.is_none() => {
                "is not a built-in: only built-in functions may run (unqualified, or in \
                 pg_catalog), not functions of other schemas"
            }
            _ => {
                "is not on Bridge's list of built-in functions that only compute on their \
                 arguments (aggregates, window, math, string, date and time, JSON, array, \
                 conditional…); functions that write, wait, keep session state, run SQL given \
                 as text or reach outside the warehouse never are"
            }
        };
        self.refuse(
            format!("function `{}` is not allowed: it {why}", written(name)),
            name.span().start,
        );
    }

    fn table_function(&mut self, name: &ObjectName) {
        if self.allowed_function(name, true) {
            return;
        }
        let instead = match self.dialect {
            Dialect::Postgres => {
                "only generate_series, unnest, the json(b)_each / _array_elements / \
                 _to_record(set) family, regexp_matches, regexp_split_to_table and \
                 string_to_table are"
            }
            Dialect::Bigquery => {
                "only UNNEST is (e.g. UNNEST(GENERATE_ARRAY(1, 10)) or \
                 UNNEST(GENERATE_DATE_ARRAY(…)))"
            }
        };
        self.refuse(
            format!(
                "table function `{}` is not allowed in FROM: {instead}, as the guard \
                 cannot tell what other table functions read",
                written(name)
            ),
            name.span().start,
        );
    }

    /// The first token at or after `from` for which `wanted` holds (error path only), or `from`.
    fn first_token_at_or_after(&self, from: Location, wanted: impl Fn(&Token) -> bool) -> Location {
        tokens(self.sql, self.dialect)
            .into_iter()
            .find(|t| {
                (t.span.start.line, t.span.start.column) >= (from.line, from.column)
                    && wanted(&t.token)
            })
            .map_or(from, |t| t.span.start)
    }

    /// Set operations and the `TABLE x` shorthand in a query body (nested queries are visited
    /// on their own).
    fn set_expr(&mut self, body: &SetExpr, query: &Query) {
        match body {
            SetExpr::SetOperation { left, right, .. } => {
                self.set_expr(left, query);
                self.set_expr(right, query);
            }
            SetExpr::Table(table) => self.refuse(
                format!("`{table}` is not supported: write SELECT * FROM … instead"),
                query.span().start,
            ),
            _ => {}
        }
    }

    fn aliases_of(factor: &TableFactor, out: &mut Vec<(String, *const TableFactor)>) {
        let alias = match factor {
            TableFactor::Table { alias, name, .. } => {
                alias.as_ref().map(|a| a.name.value.clone()).or_else(|| {
                    name.0
                        .last()
                        .and_then(|p| p.as_ident())
                        .map(|i| i.value.rsplit('.').next().unwrap_or_default().to_owned())
                })
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                Self::aliases_of_from(table_with_joins, out);
                alias.as_ref().map(|a| a.name.value.clone())
            }
            TableFactor::Derived { alias, .. }
            | TableFactor::TableFunction { alias, .. }
            | TableFactor::Function { alias, .. }
            | TableFactor::UNNEST { alias, .. }
            | TableFactor::JsonTable { alias, .. }
            | TableFactor::Pivot { alias, .. }
            | TableFactor::Unpivot { alias, .. }
            | TableFactor::MatchRecognize { alias, .. } => {
                alias.as_ref().map(|a| a.name.value.clone())
            }
            _ => None,
        };
        if let Some(alias) = alias {
            out.push((alias, factor));
        }
    }

    fn aliases_of_from(from: &TableWithJoins, out: &mut Vec<(String, *const TableFactor)>) {
        Self::aliases_of(&from.relation, out);
        for join in &from.joins {
            Self::aliases_of(&join.relation, out);
        }
    }
}

impl Visitor for Guard<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        // Entering a CTE body of the innermost WITH: it sees the CTEs before it (all of
        // them when recursive).
        if let Some(frame) = self.ctes.last_mut()
            && let Some(i) = frame
                .ctes
                .iter()
                .position(|(_, body)| std::ptr::eq(*body, query))
        {
            frame.visible = if frame.recursive { frame.ctes.len() } else { i };
            if matches!(
                *query.body,
                SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_)
            ) {
                self.writing_cte = Some(frame.ctes[i].0.clone());
            }
        }

        for lock in &query.locks {
            let after = query.span().end;
            let at = self.first_token_at_or_after(
                after,
                |t| matches!(t, Token::Word(w) if w.keyword == Keyword::FOR),
            );
            self.refuse(
                format!("`{lock}` locks rows: only plain reads may run, remove the locking clause"),
                at,
            );
        }
        for operator in &query.pipe_operators {
            if let PipeOperator::Call { function, .. } = operator {
                self.table_function(&function.name);
            }
        }
        self.set_expr(&query.body, query);

        if let Some(with) = &query.with {
            let ctes = with
                .cte_tables
                .iter()
                .map(|cte| (self.normalise(&cte.alias.name), &*cte.query as *const Query))
                .collect::<Vec<_>>();
            self.ctes.push(CteFrame {
                query,
                visible: if with.recursive { ctes.len() } else { 0 },
                ctes,
                recursive: with.recursive,
            });
        }
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if self
            .ctes
            .last()
            .is_some_and(|frame| std::ptr::eq(frame.query, query))
        {
            self.ctes.pop();
        }
        // Leaving a CTE body: later CTEs and the WITH's body see it.
        if let Some(frame) = self.ctes.last_mut()
            && let Some(i) = frame
                .ctes
                .iter()
                .position(|(_, body)| std::ptr::eq(*body, query))
        {
            frame.visible = frame.visible.max(i + 1);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<()> {
        if let Some(into) = &select.into {
            self.refuse(
                "SELECT … INTO creates a table: only plain SELECT queries may run, remove the INTO clause",
                into.span().start,
            );
        }
        if self.dialect == Dialect::Bigquery {
            let mut aliases = Vec::new();
            for from in &select.from {
                Self::aliases_of_from(from, &mut aliases);
            }
            self.aliases.push(aliases);
        }
        ControlFlow::Continue(())
    }

    fn post_visit_select(&mut self, _select: &Select) -> ControlFlow<()> {
        if self.dialect == Dialect::Bigquery {
            self.aliases.pop();
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        match factor {
            TableFactor::Table {
                name, args: None, ..
            } => self.table(factor, name),
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            }
            | TableFactor::Function { name, .. } => self.table_function(name),
            TableFactor::TableFunction { expr, .. } => self.refuse(
                "TABLE(…) table functions are not supported",
                expr.span().start,
            ),
            TableFactor::SemanticView { name, .. } => self.refuse(
                format!("semantic view `{}` is not supported", written(name)),
                name.span().start,
            ),
            // UNNEST, JSON_TABLE, XMLTABLE, derived tables, joins, PIVOT… read only what they
            // contain, which the walk visits.
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        match expr {
            Expr::Function(function) => self.function(&function.name),
            // OPERATOR(schema.op): an operator of another schema is the owner's own code.
            Expr::BinaryOp {
                op: BinaryOperator::PGCustomBinaryOperator(parts),
                ..
            } if parts.len() > 1 && !parts[0].eq_ignore_ascii_case("pg_catalog") => {
                self.refuse(
                    format!(
                        "operator `OPERATOR({})` is not allowed: only built-in operators may run",
                        parts.join(".")
                    ),
                    expr.span().start,
                );
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<()> {
        // Only nested statements reach here: `check` visits queries, not statements.
        let (label, _) = describe(statement);
        let message = match self.writing_cte.take() {
            Some(cte) => format!(
                "only read-only queries may run: WITH query `{cte}` runs {label} (a \
                 data-modifying WITH query)"
            ),
            None => format!("only read-only queries may run: found {label} inside the query"),
        };
        self.refuse(message, statement.span().start);
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables(sql: &str, dialect: Dialect) -> Vec<String> {
        match check(sql, dialect) {
            Ok(tables) => tables.iter().map(ToString::to_string).collect(),
            Err(errors) => panic!("{sql}: {errors:?}"),
        }
    }

    fn refused(sql: &str, dialect: Dialect) -> Vec<GuardError> {
        match check(sql, dialect) {
            Ok(tables) => panic!("{sql} passed: {tables:?}"),
            Err(errors) => errors,
        }
    }

    #[test]
    fn reads_tables_and_skips_ctes() {
        assert_eq!(
            tables(
                "WITH q AS (SELECT * FROM analytics.orders) SELECT * FROM q JOIN Analytics.Users u ON true",
                Dialect::Postgres
            ),
            ["analytics.orders", "analytics.users"]
        );
        assert_eq!(
            tables(
                "SELECT * FROM `my-proj.Sales.Orders` WHERE region = @region",
                Dialect::Bigquery
            ),
            ["my-proj.Sales.Orders"]
        );
    }

    #[test]
    fn refuses_writes() {
        let errors = refused("DELETE FROM analytics.orders", Dialect::Postgres);
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].message,
            "only SELECT queries may run: found DELETE (it writes data)"
        );
        assert_eq!((errors[0].line, errors[0].column), (Some(1), Some(1)));
    }

    #[test]
    fn words_splits_camel_case() {
        assert_eq!(words("CreateTable"), "CREATE TABLE");
        assert_eq!(words("NOTIFY"), "NOTIFY");
        assert_eq!(words("StartTransaction"), "START TRANSACTION");
    }

    #[test]
    fn parse_errors_carry_positions() {
        let errors = refused("SELECT *\nFROM analytics.t WHERE", Dialect::Postgres);
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0]
                .message
                .starts_with("could not parse this as PostgreSQL: ")
        );
        assert_eq!(errors[0].line, Some(2));
    }
}
