//! The flow-log schema: one Arrow column per `FlowRecord` field, the Kubernetes attributes of
//! both ends as typed columns, and a map column for every other attribute. docs/configuration.md
//! (`flowlog`) documents it column by column; [`columns`] is the list it is checked against.
//!
//! Low-cardinality strings (kind, direction, interface, Kubernetes names) are dictionary-encoded;
//! addresses are text (`198.18.0.1`, `2001:db8::1`) so any reader can filter on them; times are
//! UTC nanosecond timestamps.

use std::fmt::Write as _;
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, MapBuilder, StringBuilder, StringDictionaryBuilder, TimestampNanosecondBuilder, UInt8Builder,
    UInt16Builder, UInt32Builder, UInt64Builder,
};
use arrow_array::types::Int32Type;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::model::semconv::{attr, flow_log};
use crate::model::{AttrValue, FlowRecord, LatencySummary, ObservationPoint, Resource};

/// Kubernetes attributes of each end that get their own column (as the `k8sattributes` processor
/// writes them); the `source.` / `destination.` prefix is added in front.
const END_COLUMNS: [&str; 6] = [
    attr::K8S_NAMESPACE_NAME,
    attr::K8S_POD_NAME,
    attr::K8S_WORKLOAD_KIND,
    attr::K8S_WORKLOAD_NAME,
    attr::K8S_SERVICE_NAME,
    attr::K8S_NODE_NAME,
];

fn dict() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

/// The typed attribute columns, in order: both ends' Kubernetes names.
pub fn typed_attribute_columns() -> Vec<String> {
    [attr::SOURCE_PREFIX, attr::DESTINATION_PREFIX]
        .iter()
        .flat_map(|end| END_COLUMNS.iter().map(move |k| format!("{end}{k}")))
        .collect()
}

/// Every column: name, type, nullable.
pub fn columns() -> Vec<Field> {
    let u32n = |name: &str| Field::new(name, DataType::UInt32, false);
    let u64n = |name: &str| Field::new(name, DataType::UInt64, true);
    let mut fields = vec![
        Field::new("time", timestamp(), false),
        Field::new("start_time", timestamp(), false),
        Field::new("kind", dict(), false),
        Field::new("source_address", DataType::Utf8, false),
        Field::new("source_port", DataType::UInt16, false),
        Field::new("destination_address", DataType::Utf8, false),
        Field::new("destination_port", DataType::UInt16, false),
        Field::new("protocol", DataType::UInt8, false),
        Field::new("direction", dict(), false),
        Field::new("interface_index", DataType::UInt32, false),
        Field::new("interface_name", dict(), true),
        Field::new("observation_point", dict(), true),
        Field::new("packets", DataType::UInt64, false),
        Field::new("bytes", DataType::UInt64, false),
        Field::new("tcp_flags", DataType::UInt16, false),
    ];
    for name in flow_log::FLOW_TCP_FLAG_COUNTS {
        // flow.tcp.syn -> tcp_syn
        fields.push(u32n(&name.replacen("flow.tcp.", "tcp_", 1)));
    }
    for prefix in ["handshake", "rtt"] {
        fields.push(u32n(&format!("{prefix}_count")));
        fields.push(u64n(&format!("{prefix}_sum_ns")));
        fields.push(u64n(&format!("{prefix}_min_ns")));
        fields.push(u64n(&format!("{prefix}_max_ns")));
    }
    fields.push(Field::new("tcp_state", dict(), true));
    fields.push(Field::new("drop_reason", dict(), true));
    fields.push(Field::new(attr::FLOW_OVERFLOW, DataType::Boolean, false));
    for name in typed_attribute_columns() {
        fields.push(Field::new(name, dict(), true));
    }
    fields.push(Field::new(
        "attributes",
        DataType::Map(
            Arc::new(Field::new(
                "entries",
                DataType::Struct(
                    vec![Field::new("key", DataType::Utf8, false), Field::new("value", DataType::Utf8, true)].into(),
                ),
                false,
            )),
            false,
        ),
        false,
    ));
    fields
}

/// The schema of files written for `resource` (its attributes are the schema's metadata, as
/// `resource.<key>`).
pub fn schema(resource: &Resource) -> SchemaRef {
    let metadata: std::collections::HashMap<String, String> =
        resource.attributes.iter().map(|kv| (format!("resource.{}", kv.key), kv.value.to_string())).collect();
    Arc::new(Schema::new_with_metadata(columns(), metadata))
}

