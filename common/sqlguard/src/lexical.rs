//! Where the parser's tokens and the warehouse's lexer part ways, the tokens are put right
//! before parsing, so that the guard reads every name as the warehouse will:
//!
//! - Postgres `U&"…"` identifiers (with an optional `UESCAPE 'c'`): sqlparser reads
//!   `U & "pg\005fsleep"`, Postgres reads `pg_sleep`. They become one quoted identifier with
//!   the escapes decoded exactly as Postgres decodes them (`\XXXX`, `\+XXXXXX`, UTF-16
//!   surrogate pairs, the escape character doubled), or a refusal when Postgres would refuse.
//! - Postgres identifiers longer than 63 bytes are cut to 63, as Postgres cuts them.
//! - BigQuery quoted identifiers holding escape sequences are refused: their decoding is not
//!   worth the risk of reading a name differently.
//! - Postgres `BETWEEN SYMMETRIC`/`ASYMMETRIC` and window frames' `EXCLUDE CURRENT ROW |
//!   GROUP | TIES | NO OTHERS`, which sqlparser cannot read: those keywords are dropped from
//!   what the guard parses (they hold no name and no expression, so nothing can hide in
//!   them); the warehouse still runs the SQL as written.

use sqlparser::{
    keywords::Keyword,
    tokenizer::{Location, Span, Token, TokenWithSpan, Word},
};

use super::GuardError;
use base::Dialect;

/// Postgres's NAMEDATALEN - 1.
const POSTGRES_MAX_IDENTIFIER_BYTES: usize = 63;

pub(super) fn normalise(
    tokens: Vec<TokenWithSpan>,
    dialect: Dialect,
) -> Result<Vec<TokenWithSpan>, GuardError> {
    match dialect {
        Dialect::Postgres => postgres(tokens),
        Dialect::Bigquery => {
            for t in &tokens {
                if let Token::Word(w) = &t.token
                    && w.quote_style == Some('`')
                    && w.value.contains('\\')
                {
                    return Err(GuardError::at(
                        format!(
                            "`{}`: escape sequences in quoted identifiers are not supported; \
                             write the name without them",
                            w.value
                        ),
                        t.span.start,
                    ));
                }
            }
            Ok(tokens)
        }
    }
}

fn is_word(t: &Token, keyword: Keyword) -> bool {
    matches!(t, Token::Word(w) if w.quote_style.is_none() && w.keyword == keyword)
}

fn is_plain_word(t: &Token, text: &str) -> bool {
    matches!(t, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(text))
}

fn is_space(t: &Token) -> bool {
    matches!(t, Token::Whitespace(_))
}

