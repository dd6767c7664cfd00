//! Renders the effective configuration as YAML, with secrets redacted: values of secret keys,
//! and inside any URL its user information and secret-looking query parameters.

use std::borrow::Cow;

use super::node::{Node, Resolved, Style, Value};

/// What replaces a secret.
const REDACTED: &str = "[REDACTED]";

/// Query parameter names (lower case) that are secrets wherever they appear in the name...
const SECRET_PARAM_PARTS: [&str; 11] =
    ["token", "secret", "passw", "pwd", "apikey", "api_key", "api-key", "auth", "signature", "credential", "session"];
/// ...and names that are secrets only as a whole (`key=...`, `sig=...`).
const SECRET_PARAMS: [&str; 4] = ["key", "sig", "code", "pass"];

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
        Value::Scalar(_) if redact => format!("\"{REDACTED}\""),
        Value::Scalar(s) => match redact_url(&s.text) {
            Cow::Borrowed(text) => scalar_text(text, s.style),
            Cow::Owned(text) => scalar_text(&text, Style::Quoted),
        },
    }
}

/// `text` with the password of a URL's user information (all of it when there is no password:
/// a lone user name is often a token) and secret-looking query parameter values redacted.
pub fn redact_url(text: &str) -> Cow<'_, str> {
    let Some(scheme_end) = text.find("://") else { return Cow::Borrowed(text) };
    let start = scheme_end + 3;
    let rest = &text[start..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..start]);
    let authority = &rest[..authority_len];
    match authority.rfind('@') {
        Some(at) => {
            if let Some((user, _)) = authority[..at].split_once(':') {
                out.push_str(user);
                out.push(':');
            }
            out.push_str(REDACTED);
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    let after = &rest[authority_len..];
    let (path_and_query, fragment) = match after.find('#') {
        Some(f) => after.split_at(f),
        None => (after, ""),
    };
    match path_and_query.split_once('?') {
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            for (i, pair) in query.split('&').enumerate() {
                if i > 0 {
                    out.push('&');
                }
                match pair.split_once('=') {
                    Some((name, _)) if is_secret_param(name) => {
                        out.push_str(name);
                        out.push('=');
                        out.push_str(REDACTED);
                    }
                    _ => out.push_str(pair),
                }
            }
        }
        None => out.push_str(path_and_query),
    }
    out.push_str(fragment);
    if out == text { Cow::Borrowed(text) } else { Cow::Owned(out) }
}

fn is_secret_param(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    SECRET_PARAMS.contains(&n.as_str()) || SECRET_PARAM_PARTS.iter().any(|part| n.contains(part))
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
    fn urls_lose_their_credentials() {
        let cases = [
            (
                "http://user:PASS@host:9090/api/v1/write?token=abc&x=1",
                "http://user:[REDACTED]@host:9090/api/v1/write?token=[REDACTED]&x=1",
            ),
            ("https://TOKEN@host/x", "https://[REDACTED]@host/x"),
            (
                "https://host/x?api_key=k&sig=s&signal=metrics#frag",
                "https://host/x?api_key=[REDACTED]&sig=[REDACTED]&signal=metrics#frag",
            ),
            (
                "https://host/x?X-Amz-Signature=s&AccessToken=t",
                "https://host/x?X-Amz-Signature=[REDACTED]&AccessToken=[REDACTED]",
            ),
            ("https://a:b@host?password=p", "https://a:[REDACTED]@host?password=[REDACTED]"),
            ("collector:4317", "collector:4317"),
            ("http://host:4318/v1/metrics", "http://host:4318/v1/metrics"),
        ];
        for (url, want) in cases {
            assert_eq!(redact_url(url), want, "{url}");
        }
        let node =
            yaml::parse("x.yaml", "exporters:\n  prometheusremotewrite:\n    endpoint: http://u:secret@h/w?token=t\n")
                .unwrap();
        let out = render_redacted(&node);
        assert!(out.contains("endpoint: http://u:[REDACTED]@h/w?token=[REDACTED]\n"), "{out}");
        assert!(!out.contains("secret") && !out.contains("=t"), "{out}");
    }

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
