//! YAML text to [`Node`] trees, keeping the position of every key and value.
//!
//! Hostile input is bounded: aliases may not expand the tree past [`MAX_ALIAS_NODES`] copied
//! nodes (the "billion laughs" document), nesting stops at [`MAX_DEPTH`] levels (so walking and
//! dropping the tree cannot overflow the stack), and duplicate keys are found with a hash index,
//! so parsing stays linear in the size of the text.

use std::collections::HashMap;
use std::sync::Arc;

use saphyr_parser::{Event, Marker, Parser, ScalarStyle};

use super::error::{ConfigError, Problem};
use super::node::{Key, Node, Origin, Scalar, Style, Value};

/// Most nodes that aliases may copy into one document, all aliases together. Real configs
/// copy a few dozen; nested aliases that double at every level reach millions within a few
/// hundred bytes of text.
pub const MAX_ALIAS_NODES: usize = 100_000;

/// Deepest nesting of mappings and sequences. otelcol configs nest about ten levels.
pub const MAX_DEPTH: usize = 64;

/// Parses one YAML document. An empty document is a null node.
pub fn parse(file: &str, text: &str) -> Result<Node, ConfigError> {
    let file: Arc<str> = Arc::from(file);
    let mut builder = Builder { anchors: HashMap::new(), stack: Vec::new(), root: None, copied: 0 };
    let mut parser = Parser::new_from_str(text);
    let mut documents = 0;
    let fail = |origin: Origin, path: &str, message: String| {
        ConfigError::Invalid(vec![Problem::new(Some(origin), path, message)])
    };
    while let Some(event) = parser.next_event() {
        let (event, span) =
            event.map_err(|e| fail(origin(&file, e.marker()), "", format!("YAML syntax error: {}", e.info())))?;
        let here = origin(&file, &span.start);
        match event {
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(fail(
                        here,
                        "",
                        "more than one YAML document in a config file; split them into several --config files".into(),
                    ));
                }
            }
            Event::Scalar(text, style, anchor, _tag) => {
                let style = if style == ScalarStyle::Plain { Style::Plain } else { Style::Quoted };
                let node = Node { value: Value::Scalar(Scalar { text: text.into_owned(), style }), origin: here };
                builder.add(node, 1, anchor)?;
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if builder.stack.len() >= MAX_DEPTH {
                    return Err(fail(
                        here,
                        &builder.child_path(),
                        format!("nested more than {MAX_DEPTH} levels deep; flatten the configuration"),
                    ));
                }
                let path = builder.child_path();
                let kind = if matches!(event, Event::SequenceStart(..)) {
                    Kind::Seq(Vec::new())
                } else {
                    Kind::Map { entries: Vec::new(), index: HashMap::new(), pending: None }
                };
                builder.stack.push(Frame { kind, anchor, origin: here, path, size: 1 });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(frame) = builder.stack.pop() else { continue };
                let value = match frame.kind {
                    Kind::Seq(items) => Value::Seq(items),
                    Kind::Map { entries, .. } => Value::Map(entries),
                };
                builder.add(Node { value, origin: frame.origin }, frame.size, frame.anchor)?;
            }
            Event::Alias(id) => {
                let Some((node, size)) = builder.anchors.get(&id) else {
                    return Err(fail(here, &builder.child_path(), "alias refers to an unknown anchor".into()));
                };
                let (node, size) = (node.clone(), *size);
                builder.copied = builder.copied.saturating_add(size);
                if builder.copied > MAX_ALIAS_NODES {
                    return Err(fail(
                        here,
                        &builder.child_path(),
                        format!(
                            "aliases expand this document past {MAX_ALIAS_NODES} copied nodes (nested aliases \
                             multiply, as in a \"billion laughs\" document); write the values out or use fewer aliases"
                        ),
                    ));
                }
                builder.add(node, size, 0)?;
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
        }
    }
    Ok(builder.root.unwrap_or_else(|| Node::null(Origin { file, line: 1, column: 1 })))
}

fn origin(file: &Arc<str>, m: &Marker) -> Origin {
    Origin { file: file.clone(), line: m.line() as u32, column: m.col() as u32 + 1 }
}

/// A mapping or sequence being read.
struct Frame {
    kind: Kind,
    /// Anchor id of the collection (0 = none).
    anchor: usize,
    origin: Origin,
    /// Full key path of the collection (`exporters::otlp`), for error messages.
    path: String,
    /// Nodes in the collection so far, itself included (what an alias to it copies).
    size: usize,
}

enum Kind {
    Seq(Vec<Node>),
    Map {
        entries: Vec<(Key, Node)>,
        /// Where each key was first written: finds duplicates in constant time.
        index: HashMap<String, Origin>,
        /// A key waiting for its value.
        pending: Option<Key>,
    },
}

struct Builder {
    /// Anchored nodes and their sizes in nodes.
    anchors: HashMap<usize, (Node, usize)>,
    stack: Vec<Frame>,
    root: Option<Node>,
    /// Nodes copied by aliases so far.
    copied: usize,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}::{key}") }
}

