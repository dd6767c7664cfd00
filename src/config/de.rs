//! A serde `Deserializer` over [`Node`] trees: component configs deserialize straight from the
//! positioned tree, so every error knows its file, line, column and full key path.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

use super::error::{Problem, shorten};
use super::node::{Key, Node, Origin, Resolved, Value};

/// A deserialization error, located once it has bubbled up to the node it belongs to.
#[derive(Debug, Clone)]
pub struct DeError {
    origin: Option<Origin>,
    path: Option<String>,
    missing_field: Option<&'static str>,
    message: String,
}

impl DeError {
    fn locate(mut self, origin: &Origin, path: &str) -> Self {
        if self.origin.is_none() {
            self.origin = Some(origin.clone());
        }
        if self.path.is_none() {
            self.path = Some(match self.missing_field {
                Some(field) => join(path, field),
                None => path.to_string(),
            });
        }
        self
    }

    /// Converts into a configuration problem.
    pub fn into_problem(self) -> Problem {
        Problem::new(self.origin, self.path.unwrap_or_default(), self.message)
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError { origin: None, path: None, missing_field: None, message: msg.to_string() }
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Self::custom(format_args!("expected {exp}, found {}", describe(&unexp)))
    }

    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Self::custom(format_args!("invalid value {}: expected {exp}", describe(&unexp)))
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Self::custom(format_args!("unknown field `{}`; valid fields: {}", shorten(field), expected.join(", ")))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        Self::custom(format_args!("unknown value `{}`; valid values: {}", shorten(variant), expected.join(", ")))
    }

    fn missing_field(field: &'static str) -> Self {
        let mut e = Self::custom(format_args!("missing required field `{field}`"));
        e.missing_field = Some(field);
        e
    }
}

fn describe(unexp: &de::Unexpected<'_>) -> String {
    match unexp {
        de::Unexpected::Str(s) => format!("`{}`", shorten(s)),
        de::Unexpected::Unsigned(n) => n.to_string(),
        de::Unexpected::Signed(n) => n.to_string(),
        de::Unexpected::Float(n) => n.to_string(),
        de::Unexpected::Bool(b) => b.to_string(),
        de::Unexpected::Unit => "null".to_string(),
        de::Unexpected::Map => "a mapping".to_string(),
        de::Unexpected::Seq => "a list".to_string(),
        other => other.to_string(),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}::{key}") }
}

/// For `Option` settings where a key that is present, even with a null body (`grpc:`,
/// `batch: {}`), turns the feature on with its defaults (a `deserialize_with`).
pub fn present_means_defaults<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: de::Deserializer<'de>,
    T: de::Deserialize<'de> + Default,
{
    Ok(Some(<Option<T> as de::Deserialize>::deserialize(d)?.unwrap_or_default()))
}

/// Deserializes `T` from `node`, whose full key path is `path`; stops at the first problem.
pub fn from_node<T: de::DeserializeOwned>(node: &Node, path: &str) -> Result<T, Problem> {
    T::deserialize(NodeDe { node, path: path.to_string(), unknown: None })
        .map_err(|e| e.locate(&node.origin, path).into_problem())
}

/// Where collecting deserialization records unknown keys instead of failing on them.
type UnknownKeys<'a> = Option<&'a RefCell<Vec<Problem>>>;

/// What [`from_node_all`] found.
#[derive(Debug)]
pub struct Collected<T> {
    /// The value, when one could be made: wrong values are left out so they take their defaults.
    pub value: Option<T>,
    /// Every problem found, in the order found.
    pub problems: Vec<Problem>,
    /// Paths (relative to the node) of the values left out because they were wrong.
    pub left_out: Vec<String>,
}

/// Most wrong values reported for one node; a file with more is not worth reading further.
const MAX_VALUE_PROBLEMS: usize = 100;

