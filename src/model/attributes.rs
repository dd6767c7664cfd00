//! Attribute sets: small, sorted by key, hashable, so a set identifies a series.

use std::hash::{Hash, Hasher};

use smol_str::SmolStr;

/// An attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    /// A string (short strings are stored inline, without allocation).
    Str(SmolStr),
    /// A signed integer.
    Int(i64),
    /// A float.
    Double(f64),
    /// A boolean.
    Bool(bool),
}

impl Eq for AttrValue {}

impl Hash for AttrValue {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::mem::discriminant(self).hash(state);
        match self {
            AttrValue::Str(s) => s.hash(state),
            AttrValue::Int(i) => i.hash(state),
            AttrValue::Double(d) => d.to_bits().hash(state),
            AttrValue::Bool(b) => b.hash(state),
        }
    }
}

impl std::fmt::Display for AttrValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttrValue::Str(s) => f.write_str(s),
            AttrValue::Int(i) => write!(f, "{i}"),
            AttrValue::Double(d) => write!(f, "{d}"),
            AttrValue::Bool(b) => write!(f, "{b}"),
        }
    }
}

impl From<&str> for AttrValue {
    fn from(s: &str) -> Self {
        AttrValue::Str(SmolStr::new(s))
    }
}

impl From<SmolStr> for AttrValue {
    fn from(s: SmolStr) -> Self {
        AttrValue::Str(s)
    }
}

impl From<String> for AttrValue {
    fn from(s: String) -> Self {
        AttrValue::Str(SmolStr::from(s))
    }
}

impl From<i64> for AttrValue {
    fn from(i: i64) -> Self {
        AttrValue::Int(i)
    }
}

impl From<bool> for AttrValue {
    fn from(b: bool) -> Self {
        AttrValue::Bool(b)
    }
}

/// One attribute.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyValue {
    /// The attribute key, e.g. `network.io.direction`.
    pub key: SmolStr,
    /// The value.
    pub value: AttrValue,
}

/// A set of attributes kept sorted by key with unique keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Attributes(Vec<KeyValue>);

impl Attributes {
    /// An empty set.
    pub const fn new() -> Self {
        Attributes(Vec::new())
    }

    /// Builds a set from pairs; later duplicates replace earlier ones.
    pub fn from_pairs<K: Into<SmolStr>, V: Into<AttrValue>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        let mut a = Attributes::new();
        for (k, v) in pairs {
            a.insert(k, v);
        }
        a
    }

    /// Inserts or replaces an attribute, keeping the order.
    pub fn insert(&mut self, key: impl Into<SmolStr>, value: impl Into<AttrValue>) {
        let key = key.into();
        let value = value.into();
        match self.0.binary_search_by(|kv| kv.key.as_str().cmp(key.as_str())) {
            Ok(i) => self.0[i].value = value,
            Err(i) => self.0.insert(i, KeyValue { key, value }),
        }
    }

    /// Adds every pair (replacing keys already present; among the new pairs a later one wins),
    /// growing the set at most once and sorting once: how a processor adds many attributes to a
    /// record without one insertion (and shift) per attribute.
    pub fn extend(&mut self, pairs: impl IntoIterator<Item = KeyValue>) {
        let old = self.0.len();
        self.0.extend(pairs);
        if self.0.len() == old {
            return;
        }
        // Pairs that arrive in order (a processor that renders them sorted) need no sort.
        if self.0.is_sorted_by(|a, b| a.key < b.key) {
            return;
        }
        // Stable: for equal keys the later pair stays after the earlier one.
        self.0.sort_by(|a, b| a.key.cmp(&b.key));
        // `dedup_by` passes (later, kept earlier); move the later value into the kept slot.
        self.0.dedup_by(|later, earlier| {
            if later.key == earlier.key {
                std::mem::swap(later, earlier);
                true
            } else {
                false
            }
        });
    }

    /// Removes every attribute, keeping the allocation (for sets rebuilt per record).
    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// Makes this set a copy of `other`, reusing this set's allocation.
    pub fn copy_from(&mut self, other: &Attributes) {
        self.0.clone_from(&other.0);
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&AttrValue> {
        self.0.binary_search_by(|kv| kv.key.as_str().cmp(key)).ok().map(|i| &self.0[i].value)
    }

    /// The string value of `key`, when it is a string.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        match self.get(key)? {
            AttrValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<AttrValue> {
        let i = self.0.binary_search_by(|kv| kv.key.as_str().cmp(key)).ok()?;
        Some(self.0.remove(i).value)
    }

    /// Iterates in key order.
    pub fn iter(&self) -> std::slice::Iter<'_, KeyValue> {
        self.0.iter()
    }

    /// Number of attributes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a> IntoIterator for &'a Attributes {
    type Item = &'a KeyValue;
    type IntoIter = std::slice::Iter<'a, KeyValue>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_and_unique() {
        let a = Attributes::from_pairs([("b", "2"), ("a", "1"), ("b", "3")]);
        let keys: Vec<_> = a.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(keys, ["a", "b"]);
        assert_eq!(a.get_str("b"), Some("3"));
        assert_eq!(a, Attributes::from_pairs([("a", "1"), ("b", "3")]));
    }

    #[test]
    fn extend_replaces_and_keeps_the_order() {
        let mut a = Attributes::from_pairs([("b", "old"), ("d", "4")]);
        let kv = |k: &str, v: &str| KeyValue { key: k.into(), value: v.into() };
        a.extend([kv("c", "3"), kv("b", "new"), kv("a", "1"), kv("c", "last")]);
        assert_eq!(a, Attributes::from_pairs([("a", "1"), ("b", "new"), ("c", "last"), ("d", "4")]));
        a.extend([]);
        assert_eq!(a.len(), 4);
    }
}