/// The index of the next significant token at or after `i`.
fn next_significant(tokens: &[TokenWithSpan], mut i: usize) -> Option<usize> {
    while i < tokens.len() {
        if !is_space(&tokens[i].token) {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// The last significant token before `i`.
fn previous_significant(tokens: &[TokenWithSpan], i: usize) -> Option<&Token> {
    tokens[..i]
        .iter()
        .rev()
        .find(|t| !is_space(&t.token))
        .map(|t| &t.token)
}

fn postgres(mut tokens: Vec<TokenWithSpan>) -> Result<Vec<TokenWithSpan>, GuardError> {
    let mut out: Vec<TokenWithSpan> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        // U&"…" [UESCAPE '…']: three adjacent tokens as sqlparser reads them.
        if is_plain_word(&tokens[i].token, "u")
            && matches!(tokens.get(i + 1).map(|t| &t.token), Some(Token::Ampersand))
            && let Some(Token::Word(quoted)) = tokens.get(i + 2).map(|t| &t.token)
            && quoted.quote_style == Some('"')
        {
            let start = tokens[i].span.start;
            let mut end = tokens[i + 2].span.end;
            let mut escape = '\\';
            let mut next = i + 3;
            if let Some(u) = next_significant(&tokens, next)
                && is_plain_word(&tokens[u].token, "uescape")
            {
                let Some(c) = next_significant(&tokens, u + 1) else {
                    return Err(GuardError::at(
                        "UESCAPE must be followed by a string",
                        start,
                    ));
                };
                escape = match &tokens[c].token {
                    Token::SingleQuotedString(s) => uescape_char(s).ok_or_else(|| {
                        GuardError::at("invalid Unicode escape character", tokens[c].span.start)
                    })?,
                    _ => {
                        return Err(GuardError::at(
                            "UESCAPE must be followed by a string",
                            tokens[c].span.start,
                        ));
                    }
                };
                end = tokens[c].span.end;
                next = c + 1;
            }
            let value = decode_unicode_escapes(&quoted.value, escape)
                .map_err(|m| GuardError::at(m, start))?;
            if value.is_empty() {
                return Err(GuardError::at("zero-length delimited identifier", start));
            }
            out.push(TokenWithSpan {
                token: Token::Word(Word {
                    value: truncate_identifier(value),
                    quote_style: Some('"'),
                    keyword: Keyword::NoKeyword,
                }),
                span: Span::new(start, end),
            });
            i = next;
            continue;
        }
        // BETWEEN SYMMETRIC / ASYMMETRIC: drop the second keyword.
        if (is_word(&tokens[i].token, Keyword::SYMMETRIC)
            || is_plain_word(&tokens[i].token, "asymmetric"))
            && previous_significant(&out, out.len()).is_some_and(|t| is_word(t, Keyword::BETWEEN))
        {
            i += 1;
            continue;
        }
        // A window frame's EXCLUDE CURRENT ROW | GROUP | TIES | NO OTHERS, after its bound.
        if is_word(&tokens[i].token, Keyword::EXCLUDE)
            && previous_significant(&out, out.len()).is_some_and(|t| {
                is_word(t, Keyword::ROW)
                    || is_word(t, Keyword::PRECEDING)
                    || is_word(t, Keyword::FOLLOWING)
            })
            && let Some(a) = next_significant(&tokens, i + 1)
        {
            let b = next_significant(&tokens, a + 1);
            let second = |keyword: Keyword| b.is_some_and(|b| is_word(&tokens[b].token, keyword));
            let consumed = match &tokens[a].token {
                t if is_word(t, Keyword::CURRENT) && second(Keyword::ROW) => b,
                t if is_word(t, Keyword::NO)
                    && b.is_some_and(|b| is_plain_word(&tokens[b].token, "others")) =>
                {
                    b
                }
                t if is_word(t, Keyword::GROUP) || is_plain_word(t, "ties") => Some(a),
                _ => None,
            };
            if let Some(last) = consumed {
                i = last + 1;
                continue;
            }
        }
        let mut token = std::mem::replace(
            &mut tokens[i],
            TokenWithSpan::new(Token::EOF, Span::new(Location::empty(), Location::empty())),
        );
        if let Token::Word(w) = &mut token.token
            && w.value.len() > POSTGRES_MAX_IDENTIFIER_BYTES
            && (w.quote_style == Some('"')
                || (w.quote_style.is_none() && w.keyword == Keyword::NoKeyword))
        {
            w.value = truncate_identifier(std::mem::take(&mut w.value));
        }
        out.push(token);
        i += 1;
    }
    Ok(out)
}

/// Cuts an identifier to 63 bytes at a character boundary, as Postgres does.
fn truncate_identifier(mut value: String) -> String {
    if value.len() > POSTGRES_MAX_IDENTIFIER_BYTES {
        let mut cut = POSTGRES_MAX_IDENTIFIER_BYTES;
        while !value.is_char_boundary(cut) {
            cut -= 1;
        }
        value.truncate(cut);
    }
    value
}

/// The escape character of `UESCAPE 'c'`: one character, not a hex digit, `+`, a quote or
/// white space (Postgres's rule).
fn uescape_char(s: &str) -> Option<char> {
    let mut chars = s.chars();
    let c = chars.next()?;
    let bad = chars.next().is_some()
        || c.is_ascii_hexdigit()
        || c == '+'
        || c == '\''
        || c == '"'
        || c.is_whitespace();
    (!bad).then_some(c)
}

/// Decodes the Unicode escapes of a `U&"…"` body as Postgres does (`src/backend/parser/
/// scan.l`, `check_unicode_value` and surrogate handling).
pub(super) fn decode_unicode_escapes(body: &str, escape: char) -> Result<String, String> {
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars().peekable();
    let mut pending_high: Option<u32> = None;
    let invalid =
        || "invalid Unicode escape: write \\XXXX or \\+XXXXXX with hexadecimal digits".to_owned();
    while let Some(c) = chars.next() {
        if c != escape {
            if pending_high.is_some() {
                return Err("invalid Unicode surrogate pair".into());
            }
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&escape) {
            chars.next();
            if pending_high.is_some() {
                return Err("invalid Unicode surrogate pair".into());
            }
            out.push(escape);
            continue;
        }
        let digits = if chars.peek() == Some(&'+') {
            chars.next();
            6
        } else {
            4
        };
        let mut value = 0u32;
        for _ in 0..digits {
            let d = chars
                .next()
                .and_then(|c| c.to_digit(16))
                .ok_or_else(invalid)?;
            value = value * 16 + d;
        }
        match (pending_high.take(), value) {
            (None, 0xD800..=0xDBFF) => pending_high = Some(value),
            (Some(high), 0xDC00..=0xDFFF) => {
                let combined = 0x10000 + ((high - 0xD800) << 10) + (value - 0xDC00);
                out.push(char::from_u32(combined).ok_or_else(invalid)?);
            }
            (Some(_), _) | (None, 0xDC00..=0xDFFF) => {
                return Err("invalid Unicode surrogate pair".into());
            }
            (None, 0) => return Err("invalid Unicode escape value 0".into()),
            (None, v) => out.push(char::from_u32(v).ok_or_else(invalid)?),
        }
    }
    if pending_high.is_some() {
        return Err("invalid Unicode surrogate pair".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unicode_escapes_decode_as_postgres_decodes_them() {
        assert_eq!(
            decode_unicode_escapes(r"pg\005fsleep", '\\').as_deref(),
            Ok("pg_sleep")
        );
        assert_eq!(
            decode_unicode_escapes(r"d\0061t\+000061", '\\').as_deref(),
            Ok("data")
        );
        assert_eq!(
            decode_unicode_escapes("d!0061t!+000061", '!').as_deref(),
            Ok("data")
        );
        assert_eq!(decode_unicode_escapes(r"a\\b", '\\').as_deref(), Ok(r"a\b"));
        assert_eq!(
            decode_unicode_escapes(r"\D83D\DE00", '\\').as_deref(),
            Ok("😀")
        );
        for bad in [
            r"\12",
            r"\zzzz",
            r"\D83D",
            r"\DE00",
            r"\D83Dx",
            r"\0000",
            r"\+110000",
        ] {
            assert!(decode_unicode_escapes(bad, '\\').is_err(), "{bad}");
        }
        assert_eq!(uescape_char("!"), Some('!'));
        for bad in ["", "ab", "a", "+", "'", " "] {
            assert_eq!(uescape_char(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn long_identifiers_are_cut_at_63_bytes() {
        assert_eq!(truncate_identifier("a".repeat(70)), "a".repeat(63));
        let wide = format!("{}é", "a".repeat(62));
        assert_eq!(truncate_identifier(wide), "a".repeat(62));
    }
}
