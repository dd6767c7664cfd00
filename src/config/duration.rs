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

/// Parses a duration exactly as otelcol does (Go's `time.ParseDuration`): a sequence of decimal
/// numbers, each with an optional fraction and a unit (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`), such
/// as `300ms`, `1.5h` or `2h45m`; `0` alone needs no unit. Spaces, other units (`1y`, `2 minutes`)
/// and durations above Go's limit (about 292 years) are refused. Negative durations parse in Go,
/// but no fovea setting takes one, so they are refused here.
pub fn parse(text: &str) -> Result<Duration, String> {
    let shown = super::error::shorten(text);
    let invalid = |why: &str| {
        format!("invalid duration `{shown}`: {why}; write a number with a unit, such as 200ms, 10s, 5m or 1h30m")
    };
    let (negative, mut rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid("it is empty"));
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (whole, after) = rest.split_at(digits);
        let (fraction, after) = match after.strip_prefix('.') {
            Some(f) => {
                let n = f.bytes().take_while(u8::is_ascii_digit).count();
                f.split_at(n)
            }
            None => ("", after),
        };
        if whole.is_empty() && fraction.is_empty() {
            return Err(invalid(&format!("expected a number at `{}`", super::error::shorten(rest))));
        }
        let unit_len = after.find(|c: char| c == '.' || c.is_ascii_digit()).unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(invalid("the number has no unit")),
            other => {
                return Err(invalid(&format!(
                    "unknown unit `{}`; valid units: ns, us, ms, s, m, h",
                    super::error::shorten(other)
                )));
            }
        };
        // Exact integer arithmetic; Go truncates the fraction to whole nanoseconds the same way.
        let mut part: u128 = 0;
        for d in whole.bytes() {
            part = part * 10 + u128::from(d - b'0');
            if part * scale > MAX_NANOS {
                return Err(too_large(&shown));
            }
        }
        part *= scale;
        let mut denominator: u128 = 1;
        let mut numerator: u128 = 0;
        for d in fraction.bytes().take(18) {
            numerator = numerator * 10 + u128::from(d - b'0');
            denominator *= 10;
        }
        part += numerator * scale / denominator;
        total += part;
        if total > MAX_NANOS {
            return Err(too_large(&shown));
        }
        rest = next;
    }
    if negative && total > 0 {
        return Err(invalid("durations cannot be negative"));
    }
    Ok(Duration::from_nanos(total as u64))
}

/// Go's durations are signed 64-bit nanoseconds: at most 2562047h47m16.854775807s.
const MAX_NANOS: u128 = i64::MAX as u128;

fn too_large(shown: &str) -> String {
    format!(
        "invalid duration `{shown}`: too large; the largest duration is 2562047h47m16.854775807s (about 292 years), \
         write it with a unit, such as 24h or 8760h"
    )
}

/// Formats a duration as Go's `Duration.String` does (`49.0132518s`, `1h2m3.5s`, `1.5ms`,
/// `0s`): what otelcol users see in otelcol's own output.
pub fn format_go(d: Duration) -> String {
    fn decimal(n: u128, unit: u128) -> String {
        let (whole, fraction) = (n / unit, n % unit);
        if fraction == 0 {
            return whole.to_string();
        }
        let width = unit.to_string().len() - 1;
        let digits = format!("{fraction:0width$}");
        format!("{whole}.{}", digits.trim_end_matches('0'))
    }
    let n = d.as_nanos();
    match n {
        0 => "0s".to_string(),
        1..1_000 => format!("{n}ns"),
        1_000..1_000_000 => format!("{}\u{b5}s", decimal(n, 1_000)),
        1_000_000..1_000_000_000 => format!("{}ms", decimal(n, 1_000_000)),
        _ => {
            let (h, m) = (n / 3_600_000_000_000, n / 60_000_000_000 % 60);
            let s = decimal(n % 60_000_000_000, 1_000_000_000);
            match (h, m) {
                (0, 0) => format!("{s}s"),
                (0, m) => format!("{m}m{s}s"),
                (h, m) => format!("{h}h{m}m{s}s"),
            }
        }
    }
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

    #[test]
    fn formats_as_go_does() {
        for (nanos, text) in [
            (0, "0s"),
            (999, "999ns"),
            (1_500, "1.5\u{b5}s"),
            (1_500_000, "1.5ms"),
            (49_013_251_800, "49.0132518s"),
            (3_723_500_000_000, "1h2m3.5s"),
            (120_000_000_000, "2m0s"),
            (3_600_000_000_000, "1h0m0s"),
        ] {
            assert_eq!(format_go(Duration::from_nanos(nanos)), text);
            assert_eq!(parse(text), Ok(Duration::from_nanos(nanos)), "{text} parses back");
        }
    }

    #[test]
    fn follows_go_parse_duration() {
        let ok = [
            ("0", 0),
            ("+0", 0),
            ("-0", 0),
            ("5s", 5_000_000_000),
            ("1.5h", 5_400_000_000_000),
            ("2h45m", 9_900_000_000_000),
            (".5s", 500_000_000),
            ("5.s", 5_000_000_000),
            ("1h1m1s1ms1us1ns", 3_661_001_001_001),
            ("3\u{b5}s", 3_000),
            ("3\u{3bc}s", 3_000),
            ("1.0000000001s", 1_000_000_000),
            ("2562047h47m16.854775807s", i64::MAX as u64),
        ];
        for (text, nanos) in ok {
            assert_eq!(parse(text), Ok(Duration::from_nanos(nanos)), "{text}");
        }
        for (text, why) in [
            ("5 s", "unknown unit ` s`"),
            ("2 minutes", "unknown unit ` minutes`"),
            ("1y", "unknown unit `y`"),
            ("1d", "unknown unit `d`"),
            ("", "it is empty"),
            ("s", "expected a number at `s`"),
            ("10", "the number has no unit"),
            (".s", "expected a number"),
            ("-5s", "cannot be negative"),
            ("1h ", "unknown unit `h `"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
            assert!(err.ends_with("10s, 5m or 1h30m"), "{text}: {err}");
        }
        for text in ["2562047h47m16.854775808s", "9223372036854775808ns", "3000000h", "99999999999999999999999h"] {
            let err = parse(text).unwrap_err();
            assert!(err.contains("too large; the largest duration is 2562047h47m16.854775807s"), "{text}: {err}");
        }
    }
}
