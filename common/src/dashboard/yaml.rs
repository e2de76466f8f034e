//! YAML to JSON with positions: [`load`] parses with saphyr's marked YAML and converts the
//! single document to a `serde_json::Value` by the YAML 1.2 core schema, remembering where
//! every node (and every mapping key) starts, so that any problem found later, by path, can
//! be pointed at by line and column.
//!
//! Scalars: `null`/`Null`/`NULL`/`~`/empty are null; `true`/`false` (and their `True`/`TRUE`
//! spellings) booleans; decimal, `0x` and `0o` integers; decimal floats and `.inf`/`.nan`
//! (refused: JSON cannot hold them); everything else, and every quoted scalar, a string. So
//! `EMEA`, `NO`, `on`, `yes`, `2024-01-01` and `24h` stay strings (YAML 1.1's readings do not
//! apply).
//!
//! Refused, each with a clear [`Issue`]: syntax errors; duplicate keys in a mapping; keys that
//! are not strings (`1:`, `true:`, `? [a]`); tags on collections and scalars that do not match
//! their tag (`!!int x`); a second document; more than [`MAX_YAML_BYTES`]; nesting deeper than
//! [`MAX_DEPTH`]. Anchors and aliases are resolved by saphyr (within its expansion budget) and
//! are fine; nodes reached through an alias carry the anchor's positions.

use std::ops::Range;

use saphyr::{LoadableYamlNode, MarkedYaml, Marker, Scalar, YamlData};
use serde_json::{Map, Number, Value};

use super::validate::Issue;

/// The largest YAML accepted (1 MiB).
pub const MAX_YAML_BYTES: usize = 1 << 20;
/// The deepest nesting accepted (a dashboard needs 4).
pub const MAX_DEPTH: usize = 32;

/// Where each node of the document is, by path: `title`, `queries[1].sql`,
/// `layout[0].position.x`; the root is `""`. Keys that are not plain identifiers are written
/// `["a key"]`. Lines and columns are 1-based (columns count characters).
///
/// Kept as a tree shaped like the document (building it costs one small record per node);
/// a lookup walks the path's segments.
#[derive(Debug, Clone, Default)]
pub struct Positions {
    root: Option<PosNode>,
}

#[derive(Debug, Clone)]
struct PosNode {
    line: usize,
    column: usize,
    /// Byte range of the node in the source (for a block scalar, its content lines).
    start: usize,
    end: usize,
    /// Where the key is, for a mapping's value.
    key: Option<(usize, usize)>,
    kids: Kids,
}

#[derive(Debug, Clone)]
enum Kids {
    Leaf,
    Seq(Vec<PosNode>),
    Map(Vec<(String, PosNode)>),
}

impl PosNode {
    fn count(&self) -> usize {
        1 + match &self.kids {
            Kids::Leaf => 0,
            Kids::Seq(items) => items.iter().map(PosNode::count).sum(),
            Kids::Map(entries) => entries.iter().map(|(_, n)| n.count()).sum(),
        }
    }
}

/// One step of a path.
enum Segment<'p> {
    Key(std::borrow::Cow<'p, str>),
    Index(usize),
}

/// Splits a path into segments; `None` when it is not a well-formed path.
fn segments(path: &str) -> Option<Vec<Segment<'_>>> {
    let b = path.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'[' if b.get(i + 1) == Some(&b'"') => {
                // `["key"]`: a JSON string, then `]`.
                let mut j = i + 2;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                if b.get(j + 1) != Some(&b']') {
                    return None;
                }
                let key: String = serde_json::from_str(path.get(i + 1..=j)?).ok()?;
                out.push(Segment::Key(key.into()));
                i = j + 2;
            }
            b'[' => {
                let close = i + path[i..].find(']')?;
                out.push(Segment::Index(path[i + 1..close].parse().ok()?));
                i = close + 1;
            }
            _ => {
                let from = if b[i] == b'.' { i + 1 } else { i };
                let end = path[from..]
                    .find(['.', '['])
                    .map_or(path.len(), |k| from + k);
                out.push(Segment::Key(path[from..end].into()));
                i = end;
            }
        }
    }
    Some(out)
}

