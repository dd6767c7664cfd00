//! YAML text to [`Node`] trees, keeping the position of every key and value.

use std::collections::HashMap;
use std::sync::Arc;

use saphyr_parser::{Event, Marker, Parser, ScalarStyle};

use super::error::{ConfigError, Problem};
use super::node::{Key, Node, Origin, Scalar, Style, Value};

/// Parses one YAML document. An empty document is a null node.
pub fn parse(file: &str, text: &str) -> Result<Node, ConfigError> {
    let file: Arc<str> = Arc::from(file);
    let mut builder = Builder { file: file.clone(), anchors: HashMap::new(), stack: Vec::new(), root: None };
    let mut parser = Parser::new_from_str(text);
    let mut documents = 0;
    while let Some(event) = parser.next_event() {
        let (event, span) = event.map_err(|e| {
            ConfigError::Invalid(vec![Problem::new(
                Some(origin(&file, e.marker())),
                "",
                format!("YAML syntax error: {}", e.info()),
            )])
        })?;
        let here = origin(&file, &span.start);
        match event {
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(ConfigError::Invalid(vec![Problem::new(
                        Some(here),
                        "",
                        "more than one YAML document in a config file; split them into several --config files",
                    )]));
                }
            }
            Event::Scalar(text, style, anchor, _tag) => {
                let style = if style == ScalarStyle::Plain { Style::Plain } else { Style::Quoted };
                let node = Node { value: Value::Scalar(Scalar { text: text.into_owned(), style }), origin: here };
                builder.add(node, anchor)?;
            }
            Event::SequenceStart(anchor, _) => {
                builder.stack.push(Frame::Seq { items: Vec::new(), anchor, origin: here })
            }
            Event::MappingStart(anchor, _) => {
                builder.stack.push(Frame::Map { entries: Vec::new(), pending: None, anchor, origin: here })
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match builder.stack.pop() {
                    Some(Frame::Seq { items, anchor, origin }) => (Node { value: Value::Seq(items), origin }, anchor),
                    Some(Frame::Map { entries, anchor, origin, .. }) => {
                        (Node { value: Value::Map(entries), origin }, anchor)
                    }
                    None => continue,
                };
                builder.add(node, anchor)?;
            }
            Event::Alias(id) => {
                let node = builder.anchors.get(&id).cloned().ok_or_else(|| {
                    ConfigError::Invalid(vec![Problem::new(
                        Some(here.clone()),
                        "",
                        "alias refers to an unknown anchor",
                    )])
                })?;
                builder.add(node, 0)?;
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
        }
    }
    Ok(builder.root.unwrap_or_else(|| Node::null(Origin { file, line: 1, column: 1 })))
}

fn origin(file: &Arc<str>, m: &Marker) -> Origin {
    Origin { file: file.clone(), line: m.line() as u32, column: m.col() as u32 + 1 }
}

enum Frame {
    Seq { items: Vec<Node>, anchor: usize, origin: Origin },
    Map { entries: Vec<(Key, Node)>, pending: Option<Key>, anchor: usize, origin: Origin },
}

struct Builder {
    file: Arc<str>,
    anchors: HashMap<usize, Node>,
    stack: Vec<Frame>,
    root: Option<Node>,
}

impl Builder {
    fn add(&mut self, node: Node, anchor: usize) -> Result<(), ConfigError> {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, pending, .. }) => match pending.take() {
                None => {
                    let name = match &node.value {
                        Value::Scalar(s) => s.text.clone(),
                        Value::Null => String::new(),
                        _ => {
                            return Err(ConfigError::Invalid(vec![Problem::new(
                                Some(node.origin),
                                "",
                                format!("mapping keys must be strings (in {})", self.file),
                            )]));
                        }
                    };
                    if let Some((first, _)) = entries.iter().find(|(k, _)| k.name == name) {
                        return Err(ConfigError::Invalid(vec![Problem::new(
                            Some(node.origin),
                            name.clone(),
                            format!("duplicate key (first defined at {}); remove one of them", first.origin),
                        )]));
                    }
                    *pending = Some(Key { name, origin: node.origin });
                }
                Some(key) => entries.push((key, node)),
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
    fn duplicate_keys_are_rejected() {
        let err = parse("d.yaml", "a: 1\na: 2\n").unwrap_err();
        assert_eq!(err.problems()[0].origin.as_ref().unwrap().line, 2);
    }
}
