//! OTLP/JSON (the OTLP specification's JSON mapping of the protobuf messages): lowerCamelCase
//! keys, 64-bit integers as strings or numbers, enums as integers or as their names, and doubles
//! as numbers or as the proto3 JSON strings `"NaN"`, `"Infinity"`, `"-Infinity"` (or a number
//! in a string).
//!
//! The generated serde code reads oneofs (a point's `asInt`/`asDouble`, a metric's `gauge`/`sum`
//! ...) through `#[serde(flatten)]`, which turns any error inside them into "absent". Those
//! values are therefore checked here first, so a malformed one fails the request (400) with
//! its JSON path instead of becoming a silently refused point.

use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::metrics::v1::{ExponentialHistogram, Gauge, Histogram, Sum, Summary};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use serde_json::Value;

use crate::config::shorten;

/// Errors of reading OTLP/JSON.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// Not JSON, or JSON of the wrong shape or types.
    #[error("invalid OTLP/JSON: {0}")]
    Invalid(#[from] serde_json::Error),
    /// A value the generated reader would have dropped silently.
    #[error("invalid OTLP/JSON at {path}: {message}")]
    Field {
        /// JSON path of the value (`resourceMetrics[0].scopeMetrics[0].metrics[1].gauge`).
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// Parses an OTLP/JSON `ExportMetricsServiceRequest`.
pub fn metrics_request_from_json(body: &[u8]) -> Result<ExportMetricsServiceRequest, JsonError> {
    let mut value: Value = serde_json::from_slice(body)?;
    let mut path = String::new();
    normalize(&mut value, &mut path)?;
    Ok(ExportMetricsServiceRequest::deserialize(Lenient { value: &value, double: false })?)
}

/// Renders an `ExportMetricsServiceResponse` as OTLP/JSON.
pub fn metrics_response_to_json(response: &ExportMetricsServiceResponse) -> Vec<u8> {
    // Serializing a plain message to a Vec cannot fail; an empty object is a valid fallback.
    serde_json::to_vec(response).unwrap_or_else(|_| b"{}".to_vec())
}

/// Turns enum names into numbers (the spec allows names; the generated serde reads numbers) and
/// checks what `#[serde(flatten)]` would hide, tracking the JSON path in `path`.
fn normalize(v: &mut Value, path: &mut String) -> Result<(), JsonError> {
    let len = path.len();
    match v {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                match (key.as_str(), &*value) {
                    ("aggregationTemporality", Value::String(name)) => {
                        let n = match name.as_str() {
                            "AGGREGATION_TEMPORALITY_UNSPECIFIED" => Some(0),
                            "AGGREGATION_TEMPORALITY_DELTA" => Some(1),
                            "AGGREGATION_TEMPORALITY_CUMULATIVE" => Some(2),
                            _ => None,
                        };
                        if let Some(n) = n {
                            *value = Value::from(n);
                        }
                    }
                    ("asInt", v) => check_int(v).map_err(|message| field(path, message))?,
                    ("asDouble", v) => check_double(v).map_err(|message| field(path, message))?,
                    _ => {
                        normalize(value, path)?;
                        check_metric_data(key, value).map_err(|message| field(path, message))?;
                    }
                }
                path.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push_str(&format!("[{i}]"));
                normalize(item, path)?;
                path.truncate(len);
            }
        }
        _ => {}
    }
    Ok(())
}

fn field(path: &str, message: String) -> JsonError {
    JsonError::Field { path: path.to_string(), message }
}

fn check_int(v: &Value) -> Result<(), String> {
    let ok = match v {
        Value::Number(n) => n.is_i64() || n.is_u64() && n.as_u64().is_some_and(|u| u <= i64::MAX as u64),
        Value::String(s) => s.parse::<i64>().is_ok(),
        _ => false,
    };
    if ok { Ok(()) } else { Err(format!("{} is not a 64-bit integer", shorten(&v.to_string()))) }
}