impl Positions {
    /// The node at `path`, or (`exact == false`) the deepest ancestor of it that exists.
    fn walk(&self, path: &str, exact: bool) -> Option<&PosNode> {
        let mut node = self.root.as_ref()?;
        let Some(segments) = segments(path) else {
            return if exact { None } else { Some(node) };
        };
        for segment in segments {
            let next = match (&node.kids, segment) {
                (Kids::Seq(items), Segment::Index(i)) => items.get(i),
                (Kids::Map(entries), Segment::Key(k)) => {
                    entries.iter().find(|(key, _)| *key == k).map(|(_, n)| n)
                }
                _ => None,
            };
            match next {
                Some(n) => node = n,
                None if exact => return None,
                None => break,
            }
        }
        Some(node)
    }

    /// Where the node at `path` starts: for a mapping value, the value; for a list item,
    /// the item.
    pub fn get(&self, path: &str) -> Option<(usize, usize)> {
        self.walk(path, true).map(|n| (n.line, n.column))
    }

    /// Where the key of the mapping entry at `path` is (e.g. `layout[0].colour` points at
    /// `colour`).
    pub fn key(&self, path: &str) -> Option<(usize, usize)> {
        self.walk(path, true).and_then(|n| n.key)
    }

    /// The byte range of the node at `path` in the YAML source.
    pub fn span(&self, path: &str) -> Option<Range<usize>> {
        self.walk(path, true).map(|n| n.start..n.end)
    }

    /// The position of `path`, or of its nearest ancestor that exists (a missing key is
    /// pointed at by the mapping that lacks it).
    pub fn locate(&self, path: &str) -> (Option<usize>, Option<usize>) {
        match self.walk(path, false) {
            Some(n) => (Some(n.line), Some(n.column)),
            None => (None, None),
        }
    }

    /// How many nodes are known.
    pub fn len(&self) -> usize {
        self.root.as_ref().map_or(0, PosNode::count)
    }

    pub fn is_empty(&self) -> bool {
        self.root.is_none()
    }
}

/// The path one level up: `a.b[2]` → `a.b`, `a.b` → `a`, `a` → `""`, `""` → none.
pub fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    let bytes = path.as_bytes();
    if bytes[bytes.len() - 1] == b']' {
        // `[3]` or `["key"]`: find the matching `[` (quoted keys may hold `[`).
        let mut i = bytes.len() - 1;
        let quoted = bytes.len() >= 2 && bytes[bytes.len() - 2] == b'"';
        while i > 0 {
            i -= 1;
            if bytes[i] == b'[' && (!quoted || bytes.get(i + 1) == Some(&b'"')) {
                return Some(&path[..i]);
            }
        }
        return Some("");
    }
    match path.rfind(['.', '[']) {
        Some(i) if bytes[i] == b'.' => Some(&path[..i]),
        Some(i) => Some(&path[..i]),
        None => Some(""),
    }
}

/// Appends a mapping key to a path (`a` + `b` → `a.b`; odd keys → `a["b c"]`).
pub fn push_key(path: &mut String, key: &str) {
    let plain = key
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if plain {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key);
    } else {
        path.push('[');
        path.push_str(&Value::String(key.to_owned()).to_string());
        path.push(']');
    }
}

/// Appends a list index to a path (`a` + 2 → `a[2]`).
pub fn push_index(path: &mut String, index: usize) {
    use std::fmt::Write;
    let _ = write!(path, "[{index}]");
}

/// Parses `yaml` into JSON and positions; the first problem as an [`Issue`].
pub fn load(yaml: &str) -> Result<(Value, Positions), Issue> {
    load_all(yaml).map_err(|mut issues| issues.swap_remove(0))
}