/// Deserializes `T` from `node` reporting every problem, not only the first: unknown keys are
/// all recorded in one pass; a wrong value is recorded, left out (so its field takes its
/// default) and the node is read again to find the next one. A missing required field ends
/// the search (nothing can stand in for it).
pub fn from_node_all<T: de::DeserializeOwned>(node: &Node, path: &str) -> Collected<T> {
    let mut work: Option<Node> = None;
    let mut problems: Vec<Problem> = Vec::new();
    let mut left_out: Vec<String> = Vec::new();
    for _ in 0..=MAX_VALUE_PROBLEMS {
        let unknown = RefCell::new(Vec::new());
        let current = work.as_ref().unwrap_or(node);
        let result = T::deserialize(NodeDe { node: current, path: path.to_string(), unknown: Some(&unknown) });
        for p in unknown.into_inner() {
            if !problems.contains(&p) {
                problems.push(p);
            }
        }
        let error = match result {
            Ok(value) => return Collected { value: Some(value), problems, left_out },
            Err(e) => e.locate(&current.origin, path),
        };
        let missing = error.missing_field.is_some();
        let mut problem = error.into_problem();
        let relative = relative_path(&problem.path, path);
        let original = relative.as_deref().and_then(|r| original_path(node, current, r));
        if let Some(original) = &original {
            problem.path = if original.is_empty() { path.to_string() } else { format!("{path}::{original}") };
        }
        // A problem at a value left out (a required field now missing) or at one of its
        // parents (an enum mapping left empty) is caused by leaving it out: not reported. The
        // parent can be left out in turn; a missing required field cannot be made up.
        let is_left_out = original.as_ref().is_some_and(|o| left_out.iter().any(|l| l == o));
        let parent_of_left_out = original
            .as_ref()
            .is_some_and(|o| !o.is_empty() && left_out.iter().any(|l| l.starts_with(&format!("{o}::"))));
        if !is_left_out && !parent_of_left_out && !problems.contains(&problem) {
            problems.push(problem);
        }
        // Leave the wrong value out and read again, unless nothing can be left out.
        let (Some(relative), Some(original)) = (relative, original) else { break };
        if missing || is_left_out || relative.is_empty() {
            break;
        }
        let mut next = current.clone();
        if !remove(&mut next, &relative) {
            break;
        }
        left_out.push(original);
        work = Some(next);
    }
    Collected { value: None, problems, left_out }
}

/// `full` relative to `base` (`exporters::x::a::b` under `exporters::x` is `a::b`).
fn relative_path(full: &str, base: &str) -> Option<String> {
    if full == base {
        return Some(String::new());
    }
    if base.is_empty() {
        return Some(full.to_string());
    }
    full.strip_prefix(base).and_then(|r| r.strip_prefix("::")).map(str::to_string)
}

/// Maps a path in `work` (where list items may have been left out, shifting indexes) to the
/// same node's path in `original`, matching list items by position in the file.
fn original_path(original: &Node, work: &Node, path: &str) -> Option<String> {
    let (mut o, mut w) = (original, work);
    let mut out: Vec<String> = Vec::new();
    if path.is_empty() {
        return Some(String::new());
    }
    for part in path.split("::") {
        match (&o.value, &w.value) {
            (Value::Map(om), Value::Map(wm)) => {
                o = om.iter().find(|(k, _)| k.name == part).map(|(_, v)| v)?;
                w = wm.iter().find(|(k, _)| k.name == part).map(|(_, v)| v)?;
                out.push(part.to_string());
            }
            (Value::Seq(os), Value::Seq(ws)) => {
                let i: usize = part.parse().ok()?;
                w = ws.get(i)?;
                let j = (i..os.len()).find(|&j| os[j].origin == w.origin)?;
                o = &os[j];
                out.push(j.to_string());
            }
            // The path ends at a key that is not there (a missing field).
            _ => {
                out.push(part.to_string());
                return Some(out.join("::"));
            }
        }
    }
    Some(out.join("::"))
}

