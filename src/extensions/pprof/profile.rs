//! A CPU profile in the pprof format (`profile.proto` of google/pprof, what `go tool pprof`
//! reads), built from the samples of the `pprof` crate's profiler.

use std::collections::HashMap;
use std::io::Write as _;
use std::time::UNIX_EPOCH;

/// `perftools.profiles.Profile`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Profile {
    /// What each sample value counts.
    #[prost(message, repeated, tag = "1")]
    pub sample_type: Vec<ValueType>,
    /// The samples: a stack and its values.
    #[prost(message, repeated, tag = "2")]
    pub sample: Vec<Sample>,
    /// Code locations (one per stack frame).
    #[prost(message, repeated, tag = "4")]
    pub location: Vec<Location>,
    /// Functions the locations are in.
    #[prost(message, repeated, tag = "5")]
    pub function: Vec<Function>,
    /// Every string, referenced by index; index 0 is "".
    #[prost(string, repeated, tag = "6")]
    pub string_table: Vec<String>,
    /// When the profile started, in Unix nanoseconds.
    #[prost(int64, tag = "9")]
    pub time_nanos: i64,
    /// How long it ran.
    #[prost(int64, tag = "10")]
    pub duration_nanos: i64,
    /// What `period` measures.
    #[prost(message, optional, tag = "11")]
    pub period_type: Option<ValueType>,
    /// Time between two samples.
    #[prost(int64, tag = "12")]
    pub period: i64,
}

/// `ValueType`: indexes into the string table.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueType {
    /// `samples`, `cpu` ...
    #[prost(int64, tag = "1")]
    pub r#type: i64,
    /// `count`, `nanoseconds` ...
    #[prost(int64, tag = "2")]
    pub unit: i64,
}

/// `Sample`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    /// The stack, innermost frame first.
    #[prost(uint64, repeated, tag = "1")]
    pub location_id: Vec<u64>,
    /// One value per sample type.
    #[prost(int64, repeated, tag = "2")]
    pub value: Vec<i64>,
    /// Labels (the thread).
    #[prost(message, repeated, tag = "3")]
    pub label: Vec<Label>,
}

/// `Label`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    /// Key (string index).
    #[prost(int64, tag = "1")]
    pub key: i64,
    /// String value (string index).
    #[prost(int64, tag = "2")]
    pub str: i64,
}

/// `Location`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Location {
    /// Its id (1-based).
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// The code at this location, inlined functions first.
    #[prost(message, repeated, tag = "4")]
    pub line: Vec<Line>,
}

/// `Line`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Line {
    /// The function's id.
    #[prost(uint64, tag = "1")]
    pub function_id: u64,
    /// Source line.
    #[prost(int64, tag = "2")]
    pub line: i64,
}

/// `Function`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Function {
    /// Its id (1-based).
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// Demangled name (string index).
    #[prost(int64, tag = "2")]
    pub name: i64,
    /// Symbol name (string index).
    #[prost(int64, tag = "3")]
    pub system_name: i64,
    /// Source file (string index).
    #[prost(int64, tag = "4")]
    pub filename: i64,
}

#[derive(Default)]
struct Strings {
    table: Vec<String>,
    index: HashMap<String, i64>,
}

impl Strings {
    fn id(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.table.len() as i64;
        self.table.push(s.to_string());
        self.index.insert(s.to_string(), i);
        i
    }
}

/// Turns the profiler's report into a pprof profile.
pub fn from_report(report: &pprof::Report) -> Profile {
    let mut strings = Strings::default();
    strings.id("");
    let sample_type = vec![
        ValueType { r#type: strings.id("samples"), unit: strings.id("count") },
        ValueType { r#type: strings.id("cpu"), unit: strings.id("nanoseconds") },
    ];
    let period = 1_000_000_000 / i64::from(report.timing.frequency.max(1));
    let thread = strings.id("thread");
    let mut functions: HashMap<(String, String), u64> = HashMap::new();
    let mut function_list = Vec::new();
    let mut locations: HashMap<Vec<(u64, i64)>, u64> = HashMap::new();
    let mut location_list = Vec::new();
    let mut samples = Vec::new();
    for (frames, count) in &report.data {
        let mut location_id = Vec::with_capacity(frames.frames.len());
        for frame in &frames.frames {
            let lines: Vec<(u64, i64)> = frame
                .iter()
                .map(|symbol| {
                    let key = (symbol.name(), symbol.filename().into_owned());
                    let next = function_list.len() as u64 + 1;
                    let id = *functions.entry(key.clone()).or_insert_with(|| {
                        function_list.push(Function {
                            id: next,
                            name: strings.id(&key.0),
                            system_name: strings.id(&symbol.sys_name()),
                            filename: strings.id(&key.1),
                        });
                        next
                    });
                    (id, i64::from(symbol.lineno()))
                })
                .collect();
            let next = location_list.len() as u64 + 1;
            let id = *locations.entry(lines.clone()).or_insert_with(|| {
                location_list.push(Location {
                    id: next,
                    line: lines.iter().map(|&(function_id, line)| Line { function_id, line }).collect(),
                });
                next
            });
            location_id.push(id);
        }
        let count = *count as i64;
        samples.push(Sample {
            location_id,
            value: vec![count, count * period],
            label: vec![Label { key: thread, str: strings.id(&frames.thread_name_or_id()) }],
        });
    }
    let start = report.timing.start_time.duration_since(UNIX_EPOCH).unwrap_or_default();
    Profile {
        sample_type,
        sample: samples,
        location: location_list,
        function: function_list,
        time_nanos: start.as_nanos() as i64,
        duration_nanos: report.timing.duration.as_nanos() as i64,
        period_type: Some(ValueType { r#type: strings.id("cpu"), unit: strings.id("nanoseconds") }),
        period,
        string_table: strings.table,
    }
}

/// The profile as Go serves it: gzip-compressed protobuf.
pub fn encode(profile: &Profile) -> std::io::Result<Vec<u8>> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&prost::Message::encode_to_vec(profile))?;
    gz.finish()
}
