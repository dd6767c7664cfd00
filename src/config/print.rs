//! Renders the effective configuration as YAML, with secrets redacted.

use super::node::{Node, Resolved, Style, Value};

/// Keys whose values are secrets; under `headers` every value is redacted.
const SECRET_KEYS: [&str; 9] =
    ["password", "token", "bearer_token", "api_key", "authorization", "secret", "client_secret", "key_pem", "headers"];

/// Renders `node` as YAML, replacing secret values with `[REDACTED]`.
pub fn render_redacted(node: &Node) -> String {
    let mut out = String::new();
    render(node, 0, false, &mut out);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    SECRET_KEYS.iter().any(|s| k == *s)
}

fn render(node: &Node, indent: usize, redact: bool, out: &mut String) {
    match &node.value {
        Value::Map(entries) if !entries.is_empty() => {
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 || !out.is_empty() && !out.ends_with('\n') {
                    out.push('\n');
                }
                if i > 0 || out.ends_with('\n') || out.is_empty() {
                    out.push_str(&" ".repeat(indent));
                }
                out.push_str(&scalar_text(&k.name, Style::Plain));
                out.push(':');
                let secret = redact || is_secret(&k.name);
                write_child(v, indent, secret, out);
            }
        }
        Value::Seq(items) if !items.is_empty() => {
            for (i, v) in items.iter().enumerate() {
                if i > 0 || !out.is_empty() && !out.ends_with('\n') {
                    out.push('\n');
                }
                out.push_str(&" ".repeat(indent));
                out.push('-');
                write_child(v, indent, redact, out);
            }
        }
        _ => out.push_str(&leaf(node, redact)),
    }
}

fn write_child(v: &Node, indent: usize, redact: bool, out: &mut String) {
    match &v.value {
        Value::Map(m) if !m.is_empty() => {
            out.push('\n');
            render(v, indent + 2, redact, out);
        }
        Value::Seq(s) if !s.is_empty() => {
            out.push('\n');
            render(v, indent + 2, redact, out);
        }
        _ => {
            let text = leaf(v, redact);
            if !text.is_empty() {
                out.push(' ');
                out.push_str(&text);
            }
        }
    }
}

fn leaf(node: &Node, redact: bool) -> String {
    match &node.value {
        Value::Null => String::new(),
        Value::Map(_) => "{}".into(),
        Value::Seq(_) => "[]".into(),
        Value::Scalar(_) if redact => "\"[REDACTED]\"".into(),
        Value::Scalar(s) => scalar_text(&s.text, s.style),
    }
}

fn scalar_text(text: &str, style: Style) -> String {
    let plain_ok = style == Style::Plain
        || (super::node::Scalar { text: text.to_string(), style: Style::Plain }.resolve() == Resolved::Str(text));
    let safe = !text.is_empty()
        && !text.starts_with([
            ' ', '-', '?', ':', ',', '[', ']', '{', '}', '#', '&', '*', '!', '|', '>', '\'', '"', '%', '@', '`',
        ])
        && !text.ends_with(' ')
        && !text.contains(": ")
        && !text.contains(" #")
        && !text.contains('\n');
    if plain_ok && safe {
        text.to_string()
    } else {
        serde_json::to_string(text).unwrap_or_else(|_| format!("{text:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml;

    #[test]
    fn round_trips_and_redacts() {
        let src = "exporters:\n  otlp:\n    endpoint: \"h:4317\"\n    headers:\n      authorization: Bearer x\n    tls: {insecure: true}\n    password: p\nservice:\n  pipelines:\n    metrics:\n      receivers: [a, b]\n      exporters: []\n";
        let node = yaml::parse("x.yaml", src).unwrap();
        let out = render_redacted(&node);
        assert!(!out.contains("Bearer"), "{out}");
        assert!(out.contains("authorization: \"[REDACTED]\""), "{out}");
        assert!(!out.contains(": p\n"), "{out}");
        let again = yaml::parse("y.yaml", &out).unwrap();
        let ep = again.get("exporters").unwrap().get("otlp").unwrap().get("endpoint").unwrap();
        assert!(matches!(&ep.value, Value::Scalar(s) if s.text == "h:4317"));
        let recv =
            again.get("service").unwrap().get("pipelines").unwrap().get("metrics").unwrap().get("receivers").unwrap();
        assert!(matches!(&recv.value, Value::Seq(s) if s.len() == 2));
    }
}