/// Like [`load`], but reports every problem the conversion finds (non-string keys, tags, …),
/// in document order. A syntax error stops the parser, so it is always alone.
pub fn load_all(yaml: &str) -> Result<(Value, Positions), Vec<Issue>> {
    if yaml.len() > MAX_YAML_BYTES {
        return Err(vec![issue(
            "",
            None,
            format!(
                "the YAML is {} bytes; the limit is {MAX_YAML_BYTES} bytes (1 MiB)",
                yaml.len()
            ),
        )]);
    }
    let docs = match MarkedYaml::load_from_str(yaml) {
        Ok(docs) => docs,
        Err(e) => {
            let m = e.marker();
            return Err(vec![issue(
                "",
                Some((m.line(), m.col() + 1)),
                syntax_message(yaml, e.info(), m),
            )]);
        }
    };
    let Some(root) = docs.first() else {
        return Err(vec![issue(
            "",
            None,
            "the YAML document is empty".to_owned(),
        )]);
    };
    if let Some(second) = docs.get(1) {
        let m = second.span.start;
        return Err(vec![issue(
            "",
            Some((m.line(), m.col() + 1)),
            format!(
                "only one YAML document is allowed, but a second one starts at line {} \
                 (remove the `---` separator and what follows)",
                m.line()
            ),
        )]);
    }
    let mut converter = Converter {
        offsets: Offsets::new(yaml),
        issues: Vec::new(),
        path: String::new(),
    };
    let (value, root) = converter.node(root, 0);
    if converter.issues.is_empty() {
        Ok((value, Positions { root: Some(root) }))
    } else {
        Err(converter.issues)
    }
}

fn issue(path: &str, at: Option<(usize, usize)>, message: String) -> Issue {
    Issue {
        path: path.to_owned(),
        line: at.map(|a| a.0),
        column: at.map(|a| a.1),
        message,
    }
}

fn syntax_message(yaml: &str, info: &str, m: &Marker) -> String {
    if info == "duplicated key in mapping" {
        // The marker is the repeated key: quote it from the source.
        let line = yaml.lines().nth(m.line().saturating_sub(1)).unwrap_or("");
        let key: String = line
            .chars()
            .skip(m.col())
            .take_while(|c| *c != ':')
            .collect();
        let key = key.trim().trim_matches(['"', '\'']);
        return format!("duplicate key `{key}`: a mapping cannot repeat a key");
    }
    let hint = if info.contains("mapping values are not allowed") {
        " (text that contains `: ` must be quoted)"
    } else if info.contains("found a tab") || info.contains("tabs") {
        " (indent with spaces, not tabs)"
    } else {
        ""
    };
    format!("YAML syntax error: {info}{hint}")
}

/// Character index → byte offset (saphyr's markers count characters).
struct Offsets<'a> {
    ascii: bool,
    src: &'a str,
    /// Byte offset of each line's start (only built for non-ASCII sources).
    line_starts: Vec<usize>,
}

impl<'a> Offsets<'a> {
    fn new(src: &'a str) -> Self {
        let ascii = src.is_ascii();
        let line_starts = if ascii {
            Vec::new()
        } else {
            std::iter::once(0)
                .chain(src.match_indices('\n').map(|(i, _)| i + 1))
                .collect()
        };
        Self {
            ascii,
            src,
            line_starts,
        }
    }

    fn byte(&self, m: Marker) -> usize {
        if self.ascii {
            return m.index().min(self.src.len());
        }
        let Some(&start) = self.line_starts.get(m.line().saturating_sub(1)) else {
            return self.src.len();
        };
        self.src[start..]
            .char_indices()
            .nth(m.col())
            .map_or(self.src.len(), |(i, _)| start + i)
    }
}

struct Converter<'a> {
    offsets: Offsets<'a>,
    issues: Vec<Issue>,
    /// The current node's path, for issues.
    path: String,
}

