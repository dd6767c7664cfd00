//! Flow records -> OTLP logs: one log record per flow, its fields as attributes, so `otlp` and
//! `otlphttp` exporters can ship the `flows` signal to any OTLP logs backend.
//!
//! Attribute names follow OpenTelemetry semantic conventions where one exists (`source.address`,
//! `network.transport`, `network.io.direction` ...) and `flow.*` / fovea's own names otherwise.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};

use super::convert::{attributes_to_proto, key_value, resource_to_proto};
use crate::model::dns::{question_type_name, response_code_name};
use crate::model::semconv::{attr, flow_log};
use crate::model::{Direction, DnsInfo, FlowBatch, FlowRecord, LatencySummary, ObservationPoint};

/// Scope name of the log records made from flows.
pub const FLOW_SCOPE: &str = "fovea/flows";

/// Converts a flow batch to an OTLP logs export request (one log record per flow record).
pub fn flows_to_proto(batch: &FlowBatch) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource_to_proto(&batch.resource)),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: FLOW_SCOPE.to_string(),
                    version: env!("CARGO_PKG_VERSION").to_string(),
                    attributes: vec![],
                    dropped_attributes_count: 0,
                }),
                log_records: batch.records.iter().map(record_to_log).collect(),
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// `network.transport`-style name of an IP protocol number.
fn transport(protocol: u8) -> Option<&'static str> {
    Some(match protocol {
        6 => "tcp",
        17 => "udp",
        1 => "icmp",
        58 => "icmpv6",
        132 => "sctp",
        _ => return None,
    })
}

fn record_to_log(r: &FlowRecord) -> LogRecord {
    use any_value::Value::{IntValue, StringValue};
    let mut attributes = Vec::with_capacity(16 + r.attributes.len());
    attributes.push(key_value(attr::FLOW_KIND, StringValue(r.kind.as_str().to_string())));
    attributes.push(key_value(attr::SOURCE_ADDRESS, StringValue(r.source.to_string())));
    attributes.push(key_value(attr::SOURCE_PORT, IntValue(i64::from(r.source_port))));
    attributes.push(key_value(attr::DESTINATION_ADDRESS, StringValue(r.destination.to_string())));
    attributes.push(key_value(attr::DESTINATION_PORT, IntValue(i64::from(r.destination_port))));
    let network_type = if r.source.is_ipv4() { "ipv4" } else { "ipv6" };
    attributes.push(key_value(attr::NETWORK_TYPE, StringValue(network_type.to_string())));
    match transport(r.protocol) {
        Some(t) => attributes.push(key_value(attr::NETWORK_TRANSPORT, StringValue(t.to_string()))),
        None => attributes.push(key_value(attr::NETWORK_PROTOCOL_NUMBER, IntValue(i64::from(r.protocol)))),
    }
    if r.direction != Direction::Unknown {
        attributes.push(key_value(attr::NETWORK_IO_DIRECTION, StringValue(r.direction.as_str().to_string())));
    }
    if r.ifindex != 0 {
        attributes.push(key_value(attr::NETWORK_INTERFACE_INDEX, IntValue(i64::from(r.ifindex))));
    }
    if !r.interface.is_empty() {
        attributes.push(key_value(attr::NETWORK_INTERFACE_NAME, StringValue(r.interface.to_string())));
    }
    if r.observation_point != ObservationPoint::Unknown {
        attributes.push(key_value(attr::FLOW_OBSERVATION_POINT, StringValue(r.observation_point.as_str().to_string())));
    }
    if r.start_time_unix_nano != 0 && r.start_time_unix_nano != r.time_unix_nano {
        attributes.push(key_value(attr::FLOW_START_TIME, IntValue(r.start_time_unix_nano as i64)));
    }
    attributes.push(key_value(attr::FLOW_PACKETS, IntValue(r.packets as i64)));
    attributes.push(key_value(attr::FLOW_BYTES, IntValue(r.bytes as i64)));
    if r.tcp_flags != 0 {
        attributes.push(key_value(attr::TCP_FLAGS, IntValue(i64::from(r.tcp_flags))));
    }
    for (name, &n) in flow_log::FLOW_TCP_FLAG_COUNTS.iter().zip(&r.tcp_flag_counts.0) {
        if n != 0 {
            attributes.push(key_value(name, IntValue(i64::from(n))));
        }
    }
    latency_attributes(
        &r.handshake,
        [attr::TCP_HANDSHAKE_COUNT, attr::TCP_HANDSHAKE_SUM, attr::TCP_HANDSHAKE_MIN, attr::TCP_HANDSHAKE_MAX],
        &mut attributes,
    );
    latency_attributes(
        &r.rtt,
        [attr::TCP_RTT_COUNT, attr::TCP_RTT_SUM, attr::TCP_RTT_MIN, attr::TCP_RTT_MAX],
        &mut attributes,
    );
    if let Some(state) = r.tcp_state {
        attributes.push(key_value(attr::NETWORK_CONNECTION_STATE, StringValue(state.as_str().to_string())));
    }
    if let Some(reason) = &r.drop_reason {
        attributes.push(key_value(attr::DROP_REASON, StringValue(reason.to_string())));
    }
    if let Some(d) = &r.dns {
        dns_attributes(d, &mut attributes);
    }
    attributes.extend(attributes_to_proto(&r.attributes));
    let body = format!(
        "{} {} {} -> {}",
        r.kind.as_str(),
        transport(r.protocol).unwrap_or("ip"),
        endpoint(r.source, r.source_port),
        endpoint(r.destination, r.destination_port)
    );
    LogRecord {
        time_unix_nano: r.time_unix_nano,
        observed_time_unix_nano: r.time_unix_nano,
        severity_number: SeverityNumber::Info as i32,
        severity_text: String::new(),
        body: Some(AnyValue { value: Some(StringValue(body)) }),
        attributes,
        dropped_attributes_count: 0,
        flags: 0,
        trace_id: vec![],
        span_id: vec![],
        event_name: format!("{}{}", flow_log::EVENT_NAME_PREFIX, r.kind.as_str()),
    }
}