impl Builder {
    /// The full path of the node that comes next.
    fn child_path(&self) -> String {
        match self.stack.last() {
            None => String::new(),
            Some(Frame { kind: Kind::Seq(items), path, .. }) => join(path, &items.len().to_string()),
            Some(Frame { kind: Kind::Map { pending: Some(key), .. }, path, .. }) => join(path, &key.name),
            Some(Frame { path, .. }) => path.clone(),
        }
    }

    /// Adds a finished node of `size` nodes to the collection being read.
    fn add(&mut self, node: Node, size: usize, anchor: usize) -> Result<(), ConfigError> {
        if anchor != 0 {
            self.anchors.insert(anchor, (node.clone(), size));
        }
        let Some(frame) = self.stack.last_mut() else {
            self.root = Some(node);
            return Ok(());
        };
        frame.size = frame.size.saturating_add(size);
        match &mut frame.kind {
            Kind::Seq(items) => items.push(node),
            Kind::Map { entries, index, pending } => match pending.take() {
                Some(key) => entries.push((key, node)),
                None => {
                    let name = match &node.value {
                        Value::Scalar(s) => s.text.clone(),
                        Value::Null => String::new(),
                        _ => {
                            return Err(ConfigError::Invalid(vec![Problem::new(
                                Some(node.origin),
                                frame.path.clone(),
                                "mapping keys must be strings, not mappings or lists",
                            )]));
                        }
                    };
                    if let Some(first) = index.get(&name) {
                        return Err(ConfigError::Invalid(vec![Problem::new(
                            Some(node.origin),
                            join(&frame.path, &name),
                            format!("duplicate key (first defined at {first}); remove one of them"),
                        )]));
                    }
                    index.insert(name.clone(), node.origin.clone());
                    *pending = Some(Key { name, origin: node.origin });
                }
            },
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_positions_of_keys_and_values() {
        let doc = parse("a.yaml", "receivers:\n  linuxutil:\n    collection_interval: 5s\n").unwrap();
        let r = doc.get("receivers").unwrap();
        let key = r.key("linuxutil").unwrap();
        assert_eq!((key.origin.line, key.origin.column), (2, 3));
        let v = r.get("linuxutil").unwrap().get("collection_interval").unwrap();
        assert_eq!((v.origin.line, v.origin.column), (3, 26));
    }

    #[test]
    fn empty_body_is_null_and_aliases_resolve() {
        let doc = parse("a.yaml", "a: &x {b: 1}\nc: *x\nd:\n").unwrap();
        assert_eq!(doc.get("c").unwrap().get("b").unwrap().kind_name(), "an integer");
        assert!(doc.get("d").unwrap().is_null());
    }

    #[test]
    fn syntax_error_has_a_position() {
        let err = parse("bad.yaml", "a: [1, 2\nb: 3\n").unwrap_err();
        let p = &err.problems()[0];
        assert_eq!(&*p.origin.as_ref().unwrap().file, "bad.yaml");
        assert!(p.message.starts_with("YAML syntax error"), "{}", p.message);
    }

    #[test]
    fn duplicate_keys_are_rejected_with_their_full_path() {
        let err = parse("d.yaml", "a: 1\na: 2\n").unwrap_err();
        assert_eq!(err.problems()[0].origin.as_ref().unwrap().line, 2);
        let err = parse("d.yaml", "exporters:\n  otlp:\n    endpoint: a\n    tls: {}\n    endpoint: b\n").unwrap_err();
        let p = &err.problems()[0];
        assert_eq!(p.path, "exporters::otlp::endpoint");
        assert_eq!(p.message, "duplicate key (first defined at d.yaml:3:5); remove one of them");
        let err = parse("d.yaml", "l:\n  - {x: 1, x: 2}\n").unwrap_err();
        assert_eq!(err.problems()[0].path, "l::0::x");
    }

    #[test]
    fn alias_bomb_is_refused_at_the_alias_that_crosses_the_bound() {
        let mut text =
            String::from("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
        for (name, prev) in
            ["b", "c", "d", "e", "f", "g", "h", "i"].iter().zip(["a", "b", "c", "d", "e", "f", "g", "h"])
        {
            let refs = vec![format!("*{prev}"); 9].join(",");
            text.push_str(&format!("{name}: &{name} [{refs}]\n"));
        }
        let err = parse("bomb.yaml", &text).unwrap_err();
        let p = &err.problems()[0];
        assert!(p.message.contains("past 100000 copied nodes"), "{p}");
        // b to e copy 9 x 10, 9 x 91, 9 x 820 and 9 x 7381 nodes (74718 in all); the first
        // alias of f would copy 66430 more.
        let o = p.origin.as_ref().unwrap();
        assert_eq!((o.line, o.column, p.path.as_str()), (6, 8, "f::0"), "{p}");
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        let err = parse("deep.yaml", &deep).unwrap_err();
        assert!(err.problems()[0].message.contains("nested more than 64 levels"), "{err}");
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(parse("ok.yaml", &ok).is_ok());
    }
}
