//! Several `--config` files merged in order, and `--set key=value` overrides.

use std::sync::Arc;

use super::error::Problem;
use super::node::{Key, Node, Origin, Scalar, Style, Value};

/// Deep-merges `over` into `base`: mappings merge key by key, anything else is replaced.
pub fn merge(base: &mut Node, over: Node) {
    if over.is_null() && base.as_map().is_some() {
        // An empty section in a later file keeps what earlier files set (unlike otelcol, which
        // erases it; that is a documented surprise we do not copy).
        return;
    }
    match (&mut base.value, over.value) {
        (Value::Map(into), Value::Map(from)) => {
            for (key, value) in from {
                match into.iter_mut().find(|(k, _)| k.name == key.name) {
                    Some((_, existing)) => merge(existing, value),
                    None => into.push((key, value)),
                }
            }
        }
        (slot, value) => {
            *slot = value;
            base.origin = over.origin;
        }
    }
}

/// Applies one `--set path=value` override. The path separator is `::` when present, else `.`
/// (`--set processors.batch.timeout=2s`, `--set exporters::otlp/a.b::endpoint=x:4317`).
pub fn apply_set(root: &mut Node, expression: &str) -> Result<(), Problem> {
    let origin = Origin { file: Arc::from("--set"), line: 1, column: 1 };
    let (path, value) = expression.split_once('=').ok_or_else(|| {
        Problem::new(Some(origin.clone()), "", format!("`--set {expression}` must look like `key.path=value`"))
    })?;
    let parts: Vec<&str> = if path.contains("::") { path.split("::").collect() } else { path.split('.').collect() };
    if parts.iter().any(|p| p.is_empty()) {
        return Err(Problem::new(Some(origin), path, "empty key in --set path"));
    }
    let leaf =
        Node { value: Value::Scalar(Scalar { text: value.to_string(), style: Style::Plain }), origin: origin.clone() };
    let mut over = leaf;
    for part in parts.iter().rev() {
        over = Node {
            value: Value::Map(vec![(Key { name: (*part).to_string(), origin: origin.clone() }, over)]),
            origin: origin.clone(),
        };
    }
    if root.is_null() {
        *root = Node { value: Value::Map(Vec::new()), origin: origin.clone() };
    }
    merge(root, over);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml;

    #[test]
    fn maps_merge_and_scalars_and_lists_replace() {
        let mut a = yaml::parse("a.yaml", "x: {p: 1, q: [1, 2]}\ny: 1\n").unwrap();
        let b = yaml::parse("b.yaml", "x: {q: [3]}\nz: 2\n").unwrap();
        merge(&mut a, b);
        let x = a.get("x").unwrap();
        assert!(x.get("p").is_some());
        assert_eq!(&*x.get("q").unwrap().origin.file, "b.yaml");
        assert!(a.get("z").is_some());
    }

    #[test]
    fn set_overrides_one_key() {
        let mut a = yaml::parse("a.yaml", "processors:\n  batch:\n    timeout: 1s\n").unwrap();
        apply_set(&mut a, "processors.batch.timeout=2s").unwrap();
        apply_set(&mut a, "exporters::otlp/x.y::endpoint=h:1").unwrap();
        let t = a.get("processors").unwrap().get("batch").unwrap().get("timeout").unwrap();
        assert_eq!(&*t.origin.file, "--set");
        assert!(a.get("exporters").unwrap().get("otlp/x.y").unwrap().get("endpoint").is_some());
        assert!(apply_set(&mut a, "novalue").is_err());
    }
}
