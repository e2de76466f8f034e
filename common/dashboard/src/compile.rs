//! Compilation: each query of a dashboard becomes self-contained SQL. The queries it refs
//! (transitively) are inlined as CTEs ahead of it, in dependency order, merged into its own
//! `WITH` if it has one; `{{ param("p") }}` becomes a bound parameter of the warehouse
//! (`@p` on BigQuery, `$n` on Postgres, numbered in order of first appearance). Nothing a
//! caller supplies is ever spliced into the text.

use std::collections::{HashMap, HashSet};

use super::{
    spec::DashboardSpec,
    template::{self, Piece},
};
use base::Dialect;

#[derive(Debug, Clone, PartialEq)]
pub struct CompiledQuery {
    pub id: String,
    /// Runnable SQL with placeholders for `params`.
    pub sql: String,
    /// Parameter names in binding order (BigQuery binds by name; Postgres by position).
    pub params: Vec<String>,
    /// The queries inlined as CTEs, in the order they appear.
    pub refs: Vec<String>,
    /// Digest of the dialect and the compiled SQL (part of the cache key).
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CompileError {
    /// Index in `queries` of the query that cannot compile.
    pub query: usize,
    pub message: String,
}

/// Skips whitespace and comments at the start of `s`; returns the byte offset of the first
/// token.
fn skip_trivia(s: &str, dialect: Dialect) -> usize {
    let b = s.as_bytes();
    let mut i = 0;
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if b[i..].starts_with(b"--") || (dialect == Dialect::Bigquery && b.get(i) == Some(&b'#')) {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            match s[i + 2..].find("*/") {
                Some(end) => i += 2 + end + 2,
                None => return b.len(),
            }
        } else {
            return i;
        }
    }
}

/// If `text` starts (after trivia) with `WITH [RECURSIVE]`, the offsets where that keyword
/// phrase starts and ends.
fn leading_with(text: &str, dialect: Dialect) -> Option<(usize, usize, bool)> {
    let start = skip_trivia(text, dialect);
    let word = |at: usize| -> Option<(String, usize)> {
        let rest = &text[at..];
        let len = rest.bytes().take_while(|c| c.is_ascii_alphabetic()).count();
        (len > 0).then(|| (rest[..len].to_ascii_uppercase(), at + len))
    };
    let (w, after) = word(start)?;
    if w != "WITH"
        || !text[after..]
            .starts_with(|c: char| c.is_whitespace() || c == '/' || c == '-' || c == '#')
    {
        return None;
    }
    let next = after + skip_trivia(&text[after..], dialect);
    match word(next) {
        Some((w, end)) if w == "RECURSIVE" => Some((start, end, true)),
        _ => Some((start, after, false)),
    }
}

/// Trailing semicolons (and the whitespace around them) would end a CTE body early.
fn trim_end(pieces: &mut [Piece<'_>]) {
    if let Some(Piece::Text(t)) = pieces.last_mut() {
        *t = t.trim_end().trim_end_matches(';').trim_end();
    }
}

struct Emitter {
    dialect: Dialect,
    out: String,
    params: Vec<String>,
}

impl Emitter {
    fn emit(&mut self, pieces: &[Piece<'_>]) {
        for p in pieces {
            match p {
                Piece::Text(t) => self.out.push_str(t),
                Piece::Ref(name) => self.out.push_str(name),
                Piece::Param(name) => {
                    let n = match self.params.iter().position(|p| p == name) {
                        Some(i) => i + 1,
                        None => {
                            self.params.push((*name).to_owned());
                            self.params.len()
                        }
                    };
                    match self.dialect {
                        Dialect::Bigquery => {
                            self.out.push('@');
                            self.out.push_str(name);
                        }
                        Dialect::Postgres => {
                            self.out.push('$');
                            self.out.push_str(&n.to_string());
                        }
                    }
                }
            }
        }
    }
}

/// The transitive refs of `id`, dependencies first. `Err` names a cycle.
fn closure<'a>(id: &'a str, refs: &HashMap<&'a str, Vec<&'a str>>) -> Result<Vec<&'a str>, String> {
    fn visit<'a>(
        id: &'a str,
        refs: &HashMap<&'a str, Vec<&'a str>>,
        done: &mut HashSet<&'a str>,
        path: &mut Vec<&'a str>,
        order: &mut Vec<&'a str>,
    ) -> Result<(), String> {
        if let Some(at) = path.iter().position(|p| *p == id) {
            let mut cycle: Vec<&str> = path[at..].to_vec();
            cycle.push(id);
            return Err(format!("refs form a cycle: {}", cycle.join(" → ")));
        }
        if !done.insert(id) {
            return Ok(());
        }
        path.push(id);
        for r in refs.get(id).map(Vec::as_slice).unwrap_or_default() {
            visit(r, refs, done, path, order)?;
        }
        path.pop();
        order.push(id);
        Ok(())
    }
    let mut order = Vec::new();
    visit(id, refs, &mut HashSet::new(), &mut Vec::new(), &mut order)?;
    order.pop(); // the query itself comes last
    Ok(order)
}