/// Removes the node at `path` (a map entry or list item) from `root`; false when not found.
fn remove(root: &mut Node, path: &str) -> bool {
    let (parent, last) = match path.rsplit_once("::") {
        Some((p, l)) => (p, l),
        None => ("", path),
    };
    let mut node = root;
    if !parent.is_empty() {
        for part in parent.split("::") {
            let next = match &mut node.value {
                Value::Map(m) => m.iter_mut().find(|(k, _)| k.name == part).map(|(_, v)| v),
                Value::Seq(s) => part.parse::<usize>().ok().and_then(|i| s.get_mut(i)),
                _ => None,
            };
            match next {
                Some(n) => node = n,
                None => return false,
            }
        }
    }
    match &mut node.value {
        Value::Map(m) => match m.iter().position(|(k, _)| k.name == last) {
            Some(i) => {
                m.remove(i);
                true
            }
            None => false,
        },
        Value::Seq(s) => match last.parse::<usize>() {
            Ok(i) if i < s.len() => {
                s.remove(i);
                true
            }
            _ => false,
        },
        _ => false,
    }
}

/// Deserializer for one node.
pub struct NodeDe<'a> {
    node: &'a Node,
    path: String,
    unknown: UnknownKeys<'a>,
}

impl<'a> NodeDe<'a> {
    fn seq<'s>(&'s self, items: &'a [Node]) -> SeqAccess<'s>
    where
        'a: 's,
    {
        SeqAccess { items: items.iter(), path: &self.path, index: 0, unknown: self.unknown }
    }

    fn map<'s>(&'s self, entries: &'a [(Key, Node)], fields: Option<&'static [&'static str]>) -> MapAccess<'s>
    where
        'a: 's,
    {
        MapAccess { entries: entries.iter(), path: &self.path, value: None, fields, unknown: self.unknown }
    }

    /// A mapping (or null, read as an empty one). With `fields` (a struct) and a place to record
    /// them, unknown keys are recorded and skipped rather than failing the whole struct.
    fn visit_entries<'de, V: Visitor<'de>>(
        self,
        fields: Option<&'static [&'static str]>,
        v: V,
    ) -> Result<V::Value, DeError> {
        let r = match &self.node.value {
            Value::Map(entries) => v.visit_map(self.map(entries, fields)),
            _ if self.node.is_null() => v.visit_map(self.map(&[], fields)),
            _ => return Err(self.expected("a mapping")),
        };
        r.map_err(|e| self.fail(e))
    }

    fn fail(&self, e: DeError) -> DeError {
        e.locate(&self.node.origin, &self.path)
    }

    fn expected(&self, what: &str) -> DeError {
        self.fail(<DeError as de::Error>::custom(format_args!("expected {what}, found {}", self.node.kind_name())))
    }
}

macro_rules! integer {
    ($name:ident, $visit:ident) => {
        fn $name<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
            let r = match &self.node.value {
                Value::Scalar(s) => match s.resolve() {
                    Resolved::Int(i) => v.visit_i64(i),
                    Resolved::UInt(u) => v.visit_u64(u),
                    _ => return Err(self.expected("an integer")),
                },
                _ => return Err(self.expected("an integer")),
            };
            r.map_err(|e| self.fail(e))
        }
    };
}