fn check_double(v: &Value) -> Result<(), String> {
    let ok = match v {
        Value::Number(_) => true,
        Value::String(s) => special_double(s).is_some(),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{} is not a number, \"NaN\", \"Infinity\" or \"-Infinity\"", shorten(&v.to_string())))
    }
}

/// A metric's data oneof, read strictly (the flattened read would drop it on any error).
fn check_metric_data(key: &str, value: &Value) -> Result<(), String> {
    if !value.is_object() {
        return Ok(());
    }
    let lenient = Lenient { value, double: false };
    let result = match key {
        "gauge" => Gauge::deserialize(lenient).map(|_| ()),
        "sum" => Sum::deserialize(lenient).map(|_| ()),
        "histogram" => Histogram::deserialize(lenient).map(|_| ()),
        "exponentialHistogram" => ExponentialHistogram::deserialize(lenient).map(|_| ()),
        "summary" => Summary::deserialize(lenient).map(|_| ()),
        _ => Ok(()),
    };
    result.map_err(|e| e.to_string())
}

/// The keys of double fields in the metrics messages (the point's value, histogram statistics and
/// bounds, summary quantiles, an attribute's double).
const DOUBLE_KEYS: [&str; 8] = ["asDouble", "doubleValue", "sum", "min", "max", "explicitBounds", "quantile", "value"];

/// A double written as a proto3 JSON string: `"NaN"`, `"Infinity"`, `"-Infinity"` or a number.
fn special_double(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        // Rust also reads "inf" and "nan", which proto3 JSON does not allow.
        _ if s.bytes().all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b)) => s.parse().ok(),
        _ => None,
    }
}

/// A serde `Deserializer` over a JSON value that reads doubles written as strings; everything
/// else is read as serde_json reads it. `double` marks a value whose key is a double
/// ([`DOUBLE_KEYS`]), for the flattened oneof path, which asks for "any" value rather than a double.
#[derive(Clone, Copy)]
struct Lenient<'a> {
    value: &'a Value,
    double: bool,
}

macro_rules! delegate {
    ($($method:ident),*) => {
        $(fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, serde_json::Error> {
            self.value.$method(visitor)
        })*
    };
}

