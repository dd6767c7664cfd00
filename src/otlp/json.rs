//! OTLP/JSON (the OTLP specification's JSON mapping of the protobuf messages): lowerCamelCase
//! keys, 64-bit integers as strings or numbers, enums as integers or as their names.

use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use serde_json::Value;

/// Errors of reading OTLP/JSON.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// Not JSON, or JSON of the wrong shape or types.
    #[error("invalid OTLP/JSON: {0}")]
    Invalid(#[from] serde_json::Error),
}

/// Parses an OTLP/JSON `ExportMetricsServiceRequest`.
pub fn metrics_request_from_json(body: &[u8]) -> Result<ExportMetricsServiceRequest, JsonError> {
    let mut value: Value = serde_json::from_slice(body)?;
    enum_names_to_numbers(&mut value);
    Ok(serde_json::from_value(value)?)
}

/// Renders an `ExportMetricsServiceResponse` as OTLP/JSON.
pub fn metrics_response_to_json(response: &ExportMetricsServiceResponse) -> Vec<u8> {
    // Serializing a plain message to a Vec cannot fail; an empty object is a valid fallback.
    serde_json::to_vec(response).unwrap_or_else(|_| b"{}".to_vec())
}

/// The spec lets enums be written by name; the generated serde only reads numbers.
fn enum_names_to_numbers(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                if key == "aggregationTemporality"
                    && let Value::String(name) = value
                {
                    let n = match name.as_str() {
                        "AGGREGATION_TEMPORALITY_UNSPECIFIED" => Some(0),
                        "AGGREGATION_TEMPORALITY_DELTA" => Some(1),
                        "AGGREGATION_TEMPORALITY_CUMULATIVE" => Some(2),
                        _ => None,
                    };
                    if let Some(n) = n {
                        *value = Value::from(n);
                    }
                } else {
                    enum_names_to_numbers(value);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(enum_names_to_numbers),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};

    #[test]
    fn reads_the_spec_shapes() {
        let body =
            br#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"host.name","value":{"stringValue":"n1"}}]},
          "scopeMetrics":[{"scope":{"name":"s"},"metrics":[{"name":"c","unit":"1","sum":{
            "aggregationTemporality":"AGGREGATION_TEMPORALITY_CUMULATIVE","isMonotonic":true,
            "dataPoints":[{"asInt":"42","startTimeUnixNano":"1","timeUnixNano":"2",
              "attributes":[{"key":"n","value":{"intValue":"7"}}]}]}}]}]}]}"#;
        let req = metrics_request_from_json(body).unwrap();
        let m = &req.resource_metrics[0].scope_metrics[0].metrics[0];
        let Some(metric::Data::Sum(s)) = &m.data else { panic!("not a sum") };
        assert_eq!(s.aggregation_temporality, 2);
        assert_eq!(s.data_points[0].value, Some(number_data_point::Value::AsInt(42)));
        assert_eq!(s.data_points[0].time_unix_nano, 2);
        assert!(metrics_request_from_json(br#"{"resourceMetrics":"nope"}"#).is_err());
        assert!(metrics_request_from_json(b"\x00\x01").is_err());
    }
}