/// A latency summary as `count`, `sum`, `min`, `max` attributes (seconds), when it has samples.
fn latency_attributes(l: &LatencySummary, names: [&str; 4], out: &mut Vec<KeyValue>) {
    use any_value::Value::{DoubleValue, IntValue};
    if l.count == 0 {
        return;
    }
    let s = |ns: u64| DoubleValue(ns as f64 / 1e9);
    out.push(key_value(names[0], IntValue(i64::from(l.count))));
    out.push(key_value(names[1], s(l.sum_ns)));
    out.push(key_value(names[2], s(l.min_ns)));
    out.push(key_value(names[3], s(l.max_ns)));
}

/// What a DNS record's message said, as `dns.*` attributes.
fn dns_attributes(d: &DnsInfo, out: &mut Vec<KeyValue>) {
    use any_value::Value::{DoubleValue, IntValue, StringValue};
    out.push(key_value(attr::DNS_MESSAGE_TYPE, StringValue(d.message_type().to_string())));
    out.push(key_value(attr::DNS_ID, IntValue(i64::from(d.id))));
    out.push(key_value(attr::DNS_QUESTION_NAME, StringValue(d.question_name.to_string())));
    out.push(key_value(attr::DNS_QUESTION_TYPE, StringValue(question_type_name(d.question_type).to_string())));
    if d.response {
        out.push(key_value(attr::DNS_RESPONSE_CODE, StringValue(response_code_name(d.response_code).to_string())));
        out.push(key_value(attr::DNS_ANSWER_COUNT, IntValue(i64::from(d.answer_count))));
        let answers: Vec<String> = d.addresses().iter().map(|a| a.to_string()).collect();
        out.push(key_value(attr::DNS_ANSWERS, StringValue(answers.join(","))));
    }
    if d.latency.count > 0 {
        out.push(key_value(attr::DNS_DURATION, DoubleValue(d.latency.sum_ns as f64 / 1e9)));
    }
}