/// Compiles every query it can; the errors of those it cannot, all at once.
pub fn compile(spec: &DashboardSpec, dialect: Dialect) -> (Vec<CompiledQuery>, Vec<CompileError>) {
    let mut errors = Vec::new();
    let mut pieces: HashMap<&str, Vec<Piece<'_>>> = HashMap::new();
    for (i, q) in spec.queries.iter().enumerate() {
        match template::scan(&q.sql) {
            Ok(p) => {
                pieces.insert(q.id.as_str(), p);
            }
            Err(e) => errors.push(CompileError {
                query: i,
                message: e.message,
            }),
        }
    }
    let refs: HashMap<&str, Vec<&str>> = pieces
        .iter()
        .map(|(id, p)| {
            let mut seen = Vec::new();
            for piece in p {
                if let Piece::Ref(r) = piece
                    && !seen.contains(r)
                {
                    seen.push(*r);
                }
            }
            (*id, seen)
        })
        .collect();
    let mut compiled = Vec::with_capacity(spec.queries.len());
    for (i, q) in spec.queries.iter().enumerate() {
        let Some(main) = pieces.get(q.id.as_str()) else {
            continue;
        };
        let order = match closure(&q.id, &refs) {
            Ok(o) => o,
            Err(message) => {
                errors.push(CompileError { query: i, message });
                continue;
            }
        };
        if let Some(missing) = order.iter().find(|r| !pieces.contains_key(**r)) {
            errors.push(CompileError {
                query: i,
                message: format!("ref(\"{missing}\") names no query of this dashboard"),
            });
            continue;
        }
        let mut main = main.clone();
        trim_end(&mut main);
        let mut e = Emitter {
            dialect,
            out: String::with_capacity(q.sql.len() * 2),
            params: Vec::new(),
        };
        if order.is_empty() {
            e.emit(&main);
        } else {
            // Does the query open with its own WITH? Then the inlined CTEs join its list.
            let head = match main.first() {
                Some(Piece::Text(t)) => leading_with(t, dialect).map(|w| (t, w)),
                _ => None,
            };
            let recursive = head.is_some_and(|(_, (_, _, r))| r);
            if let Some((t, (start, _, _))) = head {
                e.out.push_str(&t[..start]);
            }
            e.out.push_str(if recursive {
                "WITH RECURSIVE "
            } else {
                "WITH "
            });
            for (n, r) in order.iter().enumerate() {
                if n > 0 {
                    e.out.push_str(",\n");
                }
                e.out.push_str(r);
                e.out.push_str(" AS (\n");
                let mut body = pieces[r].clone();
                trim_end(&mut body);
                e.emit(&body);
                e.out.push_str("\n)");
            }
            match head {
                Some((t, (_, end, _))) => {
                    e.out.push_str(",\n");
                    let rest = &t[end..];
                    let mut tail = main.clone();
                    tail[0] = Piece::Text(rest.trim_start());
                    e.emit(&tail);
                }
                None => {
                    e.out.push('\n');
                    e.emit(&main);
                }
            }
        }
        let digest = base::crypto::sha256(format!("{}\n{}", dialect.as_str(), e.out).as_bytes());
        compiled.push(CompiledQuery {
            id: q.id.clone(),
            sql: e.out,
            params: e.params,
            refs: order.iter().map(|r| (*r).to_owned()).collect(),
            hash: base::crypto::hex(&digest[..16]),
        });
    }
    (compiled, errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate;

    fn spec(queries: &str) -> DashboardSpec {
        let yaml = format!(
            "version: 1\nkind: dashboard\nslug: t\ntitle: T\nconnection: 00000000-0000-4000-8000-000000000001\nparameters:\n  - {{ id: region, type: string, default: EMEA }}\n  - {{ id: since, type: date, default: 2025-01-01 }}\nqueries:\n{queries}\nlayout: []\n"
        );
        let parsed = validate::parse(&yaml);
        parsed.spec.unwrap_or_else(|| panic!("{:?}", parsed.errors))
    }

    fn compiled(queries: &str, dialect: Dialect) -> Vec<CompiledQuery> {
        let (c, errors) = compile(&spec(queries), dialect);
        assert!(errors.is_empty(), "{errors:?}");
        c
    }

    #[test]
    fn refs_become_ctes_in_dependency_order() {
        let c = compiled(
            "  - id: a\n    sql: SELECT 1 AS x;\n  - id: b\n    sql: SELECT x FROM {{ ref(\"a\") }}\n  - id: c\n    sql: SELECT * FROM {{ ref('b') }} JOIN {{ ref(\"a\") }} USING (x)\n",
            Dialect::Postgres,
        );
        assert_eq!(c[0].sql, "SELECT 1 AS x", "trailing semicolons go");
        assert_eq!(c[1].sql, "WITH a AS (\nSELECT 1 AS x\n)\nSELECT x FROM a");
        assert_eq!(c[2].refs, ["a", "b"]);
        assert_eq!(
            c[2].sql,
            "WITH a AS (\nSELECT 1 AS x\n),\nb AS (\nSELECT x FROM a\n)\nSELECT * FROM b JOIN a USING (x)"
        );
    }

    #[test]
    fn a_query_with_its_own_with_keeps_it_after_the_inlined_ctes() {
        let c = compiled(
            "  - id: a\n    sql: SELECT 1 AS x\n  - id: b\n    sql: |\n      -- totals\n      WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 3)\n      SELECT n FROM t, {{ ref(\"a\") }}\n",
            Dialect::Postgres,
        );
        assert_eq!(
            c[1].sql,
            "-- totals\nWITH RECURSIVE a AS (\nSELECT 1 AS x\n),\nt(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 3)\nSELECT n FROM t, a"
        );
    }

    #[test]
    fn parameters_are_bound_by_position_or_by_name_never_spliced() {
        let q = "  - id: a\n    sql: SELECT * FROM s.t WHERE r = {{ param(\"region\") }} AND d >= {{ param(\"since\") }}\n  - id: b\n    sql: SELECT * FROM {{ ref(\"a\") }} WHERE r <> {{ param(\"since\") }} OR r = {{ param(\"region\") }}\n";
        let pg = compiled(q, Dialect::Postgres);
        assert_eq!(
            pg[1].sql,
            "WITH a AS (\nSELECT * FROM s.t WHERE r = $1 AND d >= $2\n)\nSELECT * FROM a WHERE r <> $2 OR r = $1"
        );
        assert_eq!(pg[1].params, ["region", "since"]);
        let bq = compiled(q, Dialect::Bigquery);
        assert_eq!(
            bq[0].sql,
            "SELECT * FROM s.t WHERE r = @region AND d >= @since"
        );
        assert_ne!(pg[0].hash, bq[0].hash, "the dialect is part of the hash");
    }

    #[test]
    fn leading_with_is_found_past_comments_only() {
        assert_eq!(
            leading_with("/* x */ -- y\n with a AS (SELECT 1)", Dialect::Postgres).map(|w| w.2),
            Some(false)
        );
        assert!(leading_with("# note\nWITH x AS (SELECT 1) SELECT 1", Dialect::Bigquery).is_some());
        assert!(leading_with("# note\nWITH x AS (SELECT 1) SELECT 1", Dialect::Postgres).is_none());
        assert!(leading_with("SELECT 'WITH'", Dialect::Postgres).is_none());
        assert!(leading_with("WITHOUT", Dialect::Postgres).is_none());
    }
}
