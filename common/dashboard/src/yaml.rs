//! YAML to JSON with positions: [`load`] reads saphyr-parser's events and builds the one
//! document's `serde_json::Value` by the YAML 1.2 core schema directly (no YAML tree in
//! between), remembering where every node (and every mapping key) starts, so that any
//! problem found later, by path, can be pointed at by line and column.
//!
//! Scalars: `null`/`Null`/`NULL`/`~`/empty are null; `true`/`false` (and their `True`/`TRUE`
//! spellings) booleans; decimal, `0x` and `0o` integers; decimal floats and `.inf`/`.nan`
//! (refused: JSON cannot hold them); everything else, and every quoted scalar, a string. So
//! `EMEA`, `NO`, `on`, `yes`, `2024-01-01` and `24h` stay strings (YAML 1.1's readings do not
//! apply).
//!
//! Refused, each with a clear [`Issue`]: syntax errors; duplicate keys in a mapping; keys that
//! are not strings (`1:`, `true:`, `? [a]`); tags beyond the core schema's (`!thing`) and
//! scalars that do not match their tag (`!!int x`); a second document; more than
//! [`MAX_YAML_BYTES`]; nesting deeper than [`MAX_DEPTH`]. Anchors and aliases are resolved
//! (within [`ALIAS_BUDGET`] nodes in all) and are fine; an alias is placed where it is
//! written, and the nodes inside it where the anchor's are.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;

use saphyr::Scalar;
use saphyr_parser::{Event, Marker, Parser, ScalarStyle, Span, Tag};
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
    let mut loader = Loader {
        offsets: Offsets::new(yaml),
        issues: Vec::new(),
        path: String::new(),
        stack: Vec::new(),
        skip: 0,
        anchors: HashMap::new(),
        alias_budget: ALIAS_BUDGET,
        root: None,
        documents: 0,
    };
    for event in Parser::new_from_str(yaml) {
        let (event, span) = match event {
            Ok(ok) => ok,
            Err(e) => {
                // A syntax error leaves the rest unreadable: it is reported alone.
                return Err(vec![issue("", at(*e.marker()), syntax_message(e.info()))]);
            }
        };
        if let Err(stop) = loader.event(event, span) {
            return Err(vec![stop]);
        }
    }
    let Some((value, root)) = loader.root else {
        return Err(vec![issue(
            "",
            None,
            "the YAML document is empty".to_owned(),
        )]);
    };
    if loader.issues.is_empty() {
        Ok((value, Positions { root: Some(root) }))
    } else {
        Err(loader.issues)
    }
}

/// How many nodes aliases may produce in all (against "billion laughs" documents).
pub const ALIAS_BUDGET: usize = 10_000;

fn issue(path: &str, at: Option<(usize, usize)>, message: String) -> Issue {
    Issue {
        path: path.to_owned(),
        line: at.map(|a| a.0),
        column: at.map(|a| a.1),
        message,
    }
}

fn syntax_message(info: &str) -> String {
    let hint = if info.contains("mapping values are not allowed") {
        " (text that contains `: ` must be quoted)"
    } else if info.contains("found a tab") || info.contains("tabs") {
        " (indent with spaces, not tabs)"
    } else {
        ""
    };
    format!("YAML syntax error: {info}{hint}")
}

/// A marker as 1-based line and column.
fn at(m: Marker) -> Option<(usize, usize)> {
    Some((m.line(), m.col() + 1))
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

/// Builds the JSON value and its positions straight from the parser's events (no
/// intermediate YAML tree), keeping the current node's path for issues.
struct Loader<'a> {
    offsets: Offsets<'a>,
    issues: Vec<Issue>,
    /// The path of the node being read.
    path: String,
    /// The collections being read, innermost last.
    stack: Vec<Frame>,
    /// While > 0, events are skipped (inside a collection nested too deep).
    skip: usize,
    anchors: HashMap<usize, (Value, PosNode)>,
    alias_budget: usize,
    root: Option<(Value, PosNode)>,
    documents: usize,
}

/// A list or mapping being read.
struct Frame {
    pos: PosNode,
    anchor: usize,
    /// `path.len()` before this node's own segment was pushed.
    path_len: usize,
    body: Body,
}

