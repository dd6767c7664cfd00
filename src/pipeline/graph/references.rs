//! The pipelines' lists resolved: which component every reference names (a receiver or a
//! connector in `receivers:`, an exporter or a connector in `exporters:`), where each component is
//! used and with which signal, and the checks that need only names: unknown and duplicate
//! references, empty lists, ambiguous ids, one-sided connectors and cycles through connectors.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::service::PipelineConfig;
use crate::config::{Entry, Node, Origin, PipelineId, Problem, Problems};
use crate::model::Signal;
use crate::telemetry::ComponentKind;

/// Which list of a pipeline a reference is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum List {
    /// `receivers:` (receivers and connectors).
    Receivers,
    /// `processors:`.
    Processors,
    /// `exporters:` (exporters and connectors).
    Exporters,
}

impl List {
    const ALL: [List; 3] = [List::Receivers, List::Processors, List::Exporters];

    /// The key in the pipeline (`receivers`).
    pub fn as_str(self) -> &'static str {
        match self {
            List::Receivers => "receivers",
            List::Processors => "processors",
            List::Exporters => "exporters",
        }
    }

    /// The kinds a reference in this list may name, the first one preferred.
    fn kinds(self) -> &'static [ComponentKind] {
        match self {
            List::Receivers => &[ComponentKind::Receiver, ComponentKind::Connector],
            List::Processors => &[ComponentKind::Processor],
            List::Exporters => &[ComponentKind::Exporter, ComponentKind::Connector],
        }
    }

    fn items(self, cfg: &PipelineConfig) -> &[String] {
        match self {
            List::Receivers => &cfg.receivers,
            List::Processors => &cfg.processors,
            List::Exporters => &cfg.exporters,
        }
    }
}

/// One mention of a component in a pipeline list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Use {
    /// Index of the pipeline in [`Layout::pipelines`].
    pub pipeline: usize,
    /// The pipeline's signal.
    pub signal: Signal,
    /// The list it is written in.
    pub list: List,
    /// Its position in that list.
    pub position: usize,
}

/// A pipeline as configured, with its parsed id.
pub(super) struct PipelineRefs {
    /// The parsed id.
    pub id: PipelineId,
    /// The key as written (`metrics/backup`).
    pub name: String,
    /// The lists.
    pub cfg: PipelineConfig,
    /// Per list, the kind each reference resolved to (`None`: unknown, reported).
    pub resolved: [Vec<Option<ComponentKind>>; 3],
}

impl PipelineRefs {
    /// The references of `list` that resolved to `kind`, in order.
    pub fn refs_of(&self, list: List, kind: ComponentKind) -> impl Iterator<Item = &str> {
        list.items(&self.cfg)
            .iter()
            .zip(&self.resolved[list as usize])
            .filter(move |(_, k)| **k == Some(kind))
            .map(|(r, _)| r.as_str())
    }
}

/// Locates problems inside `service:`.
pub(super) struct Locator<'a> {
    /// The `service:` node, if there is one.
    pub service: Option<&'a Node>,
}

impl Locator<'_> {
    /// Where `path` (relative to `service:`) is written.
    pub fn origin(&self, path: &str) -> Option<Origin> {
        self.service.map(|n| n.locate(path).origin.clone())
    }

    /// A problem about the reference `use_` of `pipeline`.
    pub fn at_use(&self, pipeline: &PipelineRefs, use_: &Use, message: String) -> Problem {
        let base = format!("pipelines::{}::{}", pipeline.name, use_.list.as_str());
        Problem::new(self.origin(&format!("{base}::{}", use_.position)), format!("service::{base}"), message)
    }
}

/// Every pipeline and where each component is used.
pub(super) struct Layout {
    /// The pipelines with valid ids, in key order.
    pub pipelines: Vec<PipelineRefs>,
    uses: BTreeMap<(ComponentKind, String), Vec<Use>>,
}

