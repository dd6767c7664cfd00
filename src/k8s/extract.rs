//! Labels and annotations as attributes: the extraction rules of each `k8sattributes` instance
//! (a *view*), the attribute names they make (interned once, in every spelling), and the values
//! each object yields, computed when the object arrives so labelling a record matches no regex
//! and builds no name.

use std::collections::HashMap;

use regex::Regex;
use smol_str::SmolStr;

use super::objects::Meta;
use crate::model::semconv::{End, k8s};

/// Which object a label or annotation is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// The pod itself.
    Pod,
    /// The pod's (or service's) namespace.
    Namespace,
    /// The pod's node (or the node an address names).
    Node,
}

/// Labels or annotations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// `metadata.labels`.
    Label,
    /// `metadata.annotations`.
    Annotation,
}

/// How a rule picks keys.
#[derive(Debug, Clone)]
pub enum KeyMatch {
    /// One key.
    Exact(SmolStr),
    /// Every key the (anchored) expression matches; `pattern` is what the user wrote.
    Regex {
        /// The expression as written.
        pattern: String,
        /// Compiled as `^(?:pattern)$`.
        regex: Regex,
    },
}

impl KeyMatch {
    /// An anchored expression, as otelcol anchors `key_regex`.
    pub fn regex(pattern: &str) -> Result<KeyMatch, regex::Error> {
        let regex = Regex::new(&format!("^(?:{pattern})$"))?;
        Ok(KeyMatch::Regex { pattern: pattern.to_string(), regex })
    }

    fn text(&self) -> &str {
        match self {
            KeyMatch::Exact(k) => k,
            KeyMatch::Regex { pattern, .. } => pattern,
        }
    }
}

/// One `extract.labels` / `extract.annotations` entry.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Where the value comes from.
    pub source: Source,
    /// Label or annotation.
    pub field: Field,
    /// Which keys.
    pub key: KeyMatch,
    /// The attribute name; `$1` ... expand a regex's captures. `None`: `k8s.pod.label.<key>` ...
    pub tag_name: Option<String>,
}

impl Rule {
    fn same_as(&self, other: &Rule) -> bool {
        self.source == other.source
            && self.field == other.field
            && self.key.text() == other.key.text()
            && matches!(
                (&self.key, &other.key),
                (KeyMatch::Exact(_), KeyMatch::Exact(_)) | (KeyMatch::Regex { .. }, KeyMatch::Regex { .. })
            )
            && self.tag_name == other.tag_name
    }

    fn matches(&self, source: Source, field: Field, key: &str) -> bool {
        self.source == source
            && self.field == field
            && match &self.key {
                KeyMatch::Exact(k) => k == key,
                KeyMatch::Regex { regex, .. } => regex.is_match(key),
            }
    }

    fn default_prefix(&self) -> &'static str {
        match (self.source, self.field) {
            (Source::Pod, Field::Label) => k8s::POD_LABEL_PREFIX,
            (Source::Pod, Field::Annotation) => k8s::POD_ANNOTATION_PREFIX,
            (Source::Namespace, Field::Label) => k8s::NAMESPACE_LABEL_PREFIX,
            (Source::Namespace, Field::Annotation) => k8s::NAMESPACE_ANNOTATION_PREFIX,
            (Source::Node, Field::Label) => k8s::NODE_LABEL_PREFIX,
            (Source::Node, Field::Annotation) => k8s::NODE_ANNOTATION_PREFIX,
        }
    }

    /// The attribute name for `key` (matched by this rule).
    fn tag(&self, key: &str) -> String {
        match (&self.tag_name, &self.key) {
            (Some(tag), KeyMatch::Regex { regex, .. }) => match regex.captures(key) {
                Some(caps) => {
                    let mut out = String::new();
                    caps.expand(tag, &mut out);
                    out
                }
                None => tag.clone(),
            },
            (Some(tag), KeyMatch::Exact(_)) => tag.clone(),
            (None, _) => format!("{}{key}", self.default_prefix()),
        }
    }
}

/// An attribute name in its three spellings, built once.
#[derive(Debug, Clone)]
pub struct Tag {
    plain: SmolStr,
    source: SmolStr,
    destination: SmolStr,
}

impl Tag {
    fn new(plain: String) -> Tag {
        Tag {
            source: format!("{}{plain}", End::Source.prefix()).into(),
            destination: format!("{}{plain}", End::Destination.prefix()).into(),
            plain: plain.into(),
        }
    }

    /// The name at `end`.
    pub fn at(&self, end: End) -> &SmolStr {
        match end {
            End::Plain => &self.plain,
            End::Source => &self.source,
            End::Destination => &self.destination,
        }
    }
}

/// Which view an object's extracted values belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViewId(pub(crate) usize);

/// What an object yields for one view: (tag index, value) pairs.
pub type Values = Box<[(u32, SmolStr)]>;

/// What an object yields for every view, indexed by [`ViewId`]; a view registered after the
/// object arrived has no entry (until the object is listed again).
pub type Extracted = Box<[Values]>;

/// One processor's rules and the names they made.
#[derive(Debug)]
struct View {
    rules: Vec<Rule>,
    tags: Vec<Tag>,
    ids: HashMap<SmolStr, u32>,
}

