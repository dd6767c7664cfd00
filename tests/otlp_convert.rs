//! Conversion between fovea's metric model and OTLP: model -> proto -> model gives back exactly
//! the same batch for every metric kind and attribute type, through the protobuf bytes and
//! through OTLP/JSON as well.

#[path = "support/otlp.rs"]
mod support;

use prost::Message as _;

use fovea::otlp::json::metrics_request_from_json;
use fovea::otlp::proto::collector::metrics::v1::ExportMetricsServiceRequest;
use fovea::otlp::proto::common::v1::any_value::Value;
use fovea::otlp::proto::metrics::v1::{AggregationTemporality, metric, number_data_point};
use fovea::otlp::{metrics_from_proto, metrics_to_proto};

#[test]
fn every_kind_and_attribute_type_survives_the_round_trip() {
    let batch = support::every_kind_batch();
    let decoded = metrics_from_proto(metrics_to_proto(&batch));
    assert_eq!((decoded.accepted, decoded.refused), (9, 0));
    assert_eq!(decoded.batch, batch);
}

#[test]
fn the_round_trip_holds_through_protobuf_bytes_and_json() {
    let batch = support::every_kind_batch();
    let bytes = metrics_to_proto(&batch).encode_to_vec();
    let from_bytes = metrics_from_proto(ExportMetricsServiceRequest::decode(bytes.as_slice()).unwrap());
    assert_eq!(from_bytes.batch, batch);

    let json = serde_json::to_vec(&metrics_to_proto(&batch)).unwrap();
    let from_json = metrics_from_proto(metrics_request_from_json(&json).unwrap());
    assert_eq!(from_json.batch, batch);
}

#[test]
fn the_proto_carries_the_otlp_fields_exactly() {
    let req = metrics_to_proto(&support::every_kind_batch());
    let rm = &req.resource_metrics[0];
    let resource_keys: Vec<_> = rm.resource.as_ref().unwrap().attributes.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(resource_keys, ["host.name", "k8s.node.name", "service.name"]);
    let scope = rm.scope_metrics[0].scope.as_ref().unwrap();
    assert_eq!((scope.name.as_str(), scope.version.as_str()), ("fovea/packetforward", "0.1.0"));

    let forward = &rm.scope_metrics[0].metrics[0];
    assert_eq!((forward.name.as_str(), forward.unit.as_str()), ("network.forward.packets", "{packet}"));
    let Some(metric::Data::Sum(sum)) = &forward.data else { panic!("not a sum") };
    assert!(sum.is_monotonic);
    assert_eq!(sum.aggregation_temporality, AggregationTemporality::Cumulative as i32);
    let p = &sum.data_points[0];
    assert_eq!(p.value, Some(number_data_point::Value::AsInt(i64::MAX)));
    assert_eq!((p.start_time_unix_nano, p.time_unix_nano), (1_700_000_000_000_000_000, 1_700_000_060_123_456_789));
    let attr = |k: &str| p.attributes.iter().find(|kv| kv.key == k).and_then(|kv| kv.value.clone()?.value);
    assert_eq!(attr("port"), Some(Value::IntValue(-8080)));
    assert_eq!(attr("ratio"), Some(Value::DoubleValue(0.25)));
    assert_eq!(attr("ipv6"), Some(Value::BoolValue(true)));
    assert_eq!(attr("network.interface.name"), Some(Value::StringValue("eth0".into())));

    let Some(metric::Data::Sum(delta)) = &rm.scope_metrics[0].metrics[1].data else { panic!("not a sum") };
    assert!(!delta.is_monotonic);
    assert_eq!(delta.aggregation_temporality, AggregationTemporality::Delta as i32);
    assert_eq!(delta.data_points[0].value, Some(number_data_point::Value::AsDouble(1536.5)));

    let Some(metric::Data::Histogram(h)) = &rm.scope_metrics[0].metrics[2].data else { panic!("not a histogram") };
    let hp = &h.data_points[0];
    assert_eq!(hp.explicit_bounds, [0.0005, 0.001, 0.01, 0.1, 1.0]);
    assert_eq!(hp.bucket_counts, [1, 2, 3, 4, 0, 0]);
    assert_eq!((hp.count, hp.sum, hp.min, hp.max), (10, Some(0.123), Some(0.0001), Some(0.09)));
    assert_eq!((h.data_points[1].min, h.data_points[1].max), (None, None));
}

#[test]
fn the_encoder_splits_large_batches_and_keeps_every_point() {
    use fovea::delivery::Encoder as _;
    use fovea::model::{MetricData, Payload};
    use fovea::otlp::OtlpEncoder;

    let batch = support::node_batch(1000);
    let mut requests = Vec::new();
    OtlpEncoder::default().encode(&Payload::from(batch.clone()), &mut requests).unwrap();
    assert_eq!(requests.len(), 1, "a 1000-point batch fits one request");

    let (acks, waiter) = fovea::model::Acks::new_request();
    let payload = Payload::from(fovea::model::MetricBatch { acks, ..batch.clone() });
    requests.clear();
    OtlpEncoder::with_max_body(20_000).encode(&payload, &mut requests).unwrap();
    assert!(requests.len() > 5, "{} requests", requests.len());
    assert!(requests.iter().all(|r| r.body.len() <= 20_000));
    assert_eq!(requests.iter().map(|r| r.items).sum::<u64>(), 1000);
    let mut values = Vec::new();
    for r in &requests {
        let part = metrics_from_proto(ExportMetricsServiceRequest::decode(r.body.as_ref()).unwrap()).batch;
        assert_eq!(part.data_points() as u64, r.items);
        for (_, _, m) in part.iter_metrics() {
            let MetricData::Sum(s) = &m.data else { panic!("not a sum") };
            values.extend(s.points.iter().cloned());
        }
    }
    let MetricData::Sum(original) = &batch.resource_metrics[0].scope_metrics[0].metrics[0].data else { panic!() };
    assert_eq!(values, original.points);
    // Splitting did not touch the acknowledgement: one accept completes the request.
    payload.acks().accept();
    drop(payload);
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    assert!(rt.block_on(waiter.wait()));
}