/// Builders for one record batch.
struct Builders {
    time: TimestampNanosecondBuilder,
    start_time: TimestampNanosecondBuilder,
    kind: StringDictionaryBuilder<Int32Type>,
    source_address: StringBuilder,
    source_port: UInt16Builder,
    destination_address: StringBuilder,
    destination_port: UInt16Builder,
    protocol: UInt8Builder,
    direction: StringDictionaryBuilder<Int32Type>,
    interface_index: UInt32Builder,
    interface_name: StringDictionaryBuilder<Int32Type>,
    observation_point: StringDictionaryBuilder<Int32Type>,
    packets: UInt64Builder,
    bytes: UInt64Builder,
    tcp_flags: UInt16Builder,
    flag_counts: Vec<UInt32Builder>,
    latency: Vec<(UInt32Builder, UInt64Builder, UInt64Builder, UInt64Builder)>,
    tcp_state: StringDictionaryBuilder<Int32Type>,
    drop_reason: StringDictionaryBuilder<Int32Type>,
    overflow: BooleanBuilder,
    typed: Vec<(String, StringDictionaryBuilder<Int32Type>)>,
    attributes: MapBuilder<StringBuilder, StringBuilder>,
}

impl Builders {
    fn new(rows: usize) -> Self {
        let ts = || TimestampNanosecondBuilder::with_capacity(rows).with_timezone("UTC");
        let dict = StringDictionaryBuilder::<Int32Type>::new;
        Builders {
            time: ts(),
            start_time: ts(),
            kind: dict(),
            source_address: StringBuilder::with_capacity(rows, rows * 16),
            source_port: UInt16Builder::with_capacity(rows),
            destination_address: StringBuilder::with_capacity(rows, rows * 16),
            destination_port: UInt16Builder::with_capacity(rows),
            protocol: UInt8Builder::with_capacity(rows),
            direction: dict(),
            interface_index: UInt32Builder::with_capacity(rows),
            interface_name: dict(),
            observation_point: dict(),
            packets: UInt64Builder::with_capacity(rows),
            bytes: UInt64Builder::with_capacity(rows),
            tcp_flags: UInt16Builder::with_capacity(rows),
            flag_counts: (0..9).map(|_| UInt32Builder::with_capacity(rows)).collect(),
            latency: (0..2)
                .map(|_| {
                    (
                        UInt32Builder::with_capacity(rows),
                        UInt64Builder::with_capacity(rows),
                        UInt64Builder::with_capacity(rows),
                        UInt64Builder::with_capacity(rows),
                    )
                })
                .collect(),
            tcp_state: dict(),
            drop_reason: dict(),
            overflow: BooleanBuilder::with_capacity(rows),
            typed: typed_attribute_columns().into_iter().map(|name| (name, dict())).collect(),
            attributes: MapBuilder::new(None, StringBuilder::new(), StringBuilder::new()),
        }
    }

    fn append(&mut self, r: &FlowRecord) -> Result<(), ArrowError> {
        let ns = |t: u64| i64::try_from(t).unwrap_or(i64::MAX);
        self.time.append_value(ns(r.time_unix_nano));
        self.start_time.append_value(ns(if r.start_time_unix_nano == 0 {
            r.time_unix_nano
        } else {
            r.start_time_unix_nano
        }));
        self.kind.append_value(r.kind.as_str());
        // straight into the column's buffer: no String per address
        let _ = write!(self.source_address, "{}", r.source);
        self.source_address.append_value("");
        self.source_port.append_value(r.source_port);
        let _ = write!(self.destination_address, "{}", r.destination);
        self.destination_address.append_value("");
        self.destination_port.append_value(r.destination_port);
        self.protocol.append_value(r.protocol);
        self.direction.append_value(r.direction.as_str());
        self.interface_index.append_value(r.ifindex);
        self.interface_name.append_option((!r.interface.is_empty()).then_some(r.interface.as_str()));
        self.observation_point
            .append_option((r.observation_point != ObservationPoint::Unknown).then_some(r.observation_point.as_str()));
        self.packets.append_value(r.packets);
        self.bytes.append_value(r.bytes);
        self.tcp_flags.append_value(r.tcp_flags);
        for (b, n) in self.flag_counts.iter_mut().zip(r.tcp_flag_counts.0) {
            b.append_value(n);
        }
        for ((count, sum, min, max), l) in self.latency.iter_mut().zip([&r.handshake, &r.rtt]) {
            append_latency(l, count, sum, min, max);
        }
        self.tcp_state.append_option(r.tcp_state.map(|s| s.as_str()));
        self.drop_reason.append_option(r.drop_reason.as_deref());
        self.overflow.append_value(matches!(r.attributes.get(attr::FLOW_OVERFLOW), Some(AttrValue::Bool(true))));
        for (name, b) in &mut self.typed {
            match r.attributes.get(name) {
                Some(AttrValue::Str(s)) => b.append_value(s.as_str()),
                Some(other) => b.append_value(other.to_string()),
                None => b.append_null(),
            }
        }
        for kv in r.attributes.iter() {
            let key = kv.key.as_str();
            if key == attr::FLOW_OVERFLOW || self.typed.iter().any(|(name, _)| name == key) {
                continue;
            }
            self.attributes.keys().append_value(key);
            let _ = write!(self.attributes.values(), "{}", kv.value);
            self.attributes.values().append_value("");
        }
        self.attributes.append(true)
    }

