//! The receiver's cumulative metrics: requests, responses, unanswered queries and durations,
//! one series per attribute set, at most `max_series` per metric (the rest in one
//! `otel.metric.overflow` series).
//!
//! Keys hold `&'static str` type and code names (a bounded set, see [`crate::model::dns`]) and,
//! when configured, the question name and answers as `SmolStr` (inline up to 23 bytes, a
//! reference count beyond), so counting a message allocates nothing unless answers are counted.

use std::fmt::Write;
use std::hash::Hash;
use std::sync::Arc;

use hashbrown::HashMap;
use smol_str::{SmolStr, SmolStrBuilder};

use crate::model::dns::{question_type_name, response_code_name};
use crate::model::semconv::{self, LATENCY_BOUNDS_S, attr};
use crate::model::{Attributes, DnsInfo, HistogramPoint, LatencyHistogram, Metric, NumberPoint};

/// Which optional attributes are counted.
#[derive(Debug, Clone, Copy, Default)]
pub struct Detail {
    /// `dns.question.name`.
    pub question_name: bool,
    /// `dns.answers`.
    pub answers: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RequestKey {
    qtype: &'static str,
    name: Option<SmolStr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ResponseKey {
    qtype: &'static str,
    rcode: &'static str,
    answer_count: u16,
    name: Option<SmolStr>,
    answers: Option<SmolStr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct DurationKey {
    qtype: &'static str,
    rcode: &'static str,
}

/// Series of one metric, capped.
#[derive(Debug)]
struct Capped<K, V> {
    series: HashMap<K, V>,
    overflow: Option<V>,
}

impl<K: Eq + Hash, V: Default> Capped<K, V> {
    fn new() -> Self {
        Capped { series: HashMap::new(), overflow: None }
    }

    /// The value of `key`'s series, or of the overflow series when `max` are taken (`overflowed`
    /// counts those).
    fn entry(&mut self, key: K, max: usize, overflowed: &mut u64) -> &mut V {
        if self.series.len() >= max && !self.series.contains_key(&key) {
            *overflowed += 1;
            return self.overflow.get_or_insert_with(V::default);
        }
        self.series.entry(key).or_default()
    }
}

/// Every series of the receiver, cumulative since it started.
#[derive(Debug)]
pub struct DnsCounters {
    detail: Detail,
    max_series: usize,
    requests: Capped<RequestKey, u64>,
    responses: Capped<ResponseKey, u64>,
    unanswered: Capped<RequestKey, u64>,
    durations: Capped<DurationKey, LatencyHistogram>,
    bounds: Arc<[f64]>,
    /// Messages counted in an overflow series.
    pub overflowed: u64,
}

impl DnsCounters {
    /// Empty counters.
    pub fn new(detail: Detail, max_series: usize) -> Self {
        DnsCounters {
            detail,
            max_series,
            requests: Capped::new(),
            responses: Capped::new(),
            unanswered: Capped::new(),
            durations: Capped::new(),
            bounds: Arc::from(LATENCY_BOUNDS_S.as_slice()),
            overflowed: 0,
        }
    }

    fn request_key(&self, qtype: u16, name: &SmolStr) -> RequestKey {
        RequestKey { qtype: question_type_name(qtype), name: self.detail.question_name.then(|| name.clone()) }
    }

    /// A query.
    pub fn request(&mut self, d: &DnsInfo) {
        let key = self.request_key(d.question_type, &d.question_name);
        *self.requests.entry(key, self.max_series, &mut self.overflowed) += 1;
    }

    /// A response, with its duration when its query was seen.
    pub fn response(&mut self, d: &DnsInfo, duration_ns: Option<u64>) {
        let answers = (self.detail.answers && d.address_count > 0).then(|| {
            let mut b = SmolStrBuilder::new();
            for (i, a) in d.addresses().iter().enumerate() {
                let _ = write!(b, "{}{a}", if i > 0 { "," } else { "" });
            }
            b.finish()
        });
        let key = ResponseKey {
            qtype: question_type_name(d.question_type),
            rcode: response_code_name(d.response_code),
            answer_count: d.answer_count,
            name: self.detail.question_name.then(|| d.question_name.clone()),
            answers,
        };
        *self.responses.entry(key, self.max_series, &mut self.overflowed) += 1;
        if let Some(ns) = duration_ns {
            let key =
                DurationKey { qtype: question_type_name(d.question_type), rcode: response_code_name(d.response_code) };
            self.durations.entry(key, self.max_series, &mut self.overflowed).record(ns);
        }
    }

    /// A query that got no response in time.
    pub fn unanswered(&mut self, qtype: u16, name: &SmolStr) {
        let key = self.request_key(qtype, name);
        *self.unanswered.entry(key, self.max_series, &mut self.overflowed) += 1;
    }

    /// The four metrics now (cumulative since `start`).
    pub fn metrics(&self, start: u64, now: u64) -> Vec<Metric> {
        let overflow = || Attributes::from_pairs([(attr::OTEL_METRIC_OVERFLOW, true)]);
        let count = |series: &Capped<RequestKey, u64>| {
            let mut points: Vec<NumberPoint> =
                series.series.iter().map(|(k, v)| NumberPoint::count(self.request_attrs(k), start, now, *v)).collect();
            points.extend(series.overflow.map(|v| NumberPoint::count(overflow(), start, now, v)));
            points
        };
        let mut responses: Vec<NumberPoint> = self
            .responses
            .series
            .iter()
            .map(|(k, v)| {
                let mut a =
                    Attributes::from_pairs([(attr::DNS_QUESTION_TYPE, k.qtype), (attr::DNS_RESPONSE_CODE, k.rcode)]);
                a.insert(attr::DNS_ANSWER_COUNT, i64::from(k.answer_count));
                if let Some(name) = &k.name {
                    a.insert(attr::DNS_QUESTION_NAME, name.clone());
                }
                if let Some(answers) = &k.answers {
                    a.insert(attr::DNS_ANSWERS, answers.clone());
                }
                NumberPoint::count(a, start, now, *v)
            })
            .collect();
        responses.extend(self.responses.overflow.map(|v| NumberPoint::count(overflow(), start, now, v)));
        let mut durations: Vec<HistogramPoint> = self
            .durations
            .series
            .iter()
            .map(|(k, h)| {
                let mut p = h.point(&self.bounds, start, now);
                p.attributes =
                    Attributes::from_pairs([(attr::DNS_QUESTION_TYPE, k.qtype), (attr::DNS_RESPONSE_CODE, k.rcode)]);
                p
            })
            .collect();
        if let Some(h) = &self.durations.overflow {
            let mut p = h.point(&self.bounds, start, now);
            p.attributes = overflow();
            durations.push(p);
        }
        vec![
            Metric::from_def(&semconv::NETWORK_DNS_REQUESTS, count(&self.requests)),
            Metric::from_def(&semconv::NETWORK_DNS_RESPONSES, responses),
            Metric::from_def(&semconv::NETWORK_DNS_UNANSWERED, count(&self.unanswered)),
            Metric::histogram_from_def(&semconv::NETWORK_DNS_DURATION, durations),
        ]
    }

    fn request_attrs(&self, k: &RequestKey) -> Attributes {
        let mut a = Attributes::from_pairs([(attr::DNS_QUESTION_TYPE, k.qtype)]);
        if let Some(name) = &k.name {
            a.insert(attr::DNS_QUESTION_NAME, name.clone());
        }
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{MetricData, Number};

    fn info(qtype: u16, name: &str, rcode: u16) -> DnsInfo {
        DnsInfo { question_type: qtype, question_name: name.into(), response_code: rcode, ..DnsInfo::default() }
    }

    fn sums(m: &Metric) -> Vec<(Attributes, u64)> {
        let MetricData::Sum(s) = &m.data else { panic!("{m:?}") };
        let mut out: Vec<_> = s
            .points
            .iter()
            .map(|p| {
                let Number::Int(v) = p.value else { panic!("{p:?}") };
                (p.attributes.clone(), v as u64)
            })
            .collect();
        out.sort_by_key(|(a, _)| format!("{a:?}"));
        out
    }

    #[test]
    fn series_per_type_and_code_with_names_only_when_asked() {
        let mut c = DnsCounters::new(Detail::default(), 100);
        c.request(&info(1, "a.example", 0));
        c.request(&info(1, "b.example", 0));
        c.request(&info(28, "a.example", 0));
        c.response(&info(1, "gone.example", 3), Some(1_000));
        let m = c.metrics(1, 2);
        let requests = sums(&m[0]);
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].0.get_str(attr::DNS_QUESTION_TYPE), Some("A"));
        assert_eq!(requests[0].1, 2);
        let responses = sums(&m[1]);
        assert_eq!(responses[0].0.get_str(attr::DNS_RESPONSE_CODE), Some("NXDOMAIN"));
        assert!(responses[0].0.get(attr::DNS_QUESTION_NAME).is_none());

        let mut named = DnsCounters::new(Detail { question_name: true, answers: true }, 100);
        let mut d = info(1, "db.example", 0);
        d.push_address("198.18.0.1".parse().unwrap());
        d.push_address("198.18.0.2".parse().unwrap());
        named.response(&d, None);
        let r = sums(&named.metrics(1, 2)[1]);
        assert_eq!(r[0].0.get_str(attr::DNS_ANSWERS), Some("198.18.0.1,198.18.0.2"));
        assert_eq!(r[0].0.get_str(attr::DNS_QUESTION_NAME), Some("db.example"));
    }

    #[test]
    fn names_past_the_cap_go_to_the_overflow_series() {
        let mut c = DnsCounters::new(Detail { question_name: true, answers: false }, 2);
        for name in ["a", "b", "c", "d", "a"] {
            c.request(&info(1, name, 0));
        }
        let requests = sums(&c.metrics(1, 2)[0]);
        let total: u64 = requests.iter().map(|(_, v)| v).sum();
        assert_eq!((requests.len(), total, c.overflowed), (3, 5, 2));
        assert!(requests.iter().any(|(a, v)| a.get(attr::OTEL_METRIC_OVERFLOW).is_some() && *v == 2));
    }
}