impl<'de, 'a> de::Deserializer<'de> for NodeDe<'a> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        let r = match &self.node.value {
            Value::Null => v.visit_unit(),
            Value::Scalar(s) => match s.resolve() {
                Resolved::Null => v.visit_unit(),
                Resolved::Bool(b) => v.visit_bool(b),
                Resolved::Int(i) => v.visit_i64(i),
                Resolved::UInt(u) => v.visit_u64(u),
                Resolved::Float(f) => v.visit_f64(f),
                Resolved::Str(t) => v.visit_str(t),
            },
            Value::Seq(items) => v.visit_seq(self.seq(items)),
            Value::Map(entries) => v.visit_map(self.map(entries, None)),
        };
        r.map_err(|e| self.fail(e))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Scalar(s) => match s.resolve() {
                Resolved::Bool(b) => v.visit_bool(b).map_err(|e| self.fail(e)),
                _ => Err(self.expected("true or false")),
            },
            _ => Err(self.expected("true or false")),
        }
    }

    integer!(deserialize_i8, visit_i64);
    integer!(deserialize_i16, visit_i64);
    integer!(deserialize_i32, visit_i64);
    integer!(deserialize_i64, visit_i64);
    integer!(deserialize_u8, visit_u64);
    integer!(deserialize_u16, visit_u64);
    integer!(deserialize_u32, visit_u64);
    integer!(deserialize_u64, visit_u64);

    fn deserialize_f32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(v)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        let r = match &self.node.value {
            Value::Scalar(s) => match s.resolve() {
                Resolved::Int(i) => v.visit_f64(i as f64),
                Resolved::UInt(u) => v.visit_f64(u as f64),
                Resolved::Float(f) => v.visit_f64(f),
                _ => return Err(self.expected("a number")),
            },
            _ => return Err(self.expected("a number")),
        };
        r.map_err(|e| self.fail(e))
    }

    fn deserialize_char<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Scalar(s) if s.resolve() != Resolved::Null => v.visit_str(&s.text).map_err(|e| self.fail(e)),
            _ => Err(self.expected("a string")),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        if self.node.is_null() {
            v.visit_none().map_err(|e| self.fail(e))
        } else {
            let origin = self.node.origin.clone();
            let path = self.path.clone();
            v.visit_some(self).map_err(|e| e.locate(&origin, &path))
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        if self.node.is_null() { v.visit_unit().map_err(|e| self.fail(e)) } else { Err(self.expected("null")) }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _name: &'static str, v: V) -> Result<V::Value, DeError> {
        self.deserialize_unit(v)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, v: V) -> Result<V::Value, DeError> {
        let origin = self.node.origin.clone();
        let path = self.path.clone();
        v.visit_newtype_struct(self).map_err(|e| e.locate(&origin, &path))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        let r = match &self.node.value {
            Value::Seq(items) => v.visit_seq(self.seq(items)),
            _ if self.node.is_null() => v.visit_seq(self.seq(&[])),
            _ => return Err(self.expected("a list")),
        };
        r.map_err(|e| self.fail(e))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, v: V) -> Result<V::Value, DeError> {
        self.deserialize_seq(v)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        v: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(v)
    }

    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.visit_entries(None, v)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        self.visit_entries(Some(fields), v)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        let r = match &self.node.value {
            Value::Scalar(s) => v.visit_enum(s.text.as_str().into_deserializer()),
            Value::Map(entries) if entries.len() == 1 => {
                let (key, value) = &entries[0];
                v.visit_enum(EnumAccess { key, value, path: &self.path, unknown: self.unknown })
            }
            _ => return Err(self.expected("one of the listed values")),
        };
        r.map_err(|e| self.fail(e))
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        v.visit_unit()
    }
}

struct SeqAccess<'a> {
    items: std::slice::Iter<'a, Node>,
    path: &'a str,
    index: usize,
    unknown: UnknownKeys<'a>,
}

impl<'de, 'a> de::SeqAccess<'de> for SeqAccess<'a> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, DeError> {
        let Some(node) = self.items.next() else { return Ok(None) };
        let path = join(self.path, &self.index.to_string());
        self.index += 1;
        seed.deserialize(NodeDe { node, path: path.clone(), unknown: self.unknown })
            .map(Some)
            .map_err(|e| e.locate(&node.origin, &path))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapAccess<'a> {
    entries: std::slice::Iter<'a, (Key, Node)>,
    path: &'a str,
    value: Option<(&'a Key, &'a Node)>,
    /// A struct's fields (aliases included), when unknown keys are to be recorded and skipped.
    fields: Option<&'static [&'static str]>,
    unknown: UnknownKeys<'a>,
}

impl<'de, 'a> de::MapAccess<'de> for MapAccess<'a> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, DeError> {
        let (key, value) = loop {
            let Some((key, value)) = self.entries.next() else { return Ok(None) };
            match (self.fields, self.unknown) {
                (Some(fields), Some(unknown)) if !fields.contains(&key.name.as_str()) => {
                    let e = <DeError as de::Error>::unknown_field(&key.name, fields);
                    unknown.borrow_mut().push(e.locate(&key.origin, &join(self.path, &key.name)).into_problem());
                }
                _ => break (key, value),
            }
        };
        self.value = Some((key, value));
        let path = join(self.path, &key.name);
        seed.deserialize(key.name.as_str().into_deserializer())
            .map(Some)
            .map_err(|e: DeError| e.locate(&key.origin, &path))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let (key, node) =
            self.value.take().ok_or_else(|| <DeError as de::Error>::custom("value requested before key"))?;
        let path = join(self.path, &key.name);
        seed.deserialize(NodeDe { node, path: path.clone(), unknown: self.unknown })
            .map_err(|e| e.locate(&node.origin, &path))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

struct EnumAccess<'a> {
    key: &'a Key,
    value: &'a Node,
    path: &'a str,
    unknown: UnknownKeys<'a>,
}

