//! The template language inside a query's `sql`: exactly two expressions,
//!
//! - `{{ ref("query_id") }}`: another query of the dashboard, inlined as a CTE when compiled;
//! - `{{ param("name") }}`: a declared parameter, bound by the warehouse (never spliced).
//!
//! Names are quoted with single or double quotes; whitespace (newlines included) is free
//! around every token inside the braces. Anything else between `{{` and `}}` is an error, and
//! so is a `{{` that never closes. A lone `}}` is plain text. There is no escape: SQL that
//! needs a literal `{{` (rare) cannot have it.

use std::fmt;

/// A piece of a scanned `sql`, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'a> {
    /// SQL text between templates, verbatim.
    Text(&'a str),
    /// `{{ ref("name") }}`
    Ref(&'a str),
    /// `{{ param("name") }}`
    Param(&'a str),
}

/// A malformed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// Byte offset in the sql of the `{{` that opens the offending template.
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at byte {})", self.message, self.offset)
    }
}

impl std::error::Error for TemplateError {}

/// A piece with the byte offset where it starts in the sql (for a template, its `{{`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Located<'a> {
    pub offset: usize,
    pub piece: Piece<'a>,
}

/// Splits `sql` into text and templates; the first malformed template is an error.
pub fn scan(sql: &str) -> Result<Vec<Piece<'_>>, TemplateError> {
    let (pieces, mut errors) = scan_all(sql);
    if errors.is_empty() {
        Ok(pieces.into_iter().map(|l| l.piece).collect())
    } else {
        Err(errors.swap_remove(0))
    }
}

/// Like [`scan`], but goes on after a malformed template (resuming after its `}}`) so that
/// every problem is reported; the pieces then hold everything that did scan.
pub fn scan_all(sql: &str) -> (Vec<Located<'_>>, Vec<TemplateError>) {
    let mut pieces = Vec::new();
    let mut errors = Vec::new();
    let mut text_start = 0;
    let mut at = 0;
    while let Some(found) = sql[at..].find("{{") {
        let open = at + found;
        if open > text_start {
            pieces.push(Located {
                offset: text_start,
                piece: Piece::Text(&sql[text_start..open]),
            });
        }
        match expression(sql, open) {
            Ok((piece, end)) => {
                pieces.push(Located {
                    offset: open,
                    piece,
                });
                at = end;
            }
            Err((message, resume)) => {
                errors.push(TemplateError {
                    offset: open,
                    message,
                });
                at = resume;
            }
        }
        text_start = at;
    }
    if text_start < sql.len() {
        pieces.push(Located {
            offset: text_start,
            piece: Piece::Text(&sql[text_start..]),
        });
    }
    (pieces, errors)
}

/// The queries `sql` refs, each once, in order of first appearance (malformed templates
/// skipped).
pub fn refs(sql: &str) -> Vec<&str> {
    distinct(sql, |p| match p {
        Piece::Ref(name) => Some(name),
        _ => None,
    })
}

/// The parameters `sql` uses, each once, in order of first appearance (malformed templates
/// skipped).
pub fn params(sql: &str) -> Vec<&str> {
    distinct(sql, |p| match p {
        Piece::Param(name) => Some(name),
        _ => None,
    })
}

fn distinct<'a>(sql: &'a str, pick: impl Fn(Piece<'a>) -> Option<&'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for located in scan_all(sql).0 {
        if let Some(name) = pick(located.piece)
            && !out.contains(&name)
        {
            out.push(name);
        }
    }
    out
}

const HELP: &str = r#"only {{ ref("query_id") }} and {{ param("name") }} are allowed inside {{ }}"#;

