//! The fake API server's storage, like etcd behind the watch cache: objects per resource, one
//! global resourceVersion, the history of changes (until compacted) for watches to resume from,
//! label and field selectors, and the open watches that each change is sent to.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedSender;

/// A resource the server serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource {
    /// API group ("" for core).
    pub group: &'static str,
    /// Version.
    pub version: &'static str,
    /// Plural (URL segment).
    pub plural: &'static str,
    /// Kind.
    pub kind: &'static str,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
}

impl Resource {
    /// `apiVersion` of its objects.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.to_string() } else { format!("{}/{}", self.group, self.version) }
    }
}

/// Every resource served.
pub const RESOURCES: [Resource; 8] = [
    Resource { group: "", version: "v1", plural: "pods", kind: "Pod", namespaced: true },
    Resource { group: "", version: "v1", plural: "services", kind: "Service", namespaced: true },
    Resource { group: "", version: "v1", plural: "nodes", kind: "Node", namespaced: false },
    Resource { group: "", version: "v1", plural: "namespaces", kind: "Namespace", namespaced: false },
    Resource { group: "apps", version: "v1", plural: "replicasets", kind: "ReplicaSet", namespaced: true },
    Resource { group: "batch", version: "v1", plural: "jobs", kind: "Job", namespaced: true },
    Resource {
        group: "discovery.k8s.io",
        version: "v1",
        plural: "endpointslices",
        kind: "EndpointSlice",
        namespaced: true,
    },
    Resource {
        group: "retina.sh",
        version: "v1alpha1",
        plural: "metricsconfigurations",
        kind: "MetricsConfiguration",
        namespaced: false,
    },
];

/// One term of a selector.
#[derive(Debug, Clone, PartialEq)]
enum Term {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A label or field selector (all terms must hold).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selector(Vec<Term>);

impl Selector {
    /// Parses `a=b,c!=d,e in (f,g),!h,i` (the empty string selects everything).
    pub fn parse(text: &str) -> Result<Selector, String> {
        let mut terms = Vec::new();
        let mut depth = 0;
        let mut start = 0;
        let mut parts = Vec::new();
        for (i, c) in text.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(&text[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&text[start..]);
        for part in parts.into_iter().map(str::trim).filter(|p| !p.is_empty()) {
            let set = |rest: &str| -> Vec<String> {
                rest.trim()
                    .trim_start_matches('(')
                    .trim_end_matches(')')
                    .split(',')
                    .map(|v| v.trim().to_string())
                    .collect()
            };
            let term = if let Some((k, v)) = part.split_once("!=") {
                Term::NotEquals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once("==") {
                Term::Equals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once('=') {
                Term::Equals(k.trim().into(), v.trim().into())
            } else if let Some((k, rest)) = part.split_once(" notin ") {
                Term::NotIn(k.trim().into(), set(rest))
            } else if let Some((k, rest)) = part.split_once(" in ") {
                Term::In(k.trim().into(), set(rest))
            } else if let Some(k) = part.strip_prefix('!') {
                Term::DoesNotExist(k.trim().into())
            } else if part.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c)) {
                Term::Exists(part.into())
            } else {
                return Err(format!("unable to parse requirement: {part}"));
            };
            terms.push(term);
        }
        Ok(Selector(terms))
    }

    fn holds(&self, value_of: impl Fn(&str) -> Option<String>) -> bool {
        self.0.iter().all(|t| match t {
            Term::Equals(k, v) => value_of(k).as_deref() == Some(v.as_str()),
            Term::NotEquals(k, v) => value_of(k).as_deref() != Some(v.as_str()),
            Term::In(k, vs) => value_of(k).is_some_and(|x| vs.contains(&x)),
            Term::NotIn(k, vs) => value_of(k).is_none_or(|x| !vs.contains(&x)),
            Term::Exists(k) => value_of(k).is_some(),
            Term::DoesNotExist(k) => value_of(k).is_none(),
        })
    }

    /// True when the object's labels satisfy the selector.
    pub fn labels_match(&self, object: &Value) -> bool {
        self.holds(|k| object["metadata"]["labels"][k].as_str().map(str::to_string))
    }

    /// True when the object's fields (`spec.nodeName`, `metadata.name` ...) satisfy the selector;
    /// a field the object lacks compares as the empty string, as the API server does.
    pub fn fields_match(&self, object: &Value) -> bool {
        self.holds(|path| {
            let mut v = object;
            for part in path.split('.') {
                v = &v[part];
            }
            Some(match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            })
        })
    }
}

/// Which objects of a resource a request is about.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// The namespace in the path.
    pub namespace: Option<String>,
    /// `labelSelector`.
    pub labels: Selector,
    /// `fieldSelector`.
    pub fields: Selector,
}

