//! A YAML document as a tree that remembers where every node came from, so that errors found
//! long after parsing (unknown keys, bad values, dangling references) can name file, line and column.

use std::fmt;
use std::sync::Arc;

/// Position of a node: file (or `--set`, `default.yaml` ...), 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The file the node was read from.
    pub file: Arc<str>,
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// How a scalar was written; plain scalars are typed (null, bool, int, float), quoted ones are strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Unquoted: resolved with the YAML 1.2 core schema.
    Plain,
    /// Quoted or block scalar: always a string.
    Quoted,
}

/// A YAML value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `~`, `null` or nothing.
    Null,
    /// A scalar as written; its type is decided by the reader (see [`Scalar`]).
    Scalar(Scalar),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in document order. Keys are strings.
    Map(Vec<(Key, Node)>),
}

/// A scalar's text and style.
#[derive(Debug, Clone, PartialEq)]
pub struct Scalar {
    /// The text after YAML unescaping and `${env:...}` substitution.
    pub text: String,
    /// Plain or quoted.
    pub style: Style,
}

/// A mapping key with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    /// The key text.
    pub name: String,
    /// Where the key is written.
    pub origin: Origin,
}

/// A value with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The value.
    pub value: Value,
    /// Where the value starts.
    pub origin: Origin,
}

/// The typed reading of a scalar under the YAML 1.2 core schema.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolved<'a> {
    /// `null`, `~` or empty.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer above `i64::MAX`.
    UInt(u64),
    /// A float (including `.inf`, `.nan`).
    Float(f64),
    /// Anything else.
    Str(&'a str),
}

impl Scalar {
    /// Resolves the scalar's type: quoted scalars are strings; plain ones follow the core schema.
    pub fn resolve(&self) -> Resolved<'_> {
        if self.style == Style::Quoted {
            return Resolved::Str(&self.text);
        }
        let t = self.text.as_str();
        match t {
            "" | "~" | "null" | "Null" | "NULL" => return Resolved::Null,
            "true" | "True" | "TRUE" => return Resolved::Bool(true),
            "false" | "False" | "FALSE" => return Resolved::Bool(false),
            ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
                return Resolved::Float(f64::INFINITY);
            }
            "-.inf" | "-.Inf" | "-.INF" => return Resolved::Float(f64::NEG_INFINITY),
            ".nan" | ".NaN" | ".NAN" => return Resolved::Float(f64::NAN),
            _ => {}
        }
        if let Some(v) = parse_int(t) {
            return v;
        }
        if looks_like_float(t)
            && let Ok(f) = t.parse::<f64>()
        {
            return Resolved::Float(f);
        }
        Resolved::Str(t)
    }
}

fn parse_int(t: &str) -> Option<Resolved<'static>> {
    let (neg, digits) = match t.as_bytes().first()? {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    let (radix, digits) = if let Some(h) = digits.strip_prefix("0x") {
        (16, h)
    } else if let Some(o) = digits.strip_prefix("0o") {
        (8, o)
    } else {
        (10, digits)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u64::from_str_radix(digits, radix).ok()?;
    if neg {
        if magnitude <= i64::MAX as u64 + 1 {
            Some(Resolved::Int((magnitude as i128).wrapping_neg() as i64))
        } else {
            None
        }
    } else if magnitude <= i64::MAX as u64 {
        Some(Resolved::Int(magnitude as i64))
    } else {
        Some(Resolved::UInt(magnitude))
    }
}

fn looks_like_float(t: &str) -> bool {
    let mut seen_digit = false;
    for (i, c) in t.chars().enumerate() {
        match c {
            '0'..='9' => seen_digit = true,
            '+' | '-' if i == 0 => {}
            '.' | 'e' | 'E' | '+' | '-' => {}
            _ => return false,
        }
    }
    seen_digit
}

impl Node {
    /// A null node at `origin`.
    pub fn null(origin: Origin) -> Self {
        Node { value: Value::Null, origin }
    }

    /// True for `~`/`null`/empty values (a component with a null body takes its defaults).
    pub fn is_null(&self) -> bool {
        match &self.value {
            Value::Null => true,
            Value::Scalar(s) => s.resolve() == Resolved::Null,
            _ => false,
        }
    }

    /// The entries when this is a mapping.
    pub fn as_map(&self) -> Option<&[(Key, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The value under `key` when this is a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?.iter().find(|(k, _)| k.name == key).map(|(_, v)| v)
    }

    /// The key entry (with its origin) for `key`.
    pub fn key(&self, key: &str) -> Option<&Key> {
        self.as_map()?.iter().find(|(k, _)| k.name == key).map(|(k, _)| k)
    }

    /// Follows a `::`-separated relative path (map keys, or sequence indexes) and returns the
    /// deepest node found, used to locate a validation problem as precisely as possible.
    pub fn locate(&self, path: &str) -> &Node {
        let mut node = self;
        if path.is_empty() {
            return node;
        }
        for part in path.split("::") {
            let next = match &node.value {
                Value::Map(m) => m.iter().find(|(k, _)| k.name == part).map(|(_, v)| v),
                Value::Seq(s) => part.parse::<usize>().ok().and_then(|i| s.get(i)),
                _ => None,
            };
            match next {
                Some(n) => node = n,
                None => break,
            }
        }
        node
    }

    /// A short human description of the node's kind, for "expected X, found Y" messages.
    pub fn kind_name(&self) -> &'static str {
        match &self.value {
            Value::Null => "null",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
            Value::Scalar(s) => match s.resolve() {
                Resolved::Null => "null",
                Resolved::Bool(_) => "a boolean",
                Resolved::Int(_) | Resolved::UInt(_) => "an integer",
                Resolved::Float(_) => "a number",
                Resolved::Str(_) => "a string",
            },
        }
    }
}