/// Every registered view.
#[derive(Debug, Default)]
pub struct Views {
    views: Vec<View>,
}

impl Views {
    /// Registers `rules` (an instance with the same rules as an earlier one shares its view).
    /// Returns the view and whether its rules are new, so objects already stored were pruned
    /// without them and must be listed again.
    pub fn register(&mut self, rules: Vec<Rule>) -> (ViewId, bool) {
        let same = |v: &View| v.rules.len() == rules.len() && v.rules.iter().zip(&rules).all(|(a, b)| a.same_as(b));
        if let Some(i) = self.views.iter().position(same) {
            return (ViewId(i), false);
        }
        let new_rules = rules.iter().any(|r| !self.views.iter().flat_map(|v| &v.rules).any(|o| o.same_as(r)));
        self.views.push(View { rules, tags: Vec::new(), ids: HashMap::new() });
        (ViewId(self.views.len() - 1), new_rules)
    }

    /// True when some view wants `key` of `field` of a `source` object (everything else is
    /// dropped when an object arrives).
    pub fn wants(&self, source: Source, field: Field, key: &str) -> bool {
        self.views.iter().flat_map(|v| &v.rules).any(|r| r.matches(source, field, key))
    }

    /// Drops the labels and annotations no view wants.
    pub fn prune(&self, source: Source, meta: &mut Meta) {
        meta.labels.retain(|(k, _)| self.wants(source, Field::Label, k));
        meta.annotations.retain(|(k, _)| self.wants(source, Field::Annotation, k));
        meta.labels.shrink_to_fit();
        meta.annotations.shrink_to_fit();
    }

    /// The values a `source` object with (pruned) `meta` yields for every view.
    pub fn extract(&mut self, source: Source, meta: &Meta) -> Extracted {
        self.views.iter_mut().map(|v| v.extract(source, meta)).collect()
    }

    /// The name of tag `id` of `view`.
    pub fn tag(&self, view: ViewId, id: u32) -> Option<&Tag> {
        self.views.get(view.0)?.tags.get(id as usize)
    }
}

impl View {
    fn extract(&mut self, source: Source, meta: &Meta) -> Values {
        let mut out: Vec<(u32, SmolStr)> = Vec::new();
        for i in 0..self.rules.len() {
            let rule = &self.rules[i];
            if rule.source != source {
                continue;
            }
            let pairs = match rule.field {
                Field::Label => &meta.labels,
                Field::Annotation => &meta.annotations,
            };
            let found: Vec<(String, SmolStr)> = match &rule.key {
                KeyMatch::Exact(key) => match pairs.binary_search_by(|(k, _)| k.as_str().cmp(key)) {
                    Ok(at) => vec![(rule.tag(key), pairs[at].1.clone())],
                    Err(_) => Vec::new(),
                },
                KeyMatch::Regex { regex, .. } => {
                    pairs.iter().filter(|(k, _)| regex.is_match(k)).map(|(k, v)| (rule.tag(k), v.clone())).collect()
                }
            };
            for (tag, value) in found {
                let id = self.intern(tag);
                out.retain(|(t, _)| *t != id);
                out.push((id, value));
            }
        }
        out.into_boxed_slice()
    }

    fn intern(&mut self, plain: String) -> u32 {
        if let Some(id) = self.ids.get(plain.as_str()) {
            return *id;
        }
        let id = self.tags.len() as u32;
        let tag = Tag::new(plain);
        self.ids.insert(tag.plain.clone(), id);
        self.tags.push(tag);
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(labels: &[(&str, &str)]) -> Meta {
        Meta { labels: labels.iter().map(|(k, v)| (SmolStr::new(k), SmolStr::new(v))).collect(), ..Meta::default() }
    }

    #[test]
    fn exact_and_regex_rules_name_their_attributes() {
        let mut views = Views::default();
        let rules = vec![
            Rule { source: Source::Pod, field: Field::Label, key: KeyMatch::Exact("app".into()), tag_name: None },
            Rule {
                source: Source::Pod,
                field: Field::Label,
                key: KeyMatch::regex("team\\.example/(.*)").unwrap(),
                tag_name: Some("team.$1".into()),
            },
        ];
        let (view, new) = views.register(rules.clone());
        assert!(new);
        assert_eq!(views.register(rules), (view, false), "same rules, same view");
        let mut m = meta(&[("app", "cart"), ("pod-template-hash", "x"), ("team.example/owner", "ops")]);
        views.prune(Source::Pod, &mut m);
        assert_eq!(m.labels.len(), 2, "the hash label is not wanted");
        let values = views.extract(Source::Pod, &m);
        let named: Vec<(String, String)> = values[0]
            .iter()
            .map(|(id, v)| (views.tag(view, *id).unwrap().at(End::Source).to_string(), v.to_string()))
            .collect();
        assert_eq!(
            named,
            [("source.k8s.pod.label.app".into(), "cart".into()), ("source.team.owner".into(), "ops".into())]
        );
        assert!(views.extract(Source::Namespace, &m)[0].is_empty(), "pod rules do not read namespaces");
    }
}