enum Body {
    Seq(Vec<Value>, Vec<PosNode>),
    Map {
        map: Map<String, Value>,
        kids: Vec<(String, PosNode)>,
        /// `None` while reading a key; then the key read and its line and column, or
        /// `Some(None)` for a refused key (its value is read and dropped).
        key: Option<Option<(String, (usize, usize))>>,
    },
}

impl Loader<'_> {
    fn event(&mut self, event: Event<'_>, span: Span) -> Result<(), Issue> {
        if self.skip > 0 {
            match event {
                Event::SequenceStart(..) | Event::MappingStart(..) => self.skip += 1,
                Event::SequenceEnd | Event::MappingEnd => {
                    self.skip -= 1;
                    if self.skip == 0 {
                        let frame = self.stack.pop().expect("the skipped collection");
                        self.path.truncate(frame.path_len);
                        self.finish(Value::Null, frame.pos);
                    }
                }
                _ => {}
            }
            return Ok(());
        }
        let is_map = matches!(event, Event::MappingStart(..));
        match event {
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    let line = span.start.line();
                    return Err(issue(
                        "",
                        at(span.start),
                        format!(
                            "only one YAML document is allowed, but a second one starts at \
                             line {line} (remove the `---` separator and what follows)"
                        ),
                    ));
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                let path_len = self.enter();
                let pos = self.leaf(span);
                let value = self.scalar(text, style, tag.as_ref(), span.start);
                self.path.truncate(path_len);
                self.anchor(anchor, &value, &pos);
                self.finish(value, pos);
            }
            Event::SequenceStart(anchor, tag) | Event::MappingStart(anchor, tag) => {
                let path_len = self.enter();
                if let Some(tag) = tag.filter(|t| !t.is_yaml_core_schema()) {
                    self.issues.push(issue(
                        &self.path,
                        at(span.start),
                        format!(
                            "YAML tags (`{}{}`) are not supported here",
                            tag.handle, tag.suffix
                        ),
                    ));
                }
                let body = if is_map {
                    Body::Map {
                        map: Map::new(),
                        kids: Vec::new(),
                        key: None,
                    }
                } else {
                    Body::Seq(Vec::new(), Vec::new())
                };
                if self.stack.len() >= MAX_DEPTH {
                    self.issues.push(issue(
                        &self.path,
                        at(span.start),
                        format!("the YAML nests deeper than {MAX_DEPTH} levels"),
                    ));
                    self.skip = 1;
                }
                let pos = self.leaf(span);
                self.stack.push(Frame {
                    pos,
                    anchor,
                    path_len,
                    body,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let frame = self.stack.pop().expect("a collection ends after it starts");
                self.path.truncate(frame.path_len);
                let mut pos = frame.pos;
                pos.end = self.offsets.byte(span.start);
                let value = match frame.body {
                    Body::Seq(items, kids) => {
                        pos.kids = Kids::Seq(kids);
                        Value::Array(items)
                    }
                    Body::Map { map, kids, .. } => {
                        pos.kids = Kids::Map(kids);
                        Value::Object(map)
                    }
                };
                self.anchor(frame.anchor, &value, &pos);
                self.finish(value, pos);
            }
            Event::Alias(id) => {
                let path_len = self.enter();
                let Some((value, pos)) = self.anchors.get(&id) else {
                    self.issues.push(issue(
                        &self.path,
                        at(span.start),
                        "this alias names no anchor".to_owned(),
                    ));
                    self.path.truncate(path_len);
                    let pos = self.leaf(span);
                    self.finish(Value::Null, pos);
                    return Ok(());
                };
                let count = pos.count();
                if count > self.alias_budget {
                    return Err(issue(
                        &self.path,
                        at(span.start),
                        format!(
                            "aliases expand to more than {ALIAS_BUDGET} nodes in all; write \
                             the content out instead"
                        ),
                    ));
                }
                self.alias_budget -= count;
                let value = value.clone();
                // The alias itself is placed where it is written; what it expands to, at
                // the anchor.
                let pos = PosNode {
                    kids: pos.kids.clone(),
                    ..self.leaf(span)
                };
                self.path.truncate(path_len);
                self.finish(value, pos);
            }
        }
        Ok(())
    }

    /// A node starts: extends the path by its segment; returns the length to go back to.
    fn enter(&mut self) -> usize {
        let len = self.path.len();
        match self.stack.last().map(|f| &f.body) {
            Some(Body::Seq(items, _)) => push_index(&mut self.path, items.len()),
            Some(Body::Map {
                key: Some(Some((key, _))),
                ..
            }) => push_key(&mut self.path, key),
            _ => {}
        }
        len
    }

    fn leaf(&self, span: Span) -> PosNode {
        PosNode {
            line: span.start.line(),
            column: span.start.col() + 1,
            start: self.offsets.byte(span.start),
            end: self.offsets.byte(span.end),
            key: None,
            kids: Kids::Leaf,
        }
    }

    fn anchor(&mut self, anchor: usize, value: &Value, pos: &PosNode) {
        // Anchor ids start at 1.
        if anchor > 0 {
            self.anchors.insert(anchor, (value.clone(), pos.clone()));
        }
    }

    /// A node is read: it becomes the root, a list item, a mapping key or a mapping value.
    fn finish(&mut self, value: Value, mut pos: PosNode) {
        let start = Some((pos.line, pos.column));
        let Some(frame) = self.stack.last_mut() else {
            self.root = Some((value, pos));
            return;
        };
        match &mut frame.body {
            Body::Seq(items, kids) => {
                items.push(value);
                kids.push(pos);
            }
            Body::Map { map, kids, key } => match key.take() {
                None => {
                    *key = Some(match value {
                        Value::String(k) if map.contains_key(&k) => {
                            self.issues.push(issue(
                                &self.path,
                                start,
                                format!("duplicate key `{k}`: a mapping cannot repeat a key"),
                            ));
                            None
                        }
                        Value::String(k) => Some((k, (pos.line, pos.column))),
                        other => {
                            let what = describe_key(&other);
                            self.issues.push(issue(
                                &self.path,
                                start,
                                format!(
                                    "mapping keys must be strings, but this key is {what}; \
                                     quote it if it is meant as text"
                                ),
                            ));
                            None
                        }
                    });
                }
                Some(Some((k, key_at))) => {
                    pos.key = Some(key_at);
                    kids.push((k.clone(), pos));
                    map.insert(k, value);
                }
                Some(None) => {}
            },
        }
    }

    /// A scalar by the YAML 1.2 core schema (quoted scalars are strings).
    fn scalar(
        &mut self,
        text: Cow<'_, str>,
        style: ScalarStyle,
        tag: Option<&Cow<'_, Tag>>,
        start: Marker,
    ) -> Value {
        if let Some(tag) = tag.filter(|t| !t.is_yaml_core_schema()) {
            return self.fail(
                start,
                format!(
                    "YAML tags (`{}{}`) are not supported here",
                    tag.handle, tag.suffix
                ),
            );
        }
        match Scalar::parse_from_cow_and_metadata(text, style, tag) {
            Some(Scalar::Null) => Value::Null,
            Some(Scalar::Boolean(b)) => Value::Bool(b),
            Some(Scalar::Integer(i)) => Value::Number(i.into()),
            Some(Scalar::FloatingPoint(f)) => match Number::from_f64(f.into_inner()) {
                Some(n) => Value::Number(n),
                None => self.fail(
                    start,
                    "infinite and not-a-number values (`.inf`, `.nan`) cannot be used".to_owned(),
                ),
            },
            Some(Scalar::String(s)) if s.contains('\0') => self.fail(
                start,
                "this text holds a NUL character (`\\0`), which cannot be stored; remove it"
                    .to_owned(),
            ),
            Some(Scalar::String(s)) => Value::String(s.into_owned()),
            None => self.fail(
                start,
                "this value does not match its tag (e.g. `!!int` on text)".to_owned(),
            ),
        }
    }

    fn fail(&mut self, m: Marker, message: String) -> Value {
        self.issues.push(issue(&self.path, at(m), message));
        Value::Null
    }
}

fn describe_key(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(_) => "a string".to_owned(),
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "a mapping".to_owned(),
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