/// Parses the template whose `{{` is at `open`. Ok: the piece and the offset just past its
/// `}}`. Err: the message and where to resume scanning.
fn expression(sql: &str, open: usize) -> Result<(Piece<'_>, usize), (String, usize)> {
    let bytes = sql.as_bytes();
    let close = sql[open + 2..].find("}}").map(|i| open + 2 + i);
    let Some(close) = close else {
        return Err((
            format!(
                "`{}` is never closed with `}}}}`; {HELP}",
                excerpt(&sql[open..])
            ),
            sql.len(),
        ));
    };
    let resume = close + 2;
    let whole = &sql[open..resume];
    let malformed = |what: &str| {
        Err((
            format!("{what} in template `{}`; {HELP}", excerpt(whole)),
            resume,
        ))
    };

    let mut i = skip_ws(bytes, open + 2, close);
    let ident_start = i;
    while i < close && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
        i += 1;
    }
    let ident = &sql[ident_start..i];
    let is_ref = match ident {
        "ref" => true,
        "param" => false,
        "" => {
            return if skip_ws(bytes, open + 2, close) == close {
                malformed("nothing")
            } else {
                malformed("an unknown expression")
            };
        }
        other => return malformed(&format!("unknown function `{other}`")),
    };
    i = skip_ws(bytes, i, close);
    if i >= close || bytes[i] != b'(' {
        return malformed(&format!("`(` expected after `{ident}`"));
    }
    i = skip_ws(bytes, i + 1, close);
    let quote = match bytes.get(i) {
        Some(&q @ (b'"' | b'\'')) if i < close => q,
        _ => return malformed("a quoted name expected"),
    };
    let name_start = i + 1;
    let Some(len) = sql[name_start..close].find(quote as char) else {
        return malformed("unterminated quoted name");
    };
    let name = &sql[name_start..name_start + len];
    if name.is_empty() {
        return malformed("an empty name");
    }
    if name.contains(['"', '\'', '\n', '\r']) {
        return malformed("a name with quotes or line breaks");
    }
    i = skip_ws(bytes, name_start + len + 1, close);
    if i >= close || bytes[i] != b')' {
        return malformed("`)` expected after the name");
    }
    i = skip_ws(bytes, i + 1, close);
    if i != close {
        return malformed("unexpected text after `)`");
    }
    let piece = if is_ref {
        Piece::Ref(name)
    } else {
        Piece::Param(name)
    };
    Ok((piece, resume))
}

fn skip_ws(bytes: &[u8], mut i: usize, end: usize) -> usize {
    while i < end && bytes[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// At most 60 characters of a template, on one line, for messages.
fn excerpt(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(60)
        .map(|c| if c.is_whitespace() { ' ' } else { c })
        .collect();
    if s.chars().count() > 60 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_refs_params_and_text() {
        let sql =
            "SELECT * FROM {{ ref(\"a\") }} WHERE r = {{param('p')}} AND {{\n ref ( 'b' )\n}}";
        assert_eq!(
            scan(sql),
            Ok(vec![
                Piece::Text("SELECT * FROM "),
                Piece::Ref("a"),
                Piece::Text(" WHERE r = "),
                Piece::Param("p"),
                Piece::Text(" AND "),
                Piece::Ref("b"),
            ])
        );
        assert_eq!(refs(sql), vec!["a", "b"]);
        assert_eq!(params(sql), vec!["p"]);
        assert_eq!(scan("SELECT '}}'"), Ok(vec![Piece::Text("SELECT '}}'")]));
        assert_eq!(scan(""), Ok(vec![]));
    }

    #[test]
    fn refuses_anything_else_and_reports_every_mistake() {
        for bad in [
            "{{ x }}",
            "{{ }}",
            "{{ ref(a) }}",
            "{{ ref(\"a') }}",
            "{{ ref(\"\") }}",
            "{{ ref(\"a\") | upper }}",
            "{{ ref \"a\" }}",
            "{{ source('a', 'b') }}",
            "{{ ref('a'",
            "{{ 1 + 1 }}",
        ] {
            assert!(scan(bad).is_err(), "{bad}");
        }
        let sql = "a {{ x }} b {{ ref('ok') }} c {{ param(p) }} d {{ ref('z'";
        let (pieces, errors) = scan_all(sql);
        let offsets: Vec<usize> = errors.iter().map(|e| e.offset).collect();
        assert_eq!(offsets, vec![2, 30, 47]);
        assert!(
            pieces
                .iter()
                .any(|l| l.piece == Piece::Ref("ok") && l.offset == 12)
        );
    }
}