impl<'de, 'a> de::EnumAccess<'de> for EnumAccess<'a> {
    type Error = DeError;
    type Variant = VariantAccess<'a>;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, VariantAccess<'a>), DeError> {
        let path = join(self.path, &self.key.name);
        let variant = seed
            .deserialize(self.key.name.as_str().into_deserializer())
            .map_err(|e: DeError| e.locate(&self.key.origin, &path))?;
        Ok((variant, VariantAccess { node: self.value, path, unknown: self.unknown }))
    }
}

struct VariantAccess<'a> {
    node: &'a Node,
    path: String,
    unknown: UnknownKeys<'a>,
}

impl<'de, 'a> de::VariantAccess<'de> for VariantAccess<'a> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        seed.deserialize(NodeDe { node: self.node, path: self.path, unknown: self.unknown })
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, v: V) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_seq(NodeDe { node: self.node, path: self.path, unknown: self.unknown }, v)
    }

    fn struct_variant<V: Visitor<'de>>(self, _fields: &'static [&'static str], v: V) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_map(NodeDe { node: self.node, path: self.path, unknown: self.unknown }, v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml;
    use serde::Deserialize;
    use std::collections::BTreeMap;

    #[derive(Debug, Deserialize, Default, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Inner {
        queue_size: u32,
        enabled: bool,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "snake_case")]
    enum Level {
        Basic,
        Detailed,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        endpoint: String,
        #[serde(default)]
        queue: Inner,
        #[serde(default)]
        headers: BTreeMap<String, String>,
        level: Option<Level>,
        #[serde(default)]
        list: Vec<u16>,
    }

    fn parse(text: &str) -> Result<Outer, Problem> {
        let node = yaml::parse("c.yaml", text).unwrap();
        from_node(&node, "exporters::x")
    }

    #[test]
    fn reads_typed_values() {
        let o = parse("endpoint: a:1\nqueue: {queue_size: 5}\nheaders: {k: v}\nlevel: basic\nlist: [1, 2]\n").unwrap();
        assert_eq!(o.queue.queue_size, 5);
        assert_eq!(o.level, Some(Level::Basic));
        assert_eq!(o.list, vec![1, 2]);
    }

    #[test]
    fn unknown_nested_field_names_path_line_and_choices() {
        let p = parse("endpoint: a\nqueue:\n  queue_sze: 5\n").unwrap_err();
        assert_eq!(p.path, "exporters::x::queue::queue_sze");
        assert_eq!(p.origin.as_ref().map(|o| (o.line, o.column)), Some((3, 3)));
        assert_eq!(p.message, "unknown field `queue_sze`; valid fields: queue_size, enabled");
    }

    #[test]
    fn bad_values_are_located() {
        let p = parse("endpoint: a\nqueue: {queue_size: -1}\n").unwrap_err();
        assert_eq!(p.path, "exporters::x::queue::queue_size");
        assert!(p.message.contains("invalid value -1"), "{}", p.message);
        let p = parse("endpoint: a\nlevel: loud\n").unwrap_err();
        assert_eq!(p.path, "exporters::x::level");
        assert_eq!(p.message, "unknown value `loud`; valid values: basic, detailed");
        let p = parse("endpoint: a\nlist: [1, x]\n").unwrap_err();
        assert_eq!(p.path, "exporters::x::list::1");
        assert_eq!(p.origin.as_ref().map(|o| o.line), Some(2));
        let p = parse("endpoint: a\nqueue: {enabled: yes}\n").unwrap_err();
        assert_eq!(p.message, "expected true or false, found a string");
    }

    #[test]
    fn missing_field_names_the_field() {
        let p = parse("queue: {}\n").unwrap_err();
        assert_eq!(p.path, "exporters::x::endpoint");
        assert_eq!(p.origin.as_ref().map(|o| o.line), Some(1));
    }
}