impl Query {
    /// True when `object` is in the query.
    pub fn matches(&self, object: &Value) -> bool {
        self.namespace.as_deref().is_none_or(|ns| object["metadata"]["namespace"].as_str() == Some(ns))
            && self.labels.labels_match(object)
            && self.fields.fields_match(object)
    }
}

/// One change of one object, as the history keeps it.
#[derive(Debug, Clone)]
struct Change {
    rv: u64,
    old: Option<Value>,
    new: Option<Value>,
}

/// An open watch.
pub struct Watch {
    /// The resource.
    pub resource: Resource,
    /// Which objects.
    pub query: Query,
    /// Send `PartialObjectMetadata` instead of the objects.
    pub metadata_only: bool,
    /// Send bookmarks.
    pub bookmarks: bool,
    /// When the server ends it (`timeoutSeconds`).
    pub deadline: Instant,
    /// When it last got a bookmark.
    pub last_bookmark: Instant,
    /// Where its event lines go.
    pub tx: UnboundedSender<Bytes>,
}

/// All objects, the history and the open watches.
pub struct Store {
    /// The latest resourceVersion.
    pub rv: u64,
    compacted: u64,
    objects: HashMap<&'static str, BTreeMap<(String, String), Value>>,
    history: HashMap<&'static str, Vec<Change>>,
    /// Open watches.
    pub watches: Vec<Watch>,
    uids: u64,
}

impl Default for Store {
    fn default() -> Self {
        Store { rv: 1, compacted: 0, objects: HashMap::new(), history: HashMap::new(), watches: Vec::new(), uids: 0 }
    }
}

/// `PartialObjectMetadata` of an object.
pub fn metadata_only(object: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": object["metadata"]})
}

/// One line of a watch stream.
pub fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).expect("json");
    line.push(b'\n');
    Bytes::from(line)
}

/// The ERROR event (and list status) for an expired resourceVersion.
pub fn gone(message: String) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
           "reason": "Expired", "code": 410})
}

impl Store {
    /// Stores `object` (new or changed) at a new resourceVersion and tells the watches.
    pub fn upsert(&mut self, resource: Resource, mut object: Value) {
        self.rv += 1;
        let key = key_of(&object);
        let objects = self.objects.entry(resource.plural).or_default();
        let old = objects.get(&key).cloned();
        let meta = &mut object["metadata"];
        meta["resourceVersion"] = self.rv.to_string().into();
        match &old {
            Some(o) => meta["uid"] = o["metadata"]["uid"].clone(),
            None if meta["uid"].is_null() => {
                self.uids += 1;
                meta["uid"] = format!("{:08x}-7a1e-4b5c-9d2e-{:012x}", self.uids, self.uids).into();
            }
            None => {}
        }
        objects.insert(key, object.clone());
        self.record(resource, Change { rv: self.rv, old, new: Some(object) });
    }

    /// Deletes an object (its last state goes out with a new resourceVersion).
    pub fn delete(&mut self, resource: Resource, namespace: &str, name: &str) -> bool {
        let key = (namespace.to_string(), name.to_string());
        let Some(mut old) = self.objects.get_mut(resource.plural).and_then(|o| o.remove(&key)) else { return false };
        self.rv += 1;
        old["metadata"]["resourceVersion"] = self.rv.to_string().into();
        self.record(resource, Change { rv: self.rv, old: Some(old), new: None });
        true
    }