impl<'de> de::Deserializer<'de> for Lenient<'de> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, serde_json::Error> {
        match self.value {
            Value::String(s) if self.double && special_double(s).is_some() => {
                visitor.visit_f64(special_double(s).unwrap_or(f64::NAN))
            }
            Value::Object(_) => self.deserialize_map(visitor),
            Value::Array(_) => self.deserialize_seq(visitor),
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, serde_json::Error> {
        match self.value {
            Value::String(s) => match special_double(s) {
                Some(d) => visitor.visit_f64(d),
                None => self.value.deserialize_f64(visitor),
            },
            other => other.deserialize_f64(visitor),
        }
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, serde_json::Error> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, serde_json::Error> {
        match self.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, serde_json::Error> {
        match self.value {
            Value::Array(items) => visitor.visit_seq(Seq { items: items.iter(), double: self.double }),
            other => other.deserialize_seq(visitor),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, serde_json::Error> {
        match self.value {
            Value::Object(map) => visitor.visit_map(Map { entries: map.iter(), value: None }),
            other => other.deserialize_map(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        self.deserialize_map(visitor)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, serde_json::Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        self.value.deserialize_enum(name, variants, visitor)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        self.value.deserialize_unit_struct(name, visitor)
    }

    delegate!(
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_char,
        deserialize_str,
        deserialize_string,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_unit,
        deserialize_identifier,
        deserialize_ignored_any
    );
}

struct Seq<'a> {
    items: std::slice::Iter<'a, Value>,
    double: bool,
}

impl<'de> de::SeqAccess<'de> for Seq<'de> {
    type Error = serde_json::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, serde_json::Error> {
        match self.items.next() {
            Some(value) => seed.deserialize(Lenient { value, double: self.double }).map(Some),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct Map<'a> {
    entries: serde_json::map::Iter<'a>,
    value: Option<(&'a str, &'a Value)>,
}

impl<'de> de::MapAccess<'de> for Map<'de> {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, serde_json::Error> {
        match self.entries.next() {
            Some((key, value)) => {
                self.value = Some((key, value));
                seed.deserialize(key.as_str().into_deserializer()).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, serde_json::Error> {
        let (key, value) = self.value.take().ok_or_else(|| de::Error::custom("value requested before its key"))?;
        // Below a oneof read through `#[serde(flatten)]` every value is asked for as "any"
        // value, so doubles are known by their key.
        seed.deserialize(Lenient { value, double: DOUBLE_KEYS.contains(&key) })
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::any_value;
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

    #[test]
    fn special_doubles_are_read_everywhere_a_double_is() {
        let body = br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[
          {"name":"g","gauge":{"dataPoints":[{"asDouble":"NaN"},{"asDouble":"Infinity"},{"asDouble":"-Infinity"},{"asDouble":"2.5"},
            {"asDouble":1,"attributes":[{"key":"d","value":{"doubleValue":"-Infinity"}}]}]}},
          {"name":"h","histogram":{"dataPoints":[{"count":"1","sum":"Infinity","min":"NaN","max":"Infinity",
            "explicitBounds":[1,"Infinity"],"bucketCounts":["0","1","0"]}]}}]}]}]}"#;
        let req = metrics_request_from_json(body).unwrap();
        let metrics = &req.resource_metrics[0].scope_metrics[0].metrics;
        let Some(metric::Data::Gauge(g)) = &metrics[0].data else { panic!("not a gauge") };
        let values: Vec<f64> = g
            .data_points
            .iter()
            .map(|p| match p.value {
                Some(number_data_point::Value::AsDouble(d)) => d,
                ref other => panic!("{other:?}"),
            })
            .collect();
        assert!(values[0].is_nan());
        assert_eq!(&values[1..], &[f64::INFINITY, f64::NEG_INFINITY, 2.5, 1.0]);
        let attr = g.data_points[4].attributes[0].value.as_ref().and_then(|v| v.value.clone());
        assert_eq!(attr, Some(any_value::Value::DoubleValue(f64::NEG_INFINITY)));
        let Some(metric::Data::Histogram(h)) = &metrics[1].data else { panic!("not a histogram") };
        let p = &h.data_points[0];
        assert_eq!((p.sum, p.max), (Some(f64::INFINITY), Some(f64::INFINITY)));
        assert!(p.min.is_some_and(f64::is_nan));
        assert_eq!(p.explicit_bounds, vec![1.0, f64::INFINITY]);
    }

    #[test]
    fn malformed_oneof_values_fail_with_their_path() {
        for (body, expected) in [
            (
                r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"g","gauge":{"dataPoints":[{"asInt":"12"},{"asInt":"abc"}]}}]}]}]}"#,
                "invalid OTLP/JSON at resourceMetrics[0].scopeMetrics[0].metrics[0].gauge.dataPoints[1].asInt: \"abc\" is not a 64-bit integer",
            ),
            (
                r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"g","gauge":{"dataPoints":[{"asInt":1.5}]}}]}]}]}"#,
                "dataPoints[0].asInt: 1.5 is not a 64-bit integer",
            ),
            (
                r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"g","gauge":{"dataPoints":[{"asDouble":"inf"}]}}]}]}]}"#,
                "dataPoints[0].asDouble: \"inf\" is not a number, \"NaN\", \"Infinity\" or \"-Infinity\"",
            ),
            (
                r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"s","sum":{"dataPoints":"nope"}}]}]}]}"#,
                "at resourceMetrics[0].scopeMetrics[0].metrics[0].sum: invalid type: string \"nope\", expected a sequence",
            ),
        ] {
            let err = metrics_request_from_json(body.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        }
    }
}