impl Converter<'_> {
    fn at(m: Marker) -> Option<(usize, usize)> {
        Some((m.line(), m.col() + 1))
    }

    fn fail(&mut self, m: Marker, message: String) -> Value {
        self.issues.push(issue(&self.path, Self::at(m), message));
        Value::Null
    }

    /// The node as JSON, and its positions.
    fn node(&mut self, node: &MarkedYaml<'_>, depth: usize) -> (Value, PosNode) {
        let start = node.span.start;
        let mut pos = PosNode {
            line: start.line(),
            column: start.col() + 1,
            start: self.offsets.byte(start),
            end: self.offsets.byte(node.span.end),
            key: None,
            kids: Kids::Leaf,
        };
        if depth > MAX_DEPTH {
            let v = self.fail(
                start,
                format!("the YAML nests deeper than {MAX_DEPTH} levels"),
            );
            return (v, pos);
        }
        let value = match &node.data {
            YamlData::Value(scalar) => self.scalar(scalar, start),
            YamlData::Representation(text, _, _) => {
                let scalar = Scalar::parse_from_cow(text.clone());
                self.scalar(&scalar, start)
            }
            YamlData::Sequence(items) => {
                let mut out = Vec::with_capacity(items.len());
                let mut kids = Vec::with_capacity(items.len());
                let len = self.path.len();
                for (i, item) in items.iter().enumerate() {
                    push_index(&mut self.path, i);
                    let (v, p) = self.node(item, depth + 1);
                    out.push(v);
                    kids.push(p);
                    self.path.truncate(len);
                }
                pos.kids = Kids::Seq(kids);
                Value::Array(out)
            }
            YamlData::Mapping(entries) => {
                let mut out = Map::new();
                let mut kids = Vec::with_capacity(entries.len());
                let len = self.path.len();
                for (k, v) in entries {
                    let key = match &k.data {
                        YamlData::Value(Scalar::String(s)) => s.as_ref(),
                        other => {
                            let what = describe_key(other);
                            self.issues.push(issue(
                                &self.path,
                                Self::at(k.span.start),
                                format!(
                                    "mapping keys must be strings, but this key is {what}; \
                                     quote it if it is meant as text"
                                ),
                            ));
                            continue;
                        }
                    };
                    push_key(&mut self.path, key);
                    let (value, mut p) = self.node(v, depth + 1);
                    p.key = Self::at(k.span.start);
                    out.insert(key.to_owned(), value);
                    kids.push((key.to_owned(), p));
                    self.path.truncate(len);
                }
                pos.kids = Kids::Map(kids);
                Value::Object(out)
            }
            YamlData::Tagged(tag, _) => self.fail(
                start,
                format!(
                    "YAML tags (`{}{}`) are not supported here",
                    tag.handle, tag.suffix
                ),
            ),
            YamlData::Alias(_) => self.fail(start, "this alias could not be resolved".to_owned()),
            YamlData::BadValue => self.fail(
                start,
                "this value does not match its tag (e.g. `!!int` on text)".to_owned(),
            ),
        };
        (value, pos)
    }

    fn scalar(&mut self, scalar: &Scalar<'_>, start: Marker) -> Value {
        match scalar {
            Scalar::Null => Value::Null,
            Scalar::Boolean(b) => Value::Bool(*b),
            Scalar::Integer(i) => Value::Number((*i).into()),
            Scalar::FloatingPoint(f) => match Number::from_f64(f.into_inner()) {
                Some(n) => Value::Number(n),
                None => self.fail(
                    start,
                    "infinite and not-a-number values (`.inf`, `.nan`) cannot be used".to_owned(),
                ),
            },
            Scalar::String(s) => Value::String(s.as_ref().to_owned()),
        }
    }
}

fn describe_key<'a>(data: &YamlData<'a, MarkedYaml<'a>>) -> String {
    match data {
        YamlData::Value(Scalar::Null) => "null".to_owned(),
        YamlData::Value(Scalar::Boolean(b)) => format!("the boolean {b}"),
        YamlData::Value(Scalar::Integer(i)) => format!("the number {i}"),
        YamlData::Value(Scalar::FloatingPoint(f)) => format!("the number {f}"),
        YamlData::Sequence(_) => "a list".to_owned(),
        YamlData::Mapping(_) => "a mapping".to_owned(),
        _ => "not a plain string".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_paths() {
        assert_eq!(parent("layout[0].position.x"), Some("layout[0].position"));
        assert_eq!(parent("layout[0]"), Some("layout"));
        assert_eq!(parent("layout"), Some(""));
        assert_eq!(parent(""), None);
        assert_eq!(parent("a[\"b[c\"]"), Some("a"));
        let mut p = String::from("a");
        push_key(&mut p, "odd key");
        assert_eq!(p, "a[\"odd key\"]");
    }
}