impl Layout {
    /// Every use of component `id` of `kind`.
    pub fn uses(&self, kind: ComponentKind, id: &str) -> &[Use] {
        self.uses.get(&(kind, id.to_string())).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// The ids configured per kind.
pub(super) struct Defined<'a> {
    entries: BTreeMap<ComponentKind, Vec<&'a Entry>>,
}

impl<'a> Defined<'a> {
    /// Indexes the entries of each section.
    pub fn new(sections: [(ComponentKind, &'a [Entry]); 4]) -> Self {
        Defined { entries: sections.into_iter().map(|(k, e)| (k, e.iter().collect())).collect() }
    }

    fn has(&self, kind: ComponentKind, id: &str) -> bool {
        self.entries.get(&kind).is_some_and(|e| e.iter().any(|e| e.id.to_string() == id))
    }

    fn ids(&self, kinds: &[ComponentKind]) -> Vec<String> {
        let mut ids: Vec<String> =
            kinds.iter().flat_map(|k| self.entries.get(k).into_iter().flatten()).map(|e| e.id.to_string()).collect();
        ids.sort_unstable();
        ids
    }

    /// Connectors whose id is also a receiver's or an exporter's: a pipeline list could not tell
    /// which one it means.
    pub fn check_ambiguous(&self, problems: &mut Problems) {
        for entry in self.entries.get(&ComponentKind::Connector).into_iter().flatten() {
            let id = entry.id.to_string();
            for other in [ComponentKind::Receiver, ComponentKind::Exporter] {
                if self.has(other, &id) {
                    problems.push(Problem::new(
                        Some(entry.origin.clone()),
                        format!("connectors::{id}"),
                        format!(
                            "ambiguous id: `{id}` is configured both under `connectors:` and under `{}:`; \
                             rename one (e.g. `{}/{}`)",
                            other.section(),
                            entry.id.kind_type,
                            entry.id.name.as_deref().unwrap_or("other"),
                        ),
                    ));
                }
            }
        }
    }
}

/// Parses the pipeline ids and resolves every reference, reporting what is unknown, duplicated
/// or missing.
pub(super) fn resolve(
    pipelines: &BTreeMap<String, PipelineConfig>,
    defined: &Defined<'_>,
    locator: &Locator<'_>,
    problems: &mut Problems,
) -> Layout {
    let mut layout = Layout { pipelines: Vec::new(), uses: BTreeMap::new() };
    for (name, cfg) in pipelines {
        let id = match PipelineId::parse(name) {
            Ok(id) => id,
            Err(msg) => {
                problems.push(Problem::new(
                    locator.origin(&format!("pipelines::{name}")),
                    format!("service::pipelines::{name}"),
                    msg,
                ));
                continue;
            }
        };
        let index = layout.pipelines.len();
        let mut resolved: [Vec<Option<ComponentKind>>; 3] = Default::default();
        for list in List::ALL {
            let base = format!("pipelines::{name}::{}", list.as_str());
            let items = list.items(cfg);
            if items.is_empty() && list != List::Processors {
                let kind = list.kinds()[0].as_str();
                problems.push(Problem::new(
                    locator.origin(&format!("pipelines::{name}")),
                    format!("service::{base}"),
                    format!("a pipeline needs at least one {kind}"),
                ));
            }
            let mut seen = BTreeSet::new();
            for (position, reference) in items.iter().enumerate() {
                let kind = list.kinds().iter().rev().copied().find(|k| defined.has(*k, reference));
                resolved[list as usize].push(kind);
                let Some(kind) = kind else {
                    problems.push(Problem::new(
                        locator.origin(&format!("{base}::{position}")),
                        format!("service::{base}"),
                        unknown_reference(list, reference, defined),
                    ));
                    continue;
                };
                if !seen.insert(reference.as_str()) {
                    problems.push(Problem::new(
                        locator.origin(&format!("{base}::{position}")),
                        format!("service::{base}"),
                        format!("`{reference}` is listed twice in this pipeline; list it once"),
                    ));
                    continue;
                }
                let use_ = Use { pipeline: index, signal: id.signal, list, position };
                layout.uses.entry((kind, reference.clone())).or_default().push(use_);
            }
        }
        layout.pipelines.push(PipelineRefs { id, name: name.clone(), cfg: cfg.clone(), resolved });
    }
    layout
}

fn unknown_reference(list: List, reference: &str, defined: &Defined<'_>) -> String {
    let kinds = list.kinds();
    let primary = kinds[0];
    let connectors = defined.ids(&[ComponentKind::Connector]);
    let under = if kinds.len() > 1 && !connectors.is_empty() {
        format!("`{}:` or `connectors:`", primary.section())
    } else {
        format!("`{}:`", primary.section())
    };
    let configured =
        if kinds.len() > 1 && !connectors.is_empty() { defined.ids(kinds) } else { defined.ids(&[primary]) };
    format!(
        "references {} `{reference}` which is not configured under {under}; configured: [{}]",
        primary.as_str(),
        configured.join(", ")
    )
}

/// Checks that every connector is used on both sides with signals it can join: each pipeline it
/// exports from has a pipeline it feeds with a signal it makes from that pipeline's signal, and
/// the reverse.
pub(super) fn check_connector_uses(
    entry: &Entry,
    connects: &[(Signal, Signal)],
    layout: &Layout,
    locator: &Locator<'_>,
    problems: &mut Problems,
) {
    let id = entry.id.to_string();
    let uses = layout.uses(ComponentKind::Connector, &id);
    let consumed: Vec<&Use> = uses.iter().filter(|u| u.list == List::Exporters).collect();
    let produced: Vec<&Use> = uses.iter().filter(|u| u.list == List::Receivers).collect();
    let pairs = describe_pairs(connects);
    if consumed.is_empty() || produced.is_empty() {
        let message = match (consumed.is_empty(), produced.is_empty()) {
            (true, true) => "is configured but not used; a connector must be listed under `exporters:` of the \
                             pipeline whose data it takes and under `receivers:` of the pipeline it feeds"
                .to_string(),
            (true, false) => "is used as a receiver but no pipeline lists it under `exporters:`, so it would \
                              never get data; list it under `exporters:` of the pipeline whose data it takes"
                .to_string(),
            _ => "is used as an exporter but no pipeline lists it under `receivers:`, so its output would go \
                  nowhere; list it under `receivers:` of the pipeline it should feed"
                .to_string(),
        };
        problems.push(Problem::new(
            Some(entry.origin.clone()),
            format!("connectors::{id}"),
            format!("`{id}` {message}"),
        ));
        return;
    }
    for u in &consumed {
        if !produced.iter().any(|p| connects.contains(&(u.signal, p.signal))) {
            let pipeline = &layout.pipelines[u.pipeline];
            problems.push(locator.at_use(
                pipeline,
                u,
                format!(
                    "connector `{id}` takes {} here, but no pipeline that lists it under `receivers:` has a signal \
                     it makes from {} (it joins: {pairs})",
                    u.signal, u.signal
                ),
            ));
        }
    }
    for p in &produced {
        if !consumed.iter().any(|u| connects.contains(&(u.signal, p.signal))) {
            let pipeline = &layout.pipelines[p.pipeline];
            problems.push(locator.at_use(
                pipeline,
                p,
                format!(
                    "connector `{id}` would feed {} here, but no pipeline that lists it under `exporters:` has a \
                     signal it makes {} from (it joins: {pairs})",
                    p.signal, p.signal
                ),
            ));
        }
    }
}

/// `metrics->metrics, flows->flows`.
fn describe_pairs(connects: &[(Signal, Signal)]) -> String {
    connects.iter().map(|(a, b)| format!("{a}->{b}")).collect::<Vec<_>>().join(", ")
}

/// Pipelines in an order in which every pipeline comes after the pipelines that feed it through
/// connectors; a cycle is reported with its path and yields `None`.
pub(super) fn order_pipelines(
    layout: &Layout,
    connects: &dyn Fn(&str) -> &'static [(Signal, Signal)],
    locator: &Locator<'_>,
    problems: &mut Problems,
) -> Option<Vec<usize>> {
    // Edge u -> v (through connector c) when c is an exporter of u, a receiver of v, and joins
    // u's signal to v's.
    let n = layout.pipelines.len();
    let mut edges: Vec<Vec<(usize, String)>> = vec![Vec::new(); n];
    for (u, pipeline) in layout.pipelines.iter().enumerate() {
        for c in pipeline.refs_of(List::Exporters, ComponentKind::Connector) {
            let pairs = connects(c);
            for v_use in layout.uses(ComponentKind::Connector, c).iter().filter(|x| x.list == List::Receivers) {
                if pairs.contains(&(pipeline.id.signal, v_use.signal)) {
                    edges[u].push((v_use.pipeline, c.to_string()));
                }
            }
        }
    }
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let mut marks = vec![Mark::New; n];
    let mut order = Vec::with_capacity(n);
    // Iterative depth-first search; `path` holds (pipeline, next edge index, connector taken to it).
    for root in 0..n {
        if marks[root] != Mark::New {
            continue;
        }
        let mut path: Vec<(usize, usize, Option<String>)> = vec![(root, 0, None)];
        marks[root] = Mark::Active;
        while let Some(top) = path.last_mut() {
            let (u, next) = (top.0, top.1);
            if let Some((v, via)) = edges[u].get(next) {
                top.1 += 1;
                match marks[*v] {
                    Mark::New => {
                        marks[*v] = Mark::Active;
                        path.push((*v, 0, Some(via.clone())));
                    }
                    Mark::Active => {
                        report_cycle(layout, &path, *v, via, locator, problems);
                        return None;
                    }
                    Mark::Done => {}
                }
            } else {
                marks[u] = Mark::Done;
                order.push(u);
                path.pop();
            }
        }
    }
    order.reverse();
    Some(order)
}

fn report_cycle(
    layout: &Layout,
    path: &[(usize, usize, Option<String>)],
    back_to: usize,
    via: &str,
    locator: &Locator<'_>,
    problems: &mut Problems,
) {
    let start = path.iter().position(|(p, _, _)| *p == back_to).unwrap_or(0);
    let mut text = layout.pipelines[back_to].name.clone();
    for (p, _, taken) in &path[start + 1..] {
        text.push_str(&format!(" -> {} -> {}", taken.as_deref().unwrap_or("?"), layout.pipelines[*p].name));
    }
    text.push_str(&format!(" -> {via} -> {}", layout.pipelines[back_to].name));
    // Point at the connector that closes the cycle, in the exporters of the last pipeline.
    let last = &layout.pipelines[path[path.len() - 1].0];
    let position = last.cfg.exporters.iter().position(|e| e == via).unwrap_or(0);
    let use_ = Use { pipeline: path[path.len() - 1].0, signal: last.id.signal, list: List::Exporters, position };
    problems.push(locator.at_use(
        last,
        &use_,
        format!("pipelines form a cycle through connectors: {text}; data would loop for ever, so break the cycle"),
    ));
}
