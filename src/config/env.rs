//! `${env:VAR}`, `${VAR}`, `${env:VAR:-default}` and `$$` in scalars, as the OpenTelemetry Collector does.
//!
//! A scalar that is exactly one reference takes the type of the substituted text (`port: ${env:PORT}`
//! with `PORT=8080` is the integer 8080); a reference inside a longer string is string interpolation.

use super::error::{Problem, shorten};
use super::node::{Node, Origin, Style, Value};

/// A `${env:VAR}` without a default whose variable is not set: the value became empty.
#[derive(Debug, Clone, PartialEq)]
pub struct UnsetVariable {
    /// The variable's name.
    pub name: String,
    /// Full key path of the value that references it.
    pub path: String,
    /// Where that value is written.
    pub origin: Origin,
}

impl UnsetVariable {
    /// What to tell the user, appended to a problem the empty value caused or logged as a warning.
    pub fn explain(&self) -> String {
        format!(
            "`${{env:{name}}}` at {origin} is not set and has no default, so the value is empty: set {name} \
             or write a default, `${{env:{name}:-value}}`",
            name = self.name,
            origin = self.origin
        )
    }
}

/// Substitutes environment references in every scalar of `node`, using `lookup` for variables.
/// Unset variables without a default become empty and are recorded in `unset`.
pub fn substitute(
    node: &mut Node,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    unset: &mut Vec<UnsetVariable>,
    problems: &mut Vec<Problem>,
) {
    match &mut node.value {
        Value::Scalar(s) => {
            if !s.text.contains('$') {
                return;
            }
            let mut missing = Vec::new();
            let expanded = expand(&s.text, lookup, &mut missing);
            unset.extend(missing.into_iter().map(|name| UnsetVariable {
                name,
                path: path.to_string(),
                origin: node.origin.clone(),
            }));
            match expanded {
                Ok((text, whole)) => {
                    s.text = text;
                    if whole && s.style == Style::Quoted {
                        // A quoted reference stays a string, like otelcol keeps the original string.
                    } else if !whole {
                        s.style = Style::Quoted;
                    }
                }
                Err(msg) => problems.push(Problem::new(Some(node.origin.clone()), path, msg)),
            }
        }
        Value::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                substitute(item, &join(path, &i.to_string()), lookup, unset, problems);
            }
        }
        Value::Map(entries) => {
            for (k, v) in entries.iter_mut() {
                substitute(v, &join(path, &k.name), lookup, unset, problems);
            }
        }
        Value::Null => {}
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}::{key}") }
}

/// Expands references in `text`. Returns the new text and whether the text was one whole
/// reference; the names of unset variables without a default go to `unset`.
fn expand(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    unset: &mut Vec<String>,
) -> Result<(String, bool), String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut references = 0;
    let mut literal = false;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        literal |= pos > 0;
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            literal = true;
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| format!("unterminated `${{` in `{}`; close it with `}}`", shorten(text)))?;
            let reference = &body[..end];
            out.push_str(&resolve(reference, lookup, unset)?);
            references += 1;
            rest = &body[end + 1..];
        } else {
            out.push('$');
            literal = true;
            rest = after;
        }
    }
    literal |= !rest.is_empty();
    out.push_str(rest);
    Ok((out, references == 1 && !literal))
}

fn resolve(
    reference: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    unset: &mut Vec<String>,
) -> Result<String, String> {
    let reference_shown = shorten(reference);
    let spec = match reference.split_once(':') {
        Some(("env", spec)) => spec,
        Some((scheme, _)) if is_scheme(scheme) => {
            return Err(format!(
                "unsupported config source `{}:` in `${{{reference_shown}}}`; only `env:` is supported",
                shorten(scheme)
            ));
        }
        _ => reference,
    };
    let (name, default) = match spec.split_once(":-") {
        Some((n, d)) => (n, Some(d)),
        None => (spec, None),
    };
    if !valid_name(name) {
        return Err(format!(
            "invalid environment variable name `{}` in `${{{reference_shown}}}`; names match [a-zA-Z_][a-zA-Z0-9_]*",
            shorten(name)
        ));
    }
    match (lookup(name), default) {
        (Some(v), Some(d)) if v.is_empty() => Ok(d.to_string()),
        (Some(v), _) => Ok(v),
        (None, Some(d)) => Ok(d.to_string()),
        (None, None) => {
            unset.push(name.to_string());
            Ok(String::new())
        }
    }
}

fn is_scheme(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric())
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::Resolved;
    use crate::config::yaml;

    fn run(text: &str) -> (Node, Vec<UnsetVariable>, Vec<Problem>) {
        let mut node = yaml::parse("t.yaml", text).unwrap();
        let (mut w, mut p) = (Vec::new(), Vec::new());
        let lookup = |n: &str| match n {
            "PORT" => Some("8080".to_string()),
            "HOST" => Some("example".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        substitute(&mut node, "", &lookup, &mut w, &mut p);
        (node, w, p)
    }

    fn scalar(node: &Node, key: &str) -> Resolved<'static> {
        match &node.get(key).unwrap().value {
            Value::Scalar(s) => match s.resolve() {
                Resolved::Str(t) => Resolved::Str(Box::leak(t.to_string().into_boxed_str())),
                Resolved::Int(i) => Resolved::Int(i),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn whole_reference_is_typed_and_embedded_is_string() {
        let (n, w, p) = run("a: ${env:PORT}\nb: ${HOST}:${env:PORT}\nc: ${env:NOPE:-9}\nd: $$x\ne: ${env:EMPTY:-z}\n");
        assert!(p.is_empty() && w.is_empty());
        assert_eq!(scalar(&n, "a"), Resolved::Int(8080));
        assert_eq!(scalar(&n, "b"), Resolved::Str("example:8080"));
        assert_eq!(scalar(&n, "c"), Resolved::Int(9));
        assert_eq!(scalar(&n, "d"), Resolved::Str("$x"));
        assert_eq!(scalar(&n, "e"), Resolved::Str("z"));
    }

    #[test]
    fn unset_warns_and_bad_names_fail() {
        let (_, w, p) = run("a: ${env:UNSET_X}\nb: ${env:1BAD}\nc: ${file:/x}\n");
        assert_eq!((w.len(), w[0].name.as_str(), w[0].path.as_str(), w[0].origin.line), (1, "UNSET_X", "a", 1));
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].path, "b");
        assert!(p[1].message.contains("only `env:`"));
    }
}
