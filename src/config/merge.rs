//! Several `--config` files merged in order, and `--set key=value` overrides.

use std::collections::HashMap;
use std::sync::Arc;

use super::error::Problem;
use super::node::{Key, Node, Origin, Value};
use super::yaml;

/// Deep-merges `over` into `base`: mappings merge key by key, anything else is replaced.
pub fn merge(base: &mut Node, over: Node) {
    if over.is_null() && base.as_map().is_some() {
        // An empty section in a later file keeps what earlier files set (unlike otelcol, which
        // erases it; that is a documented surprise we do not copy).
        return;
    }
    match (&mut base.value, over.value) {
        (Value::Map(into), Value::Map(from)) => {
            // An index keeps merging two large mappings linear.
            let mut index: HashMap<String, usize> =
                into.iter().enumerate().map(|(i, (k, _))| (k.name.clone(), i)).collect();
            for (key, value) in from {
                match index.get(&key.name) {
                    Some(&i) => merge(&mut into[i].1, value),
                    None => {
                        index.insert(key.name.clone(), into.len());
                        into.push((key, value));
                    }
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
/// (`--set processors.batch.timeout=2s`, `--set exporters::otlp/a.b::endpoint=x:4317`). The
/// value is YAML, so flow values work as in otelcol: `--set service.pipelines.metrics.exporters=[debug]`.
pub fn apply_set(root: &mut Node, expression: &str) -> Result<(), Problem> {
    let origin = Origin { file: Arc::from("--set"), line: 1, column: 1 };
    let (path, value) = expression.split_once('=').ok_or_else(|| {
        Problem::new(Some(origin.clone()), "", format!("`--set {expression}` must look like `key.path=value`"))
    })?;
    let parts: Vec<&str> = if path.contains("::") { path.split("::").collect() } else { path.split('.').collect() };
    if parts.iter().any(|p| p.is_empty()) {
        return Err(Problem::new(Some(origin), path, "empty key in --set path"));
    }
    let mut over = yaml::parse("--set", value).map_err(|e| {
        let why = e.problems().first().map_or_else(|| e.to_string(), |p| p.message.clone());
        Problem::new(
            Some(origin.clone()),
            path,
            format!(
                "the value of `--set {}` is not valid YAML: {why}; quote it, e.g. --set '{path}=\"...\"'",
                super::error::shorten(expression)
            ),
        )
    })?;
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

    #[test]
    fn set_values_are_yaml() {
        let mut a = yaml::parse("a.yaml", "x: 1\n").unwrap();
        apply_set(&mut a, "service.pipelines.metrics.exporters=[debug, otlp]").unwrap();
        apply_set(&mut a, "exporters.otlp={endpoint: \"h:4317\"}").unwrap();
        apply_set(&mut a, "exporters.prometheus.endpoint=127.0.0.1:9100").unwrap();
        let list = a.locate("service::pipelines::metrics::exporters");
        assert!(matches!(&list.value, Value::Seq(s) if s.len() == 2), "{list:?}");
        assert!(a.locate("exporters::otlp::endpoint").origin.file.as_ref() == "--set");
        let ep = a.locate("exporters::prometheus::endpoint");
        assert!(matches!(&ep.value, Value::Scalar(s) if s.text == "127.0.0.1:9100"));
        let err = apply_set(&mut a, "x=[unclosed").unwrap_err();
        assert!(err.message.contains("is not valid YAML"), "{}", err.message);
    }
}
