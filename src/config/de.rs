//! A serde `Deserializer` over [`Node`] trees: component configs deserialize straight from the
//! positioned tree, so every error knows its file, line, column and full key path.

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

/// Deserializes `T` from `node`, whose full key path is `path`.
pub fn from_node<T: de::DeserializeOwned>(node: &Node, path: &str) -> Result<T, Problem> {
    T::deserialize(NodeDe { node, path: path.to_string() }).map_err(|e| e.locate(&node.origin, path).into_problem())
}

/// Deserializer for one node.
pub struct NodeDe<'a> {
    node: &'a Node,
    path: String,
}

impl<'a> NodeDe<'a> {
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
            Value::Seq(items) => v.visit_seq(SeqAccess { items: items.iter(), path: &self.path, index: 0 }),
            Value::Map(entries) => v.visit_map(MapAccess { entries: entries.iter(), path: &self.path, value: None }),
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
            Value::Seq(items) => v.visit_seq(SeqAccess { items: items.iter(), path: &self.path, index: 0 }),
            _ if self.node.is_null() => v.visit_seq(SeqAccess { items: [].iter(), path: &self.path, index: 0 }),
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
        let r = match &self.node.value {
            Value::Map(entries) => v.visit_map(MapAccess { entries: entries.iter(), path: &self.path, value: None }),
            _ if self.node.is_null() => v.visit_map(MapAccess { entries: [].iter(), path: &self.path, value: None }),
            _ => return Err(self.expected("a mapping")),
        };
        r.map_err(|e| self.fail(e))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_map(v)
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
                v.visit_enum(EnumAccess { key, value, path: &self.path })
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
}

impl<'de, 'a> de::SeqAccess<'de> for SeqAccess<'a> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, DeError> {
        let Some(node) = self.items.next() else { return Ok(None) };
        let path = join(self.path, &self.index.to_string());
        self.index += 1;
        seed.deserialize(NodeDe { node, path: path.clone() }).map(Some).map_err(|e| e.locate(&node.origin, &path))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapAccess<'a> {
    entries: std::slice::Iter<'a, (Key, Node)>,
    path: &'a str,
    value: Option<(&'a Key, &'a Node)>,
}

impl<'de, 'a> de::MapAccess<'de> for MapAccess<'a> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, DeError> {
        let Some((key, value)) = self.entries.next() else { return Ok(None) };
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
        seed.deserialize(NodeDe { node, path: path.clone() }).map_err(|e| e.locate(&node.origin, &path))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

struct EnumAccess<'a> {
    key: &'a Key,
    value: &'a Node,
    path: &'a str,
}

impl<'de, 'a> de::EnumAccess<'de> for EnumAccess<'a> {
    type Error = DeError;
    type Variant = VariantAccess<'a>;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, VariantAccess<'a>), DeError> {
        let path = join(self.path, &self.key.name);
        let variant = seed
            .deserialize(self.key.name.as_str().into_deserializer())
            .map_err(|e: DeError| e.locate(&self.key.origin, &path))?;
        Ok((variant, VariantAccess { node: self.value, path }))
    }
}

struct VariantAccess<'a> {
    node: &'a Node,
    path: String,
}

impl<'de, 'a> de::VariantAccess<'de> for VariantAccess<'a> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        seed.deserialize(NodeDe { node: self.node, path: self.path })
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, v: V) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_seq(NodeDe { node: self.node, path: self.path }, v)
    }

    fn struct_variant<V: Visitor<'de>>(self, _fields: &'static [&'static str], v: V) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_map(NodeDe { node: self.node, path: self.path }, v)
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
