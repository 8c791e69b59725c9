//! The positioned YAML tree the checks read: every node and every mapping key keeps its
//! 1-based source line, so a finding can point at the offending field. Built from the
//! granit-parser event stream (the parser under serde-saphyr) because the serde layers
//! offer either a DOM without positions or positions without a DOM.
//!
//! Also owns what makes a file unparsable: syntax errors (tabs, truncation, bad quoting),
//! duplicate keys (reported at the repeated key), alias bombs. A broken document is
//! reported and skipped; the file's other documents are still returned.

use std::borrow::Cow;

use granit_parser::{Event, Options, Parser, ScalarStyle, Span};
use rustc_hash::FxHashSet;

/// Nodes a single document may expand to (aliases included): far above any real manifest,
/// low enough that an alias bomb cannot exhaust memory.
const MAX_NODES_PER_DOCUMENT: usize = 2_000_000;

/// Maps up to this size look for duplicate keys by a linear scan; bigger ones use a set.
const LINEAR_DUPLICATE_SCAN: usize = 16;

/// One YAML node with its position.
#[derive(Clone, Debug, PartialEq)]
pub struct Node<'a> {
    /// 1-based line where the node starts.
    pub line: u32,
    /// The node's content.
    pub value: Value<'a>,
}

/// A node's content. Scalars stay text: the checks interpret them lazily, the way the
/// Kubernetes API would for the field they read.
#[derive(Clone, Debug, PartialEq)]
pub enum Value<'a> {
    /// A scalar's text, and whether it was plain (unquoted): `3` is a number, `"3"` a string.
    Scalar(Cow<'a, str>, bool),
    /// A sequence.
    Seq(Vec<Node<'a>>),
    /// A mapping, in source order.
    Map(Vec<Entry<'a>>),
}

/// One mapping entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry<'a> {
    /// The key's text (complex keys are rendered as `<complex key>`).
    pub key: Cow<'a, str>,
    /// 1-based line of the key: the line of the field.
    pub key_line: u32,
    /// The value.
    pub value: Node<'a>,
}

static EMPTY_SEQ: &[Node<'static>] = &[];
static EMPTY_MAP: &[Entry<'static>] = &[];

impl<'a> Node<'a> {
    /// The value under `key` when this is a mapping.
    pub fn get(&self, key: &str) -> Option<&Node<'a>> {
        self.entry(key).map(|e| &e.value)
    }

    /// The entry under `key` (value and key line) when this is a mapping.
    pub fn entry(&self, key: &str) -> Option<&Entry<'a>> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|e| e.key == key),
            _ => None,
        }
    }

    /// Follows a path of mapping keys.
    pub fn path(&self, keys: &[&str]) -> Option<&Node<'a>> {
        let mut node = self;
        for key in keys {
            node = node.get(key)?;
        }
        Some(node)
    }

    /// The entries when this is a mapping, else none.
    pub fn entries(&self) -> &[Entry<'a>] {
        match &self.value {
            Value::Map(entries) => entries,
            _ => EMPTY_MAP,
        }
    }

    /// The items when this is a sequence, else none.
    pub fn items(&self) -> &[Node<'a>] {
        match &self.value {
            Value::Seq(items) => items,
            _ => EMPTY_SEQ,
        }
    }

    /// The text of a non-null scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar(text, plain) => {
                if *plain && is_null(text) {
                    None
                } else {
                    Some(text)
                }
            }
            _ => None,
        }
    }

    /// An integer scalar (plain or quoted: the caller decides whether quoting matters).
    pub fn as_i64(&self) -> Option<i64> {
        self.as_str()?.trim().parse().ok()
    }

    /// A number scalar.
    pub fn as_f64(&self) -> Option<f64> {
        let n: f64 = self.as_str()?.trim().parse().ok()?;
        n.is_finite().then_some(n)
    }

    /// A boolean scalar, with the spellings Kubernetes' YAML decoder accepts.
    pub fn as_bool(&self) -> Option<bool> {
        match self.as_str()? {
            "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Some(true),
            "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => Some(false),
            _ => None,
        }
    }

    /// Whether the node is null or absent-equivalent (`~`, `null`, empty).
    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar(text, true) if is_null(text))
    }

    /// Content equality, positions ignored.
    pub fn same_content(&self, other: &Node<'_>) -> bool {
        match (&self.value, &other.value) {
            (Value::Scalar(a, _), Value::Scalar(b, _)) => a == b,
            (Value::Seq(a), Value::Seq(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same_content(y))
            }
            (Value::Map(a), Value::Map(b)) => {
                a.len() == b.len()
                    && a.iter().all(|ea| {
                        b.iter()
                            .any(|eb| ea.key == eb.key && ea.value.same_content(&eb.value))
                    })
            }
            _ => false,
        }
    }
}