fn endpoint(addr: std::net::IpAddr, port: u16) -> String {
    match addr {
        std::net::IpAddr::V4(a) => format!("{a}:{port}"),
        std::net::IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FlowKind, TcpFlagCounts, TcpState};

    #[test]
    fn one_log_record_per_flow_with_its_fields() {
        let mut r = FlowRecord::new(FlowKind::Drop, "198.18.0.1".parse().unwrap(), "2001:db8::2".parse().unwrap());
        r.time_unix_nano = 42;
        r.source_port = 1234;
        r.destination_port = 80;
        r.protocol = 6;
        r.direction = Direction::Transmit;
        r.bytes = 60;
        r.tcp_state = Some(TcpState::Established);
        r.drop_reason = Some("NETFILTER_DROP".into());
        r.attributes.insert("source.k8s.pod.name", "web-0");
        let batch = FlowBatch { records: vec![r], ..Default::default() };
        let req = flows_to_proto(&batch);
        let log = &req.resource_logs[0].scope_logs[0].log_records[0];
        assert_eq!(log.time_unix_nano, 42);
        assert_eq!(log.event_name, "network.flow.drop");
        let get = |k: &str| log.attributes.iter().find(|kv| kv.key == k).and_then(|kv| kv.value.clone()?.value);
        assert_eq!(get("source.port"), Some(any_value::Value::IntValue(1234)));
        assert_eq!(get("network.transport"), Some(any_value::Value::StringValue("tcp".into())));
        assert_eq!(get("drop.reason"), Some(any_value::Value::StringValue("NETFILTER_DROP".into())));
        assert_eq!(get("source.k8s.pod.name"), Some(any_value::Value::StringValue("web-0".into())));
        assert_eq!(get("flow.bytes"), Some(any_value::Value::IntValue(60)));
        let body = log.body.clone().and_then(|b| b.value);
        assert_eq!(body, Some(any_value::Value::StringValue("drop tcp 198.18.0.1:1234 -> [2001:db8::2]:80".into())));
    }

    #[test]
    fn the_documented_attribute_list_is_what_records_carry() {
        // Every optional field set, once with a named transport and once without.
        let mut tcp = FlowRecord::new(FlowKind::Drop, "198.18.0.1".parse().unwrap(), "198.18.0.2".parse().unwrap());
        tcp.protocol = 6;
        tcp.direction = Direction::Receive;
        tcp.ifindex = 3;
        tcp.tcp_flags = 0x12;
        tcp.tcp_state = Some(TcpState::SynSent);
        tcp.drop_reason = Some("NO_SOCKET".into());
        tcp.interface = "veth1".into();
        tcp.observation_point = ObservationPoint::Pod;
        tcp.time_unix_nano = 20;
        tcp.start_time_unix_nano = 10;
        tcp.tcp_flag_counts = TcpFlagCounts([1; 9]);
        tcp.handshake = LatencySummary::one(1000);
        tcp.rtt = LatencySummary::one(2000);
        tcp.attributes.insert(attr::FLOW_OVERFLOW, true);
        let mut dns = DnsInfo { response: true, latency: LatencySummary::one(3000), ..DnsInfo::default() };
        dns.push_address("198.18.0.9".parse().unwrap());
        tcp.dns = Some(dns);
        let mut other = tcp.clone();
        other.protocol = 253;
        let batch = FlowBatch { records: vec![tcp, other], ..Default::default() };
        let req = flows_to_proto(&batch);
        let mut seen: Vec<&str> = Vec::new();
        for log in &req.resource_logs[0].scope_logs[0].log_records {
            for kv in &log.attributes {
                if !seen.contains(&kv.key.as_str()) {
                    seen.push(&kv.key);
                }
            }
        }
        let mut documented = flow_log::ATTRIBUTES.to_vec();
        documented.sort_unstable();
        seen.sort_unstable();
        assert_eq!(seen, documented);
    }
}
