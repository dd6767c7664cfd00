//! Durations written the way otelcol users write them: `10s`, `200ms`, `5m`, `1h30m`.

use std::time::Duration;

use serde::{Deserialize, Deserializer, de};

/// Deserializes a duration string (`10s`, `200ms`, `1m30s`); `0` is allowed and means zero.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = DurationText::deserialize(d)?;
    parse(&text.0).map_err(de::Error::custom)
}

/// Like [`deserialize`] for optional fields.
pub fn deserialize_option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = Option::<DurationText>::deserialize(d)?;
    text.map(|t| parse(&t.0).map_err(de::Error::custom)).transpose()
}

/// Parses `10s`, `250ms`, `1h30m`, `0`.
pub fn parse(text: &str) -> Result<Duration, String> {
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(text)
        .map_err(|_| format!("invalid duration `{text}`: write a number with a unit, such as 200ms, 10s, 5m or 1h"))
}

/// Formats a duration the way it is written in config files (`10s`, `200ms`).
pub fn format(d: Duration) -> String {
    humantime::format_duration(d).to_string().replace(' ', "")
}

struct DurationText(String);

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = DurationText;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a duration such as 10s or 200ms")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationText, E> {
                Ok(DurationText(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DurationText, E> {
                if v == 0 {
                    Ok(DurationText("0".into()))
                } else {
                    Err(E::custom(format!("a duration needs a unit: write `{v}s` or `{v}ms`")))
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DurationText, E> {
                self.visit_i64(v as i64)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        assert_eq!(parse("200ms").unwrap(), Duration::from_millis(200));
        assert_eq!(parse("1m30s").unwrap(), Duration::from_secs(90));
        assert!(parse("10").unwrap_err().contains("200ms"));
        assert_eq!(format(Duration::from_secs(10)), "10s");
    }
}