fn is_null(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

/// Why a document (or a whole file) could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct ParseError {
    /// 1-based line of the error.
    pub line: u32,
    /// 1-based column of the error.
    pub column: u32,
    /// What is wrong.
    pub message: String,
}

/// The documents of one YAML stream that parsed, and the errors of those that did not.
#[derive(Debug, Default)]
pub struct Parsed<'a> {
    /// Parsed documents, in order; empty documents are left out.
    pub documents: Vec<Node<'a>>,
    /// One error per document that could not be parsed.
    pub errors: Vec<ParseError>,
}

/// Decodes a file's bytes: UTF-8 (a leading BOM is dropped), or an error at the line of
/// the first invalid byte.
pub fn decode(bytes: &[u8]) -> Result<&str, ParseError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(e) => {
            let valid = bytes.get(..e.valid_up_to()).unwrap_or_default();
            let line = 1 + valid.iter().filter(|&&b| b == b'\n').count();
            let line_start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
            let column = String::from_utf8_lossy(valid.get(line_start..).unwrap_or_default())
                .chars()
                .count()
                + 1;
            Err(ParseError {
                line: to_u32(line),
                column: to_u32(column),
                message: format!(
                    "not UTF-8: invalid byte 0x{:02x}",
                    bytes.get(e.valid_up_to()).copied().unwrap_or(0)
                ),
            })
        }
    }
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn line_of(span: &Span) -> u32 {
    to_u32(span.start.line())
}

/// Parses every document of a YAML (or JSON) stream. Errors never stop the stream: the
/// broken document is skipped and parsing resumes at the next `---`.
pub fn parse(text: &str) -> Parsed<'_> {
    let mut parsed = Parsed::default();
    let mut options = Options::default();
    // Comments carry nothing the checks read; not emitting them saves a fifth of the parse.
    options.emit_comments = false;
    let mut parser = Parser::new_from_str_with_options(text, options);
    let mut builder = Builder::default();
    loop {
        let failure = match parser.next_event() {
            None => break,
            Some(Ok((event, span))) => match builder.push(event, &span) {
                Ok(Some(document)) => {
                    parsed.documents.push(document);
                    None
                }
                Ok(None) => None,
                Err(e) => Some(e),
            },
            Some(Err(e)) => Some(ParseError {
                line: to_u32(e.marker().line()),
                column: to_u32(e.marker().col() + 1),
                message: e.info(),
            }),
        };
        if let Some(error) = failure {
            parsed.errors.push(error);
            builder = Builder::default();
            match parser.proceed_next_document() {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    parsed.errors.push(ParseError {
                        line: to_u32(e.marker().line()),
                        column: to_u32(e.marker().col() + 1),
                        message: e.info(),
                    });
                    break;
                }
            }
        }
    }
    parsed
}

/// An open collection while the tree is built.
enum Open<'a> {
    Seq {
        line: u32,
        anchor: usize,
        items: Vec<Node<'a>>,
    },
    Map {
        line: u32,
        anchor: usize,
        entries: Vec<Entry<'a>>,
        /// The key read, waiting for its value.
        pending_key: Option<(Cow<'a, str>, u32)>,
        /// Keys seen, once the map is too big for a linear scan.
        seen: Option<FxHashSet<Cow<'a, str>>>,
        /// Values of merge keys (`<<: *base`), expanded when the map ends: keys written in
        /// the map win over merged ones wherever they stand.
        merges: Vec<Node<'a>>,
        /// Whether the pending key is a merge key (a plain `<<`).
        pending_merge: bool,
    },
}

/// Turns events into trees, one document at a time.
#[derive(Default)]
struct Builder<'a> {
    stack: Vec<Open<'a>>,
    anchors: Vec<(usize, Node<'a>)>,
    nodes: usize,
    document: Option<Node<'a>>,
}