    /// Forgets the history: a watch from an older resourceVersion gets 410 Gone.
    pub fn compact(&mut self) {
        self.compacted = self.rv;
        self.history.clear();
    }

    /// The object `namespace`/`name` of `resource`.
    pub fn get(&self, resource: Resource, namespace: &str, name: &str) -> Option<Value> {
        self.objects.get(resource.plural)?.get(&(namespace.to_string(), name.to_string())).cloned()
    }

    fn record(&mut self, resource: Resource, change: Change) {
        self.watches.retain(|w| {
            if w.resource != resource {
                return true;
            }
            match event_for(&change, &w.query) {
                Some((kind, object)) => {
                    let object = if w.metadata_only { metadata_only(&object) } else { object };
                    w.tx.send(event_line(kind, &object)).is_ok()
                }
                None => !w.tx.is_closed(),
            }
        });
        self.history.entry(resource.plural).or_default().push(change);
    }

    /// The objects of a list (sorted by namespace and name) after `after`, at most `limit`, and
    /// whether more follow.
    pub fn list(
        &self,
        resource: Resource,
        query: &Query,
        after: Option<&(String, String)>,
        limit: usize,
    ) -> (Vec<Value>, Option<(String, String)>) {
        let Some(objects) = self.objects.get(resource.plural) else { return (Vec::new(), None) };
        let mut items = Vec::new();
        let range = match after {
            Some(k) => {
                objects.range::<(String, String), _>((std::ops::Bound::Excluded(k.clone()), std::ops::Bound::Unbounded))
            }
            None => objects.range::<(String, String), _>(..),
        };
        for (key, object) in range {
            if !query.matches(object) {
                continue;
            }
            if items.len() == limit {
                let last = last_key(&items).unwrap_or_else(|| key.clone());
                return (items, Some(last));
            }
            items.push(object.clone());
        }
        (items, None)
    }

    /// The events a watch from `rv` must first be sent (`None`: `rv` was compacted away).
    pub fn since(&self, resource: Resource, query: &Query, rv: u64) -> Option<Vec<(&'static str, Value)>> {
        if rv < self.compacted {
            return None;
        }
        let history = self.history.get(resource.plural).map(Vec::as_slice).unwrap_or_default();
        Some(history.iter().filter(|c| c.rv > rv).filter_map(|c| event_for(c, query)).collect())
    }

    /// The oldest resourceVersion a watch may still start from.
    pub fn compacted(&self) -> u64 {
        self.compacted
    }

    /// Every object of `resource` in `query` as ADDED events (a watch from resourceVersion 0).
    pub fn current(&self, resource: Resource, query: &Query) -> Vec<(&'static str, Value)> {
        self.list(resource, query, None, usize::MAX).0.into_iter().map(|o| ("ADDED", o)).collect()
    }
}

fn key_of(object: &Value) -> (String, String) {
    let meta = &object["metadata"];
    (meta["namespace"].as_str().unwrap_or_default().to_string(), meta["name"].as_str().unwrap_or_default().to_string())
}

fn last_key(items: &[Value]) -> Option<(String, String)> {
    items.last().map(key_of)
}

/// What a watch with `query` sees of `change`: an object entering the selection is ADDED, one
/// leaving it DELETED (its last state), as the API server's watch cache does.
fn event_for(change: &Change, query: &Query) -> Option<(&'static str, Value)> {
    let was = change.old.as_ref().is_some_and(|o| query.matches(o));
    let is = change.new.as_ref().is_some_and(|n| query.matches(n));
    match (was, is, &change.new) {
        (false, true, Some(new)) => Some(("ADDED", new.clone())),
        (true, true, Some(new)) => Some(("MODIFIED", new.clone())),
        (true, false, _) => {
            let mut old = change.old.clone()?;
            old["metadata"]["resourceVersion"] = change.rv.to_string().into();
            Some(("DELETED", old))
        }
        _ => None,
    }
}