    fn finish(mut self, schema: SchemaRef) -> Result<RecordBatch, ArrowError> {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.time.finish()),
            Arc::new(self.start_time.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(self.source_address.finish()),
            Arc::new(self.source_port.finish()),
            Arc::new(self.destination_address.finish()),
            Arc::new(self.destination_port.finish()),
            Arc::new(self.protocol.finish()),
            Arc::new(self.direction.finish()),
            Arc::new(self.interface_index.finish()),
            Arc::new(self.interface_name.finish()),
            Arc::new(self.observation_point.finish()),
            Arc::new(self.packets.finish()),
            Arc::new(self.bytes.finish()),
            Arc::new(self.tcp_flags.finish()),
        ];
        columns.extend(self.flag_counts.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        for (count, sum, min, max) in &mut self.latency {
            columns.push(Arc::new(count.finish()));
            columns.push(Arc::new(sum.finish()));
            columns.push(Arc::new(min.finish()));
            columns.push(Arc::new(max.finish()));
        }
        columns.push(Arc::new(self.tcp_state.finish()));
        columns.push(Arc::new(self.drop_reason.finish()));
        columns.push(Arc::new(self.overflow.finish()));
        columns.extend(self.typed.iter_mut().map(|(_, b)| Arc::new(b.finish()) as ArrayRef));
        columns.push(Arc::new(self.attributes.finish()));
        RecordBatch::try_new(schema, columns)
    }
}

fn append_latency(
    l: &LatencySummary,
    count: &mut UInt32Builder,
    sum: &mut UInt64Builder,
    min: &mut UInt64Builder,
    max: &mut UInt64Builder,
) {
    count.append_value(l.count);
    let some = l.count > 0;
    sum.append_option(some.then_some(l.sum_ns));
    min.append_option(some.then_some(l.min_ns));
    max.append_option(some.then_some(l.max_ns));
}

/// The records as one record batch of `schema`.
pub fn record_batch(schema: &SchemaRef, records: &[FlowRecord]) -> Result<RecordBatch, ArrowError> {
    let mut b = Builders::new(records.len());
    for r in records {
        b.append(r)?;
    }
    b.finish(schema.clone())
}

#[cfg(test)]
mod tests {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{UInt16Type, UInt64Type};
    use arrow_array::{Array, DictionaryArray};

    use super::*;
    use crate::model::{FlowKind, TcpFlagCounts};

    #[test]
    fn every_field_lands_in_its_column() {
        let mut r = FlowRecord::new(FlowKind::Forward, "198.18.0.1".parse().unwrap(), "2001:db8::2".parse().unwrap());
        r.time_unix_nano = 20;
        r.start_time_unix_nano = 10;
        r.source_port = 40000;
        r.packets = 3;
        r.bytes = 300;
        r.interface = "veth1".into();
        r.tcp_flag_counts = TcpFlagCounts([1, 2, 3, 4, 5, 6, 7, 8, 9]);
        r.handshake = LatencySummary::one(1500);
        r.attributes.insert("source.k8s.pod.name", "web-0");
        r.attributes.insert("source.k8s.pod.label.app", "web");
        let other = FlowRecord::new(FlowKind::Drop, "198.18.0.3".parse().unwrap(), "198.18.0.4".parse().unwrap());
        let schema = schema(&Resource::default());
        let batch = record_batch(&schema, &[r, other]).expect("batch");
        assert_eq!(batch.num_rows(), 2);
        let col = |name: &str| batch.column(schema.index_of(name).expect(name)).clone();
        assert_eq!(col("source_address").as_string::<i32>().value(0), "198.18.0.1");
        assert_eq!(col("destination_address").as_string::<i32>().value(0), "2001:db8::2");
        assert_eq!(col("source_port").as_primitive::<UInt16Type>().value(0), 40000);
        assert_eq!(col("bytes").as_primitive::<UInt64Type>().value(0), 300);
        assert_eq!(col("tcp_cwr").as_primitive::<arrow_array::types::UInt32Type>().value(0), 9);
        assert_eq!(col("handshake_sum_ns").as_primitive::<UInt64Type>().value(0), 1500);
        assert!(col("handshake_sum_ns").is_null(1), "no samples: null");
        let pods = col("source.k8s.pod.name");
        let pods: &DictionaryArray<Int32Type> = pods.as_dictionary();
        let values = pods.values().as_string::<i32>();
        assert_eq!(values.value(pods.keys().value(0) as usize), "web-0");
        assert!(pods.is_null(1));
        let attrs = col("attributes");
        let attrs = attrs.as_map();
        assert_eq!(attrs.value(0).column(0).as_string::<i32>().value(0), "source.k8s.pod.label.app");
        assert_eq!(attrs.value(1).len(), 0);
    }
}