impl<'a> Builder<'a> {
    /// Feeds one event; returns a finished non-empty document.
    fn push(&mut self, event: Event<'a>, span: &Span) -> Result<Option<Node<'a>>, ParseError> {
        let line = line_of(span);
        match event {
            Event::DocumentStart(..) => {
                self.stack.clear();
                self.anchors.clear();
                self.nodes = 0;
                self.document = None;
            }
            Event::DocumentEnd => {
                let document = self.document.take();
                self.anchors.clear();
                return Ok(document.filter(|d| !d.is_null()));
            }
            Event::Scalar(text, style, anchor, _) => {
                let plain = matches!(style, ScalarStyle::Plain);
                let node = Node {
                    line,
                    value: Value::Scalar(text, plain),
                };
                self.complete(node, anchor, span)?;
            }
            Event::SequenceStart(_, anchor, _) => self.stack.push(Open::Seq {
                line,
                anchor,
                items: Vec::new(),
            }),
            Event::MappingStart(_, anchor, _) => self.stack.push(Open::Map {
                line,
                anchor,
                entries: Vec::new(),
                pending_key: None,
                seen: None,
                merges: Vec::new(),
                pending_merge: false,
            }),
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Open::Seq {
                        line,
                        anchor,
                        items,
                    }) => (
                        Node {
                            line,
                            value: Value::Seq(items),
                        },
                        anchor,
                    ),
                    Some(Open::Map {
                        line,
                        anchor,
                        mut entries,
                        merges,
                        ..
                    }) => {
                        self.merge(&mut entries, merges, span)?;
                        (
                            Node {
                                line,
                                value: Value::Map(entries),
                            },
                            anchor,
                        )
                    }
                    None => return Ok(None),
                };
                self.complete(node, anchor, span)?;
            }
            Event::Alias(id) => {
                let target = self.anchors.iter().rev().find(|(a, _)| *a == id);
                match target {
                    Some((_, node)) => {
                        // Counted before cloning, so a bomb is stopped before it is built.
                        self.nodes = self.nodes.saturating_add(count_nodes(node));
                        if self.nodes > MAX_NODES_PER_DOCUMENT {
                            return Err(too_many_nodes(span));
                        }
                        let node = node.clone();
                        self.complete(node, 0, span)?;
                    }
                    None => {
                        return Err(ParseError {
                            line,
                            column: to_u32(span.start.col() + 1),
                            message: "alias to an unknown anchor".to_string(),
                        });
                    }
                }
            }
            _ => {}
        }
        Ok(None)
    }

    /// Attaches a finished node to its parent (or makes it the document).
    fn complete(&mut self, node: Node<'a>, anchor: usize, span: &Span) -> Result<(), ParseError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES_PER_DOCUMENT {
            return Err(too_many_nodes(span));
        }
        if anchor != 0 {
            self.anchors.push((anchor, node.clone()));
        }
        match self.stack.last_mut() {
            None => self.document = Some(node),
            Some(Open::Seq { items, .. }) => items.push(node),
            Some(Open::Map {
                entries,
                pending_key,
                seen,
                merges,
                pending_merge,
                ..
            }) => match pending_key.take() {
                None => {
                    let key = match node.value {
                        Value::Scalar(text, plain) => {
                            *pending_merge = plain && text == "<<";
                            text
                        }
                        _ => Cow::Borrowed("<complex key>"),
                    };
                    let duplicate = if key == "<<" || key == "<complex key>" {
                        false
                    } else if let Some(seen) = seen {
                        !seen.insert(key.clone())
                    } else {
                        let found = entries.iter().any(|e| e.key == key);
                        if entries.len() >= LINEAR_DUPLICATE_SCAN {
                            *seen = Some(entries.iter().map(|e| e.key.clone()).collect());
                            if let Some(seen) = seen {
                                seen.insert(key.clone());
                            }
                        }
                        found
                    };
                    if duplicate {
                        return Err(ParseError {
                            line: node.line,
                            column: to_u32(span.start.col() + 1),
                            message: format!("duplicate key `{key}`"),
                        });
                    }
                    *pending_key = Some((key, node.line));
                }
                Some((_, _)) if std::mem::take(pending_merge) => merges.push(node),
                Some((key, key_line)) => entries.push(Entry {
                    key,
                    key_line,
                    value: node,
                }),
            },
        }
        Ok(())
    }

    /// Expands a map's merge keys into its entries the way YAML 1.1 (and so `kubectl`)
    /// does: a key already in the map wins, and among merged maps the first one listed
    /// wins. The copies count toward the document's node cap like aliases do.
    fn merge(
        &mut self,
        entries: &mut Vec<Entry<'a>>,
        merges: Vec<Node<'a>>,
        span: &Span,
    ) -> Result<(), ParseError> {
        if merges.is_empty() {
            return Ok(());
        }
        let mut present: FxHashSet<Cow<'a, str>> = entries.iter().map(|e| e.key.clone()).collect();
        for merge in merges {
            let sources = match merge.value {
                Value::Map(_) => vec![merge],
                Value::Seq(items) => items,
                Value::Scalar(..) => {
                    return Err(not_mergeable(merge.line, span));
                }
            };
            for source in sources {
                let Value::Map(merged) = source.value else {
                    return Err(not_mergeable(source.line, span));
                };
                for entry in merged {
                    if present.contains(&entry.key) {
                        continue;
                    }
                    self.nodes = self.nodes.saturating_add(1 + count_nodes(&entry.value));
                    if self.nodes > MAX_NODES_PER_DOCUMENT {
                        return Err(too_many_nodes(span));
                    }
                    present.insert(entry.key.clone());
                    entries.push(entry);
                }
            }
        }
        Ok(())
    }
}

fn not_mergeable(line: u32, span: &Span) -> ParseError {
    ParseError {
        line,
        column: to_u32(span.start.col() + 1),
        message: "a merge key (`<<`) needs a mapping or a list of mappings".to_string(),
    }
}

fn too_many_nodes(span: &Span) -> ParseError {
    ParseError {
        line: line_of(span),
        column: to_u32(span.start.col() + 1),
        message: format!(
            "document expands to more than {MAX_NODES_PER_DOCUMENT} nodes (alias bomb?)"
        ),
    }
}

fn count_nodes(node: &Node<'_>) -> usize {
    match &node.value {
        Value::Scalar(..) => 1,
        Value::Seq(items) => 1 + items.iter().map(count_nodes).sum::<usize>(),
        Value::Map(entries) => {
            1 + entries
                .iter()
                .map(|e| 1 + count_nodes(&e.value))
                .sum::<usize>()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_keep_their_lines() {
        let parsed =
            parse("apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: app\n    image: x\n");
        assert!(parsed.errors.is_empty());
        let doc = &parsed.documents[0];
        assert_eq!(doc.line, 1);
        assert_eq!(doc.entry("kind").unwrap().key_line, 2);
        let container = &doc.path(&["spec", "containers"]).unwrap().items()[0];
        assert_eq!(container.line, 5);
        assert_eq!(container.entry("image").unwrap().key_line, 6);
    }

    #[test]
    fn scalars_are_typed_lazily() {
        let parsed = parse("a: 3\nb: \"3\"\nc: ~\nd: true\ne:\n");
        let doc = &parsed.documents[0];
        assert_eq!(doc.get("a").unwrap().as_i64(), Some(3));
        assert_eq!(doc.get("b").unwrap().as_str(), Some("3"));
        assert!(doc.get("c").unwrap().is_null());
        assert_eq!(doc.get("d").unwrap().as_bool(), Some(true));
        assert!(doc.get("e").unwrap().is_null());
    }

    #[test]
    fn broken_document_is_reported_and_the_next_still_parses() {
        let parsed = parse("a: [1, 2\n---\nkind: Pod\n");
        assert_eq!(parsed.errors.len(), 1);
        assert_eq!(parsed.documents.len(), 1);
        assert_eq!(
            parsed.documents[0].get("kind").unwrap().as_str(),
            Some("Pod")
        );
    }

    #[test]
    fn duplicate_key_is_reported_at_the_repeated_key() {
        let parsed = parse("kind: Pod\nmetadata:\n  name: a\n  name: b\n---\nkind: Service\n");
        assert_eq!(parsed.errors.len(), 1);
        assert_eq!(parsed.errors[0].line, 4);
        assert!(parsed.errors[0].message.contains("duplicate key `name`"));
        assert_eq!(parsed.documents.len(), 1);
    }

    #[test]
    fn duplicate_key_in_a_big_map_is_found() {
        let mut text = String::new();
        for i in 0..40 {
            text.push_str(&format!("k{i}: v\n"));
        }
        text.push_str("k7: again\n");
        let parsed = parse(&text);
        assert_eq!(parsed.errors.len(), 1);
        assert_eq!(parsed.errors[0].line, 41);
    }

    #[test]
    fn tab_indentation_is_an_error_with_a_line() {
        let parsed = parse("kind: Pod\nspec:\n\tcontainers: []\n");
        assert_eq!(parsed.errors.len(), 1);
        assert_eq!(parsed.errors[0].line, 3);
    }

    #[test]
    fn truncated_flow_is_an_error() {
        let parsed = parse("{\"kind\": \"Pod\", \"metadata\": {\"name\": \"x\"");
        assert_eq!(parsed.errors.len(), 1);
        assert!(parsed.documents.is_empty());
    }

    #[test]
    fn json_parses_with_lines() {
        let parsed =
            parse("{\n  \"kind\": \"Pod\",\n  \"spec\": {\n    \"hostNetwork\": true\n  }\n}\n");
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        let doc = &parsed.documents[0];
        assert_eq!(
            doc.get("spec")
                .unwrap()
                .entry("hostNetwork")
                .unwrap()
                .key_line,
            4
        );
    }

    #[test]
    fn aliases_resolve() {
        let parsed = parse("a: &x {b: 1}\nc: *x\n");
        let doc = &parsed.documents[0];
        assert_eq!(doc.path(&["c", "b"]).unwrap().as_i64(), Some(1));
    }

    #[test]
    fn merge_keys_expand_and_written_keys_win() {
        let parsed = parse(
            "base: &b {name: app, image: x:1, env: [{name: A}]}\nother: &o {image: y:2, port: 80}\nc:\n  name: side\n  <<: [*b, *o]\n\"<<\": quoted\n",
        );
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        let doc = &parsed.documents[0];
        let c = doc.get("c").unwrap();
        assert_eq!(c.get("name").unwrap().as_str(), Some("side"));
        // The first merged map wins over the second.
        assert_eq!(c.get("image").unwrap().as_str(), Some("x:1"));
        assert_eq!(c.get("port").unwrap().as_i64(), Some(80));
        assert_eq!(c.path(&["env"]).unwrap().items().len(), 1);
        assert!(c.get("<<").is_none());
        // A quoted `<<` is an ordinary key.
        assert_eq!(doc.get("<<").unwrap().as_str(), Some("quoted"));
        let bad = parse("a: 1\nb:\n  <<: 3\n");
        assert_eq!(bad.errors.len(), 1);
        assert_eq!(bad.errors[0].line, 3);
    }

    #[test]
    fn merge_bomb_is_stopped() {
        let mut text =
            String::from("a0: &a0 {k0: x, k1: x, k2: x, k3: x, k4: x, k5: x, k6: x, k7: x}\n");
        for i in 1..9 {
            let p = i - 1;
            text.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"));
        }
        text.push_str("m: {<<: *a0, x: *a8}\n");
        let parsed = parse(&text);
        assert_eq!(parsed.errors.len(), 1);
        assert!(parsed.errors[0].message.contains("alias bomb"));
    }

    #[test]
    fn alias_bomb_is_stopped() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let parsed = parse(&text);
        assert_eq!(parsed.errors.len(), 1);
        assert!(parsed.errors[0].message.contains("alias bomb"));
    }

    #[test]
    fn invalid_utf8_names_its_line() {
        let e = decode(b"kind: Pod\nmetadata:\n  name: \xff\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert_eq!(e.column, 9);
    }

    #[test]
    fn bom_is_dropped() {
        assert_eq!(decode(b"\xEF\xBB\xBFkind: Pod").unwrap(), "kind: Pod");
    }

    #[test]
    fn empty_documents_are_skipped() {
        let parsed = parse("---\n# only a comment\n---\nkind: Pod\n---\n");
        assert!(parsed.errors.is_empty());
        assert_eq!(parsed.documents.len(), 1);
    }
}
