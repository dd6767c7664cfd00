//! Name patterns with `*` (any run of characters) and `?` (one character), for interface names
//! (`veth*`, `eth?`) and counter names (`TcpExt:Tcp*`).

use std::fmt;

use serde::{Deserialize, Deserializer};

/// A glob pattern over names.
#[derive(Clone, PartialEq, Eq)]
pub struct Pattern(String);

impl Pattern {
    /// A pattern from its text.
    pub fn new(text: impl Into<String>) -> Self {
        Pattern(text.into())
    }

    /// The pattern text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when the pattern has no wildcard (it names exactly one thing).
    pub fn is_literal(&self) -> bool {
        !self.0.contains(['*', '?'])
    }

    /// True when `name` matches the whole pattern.
    pub fn matches(&self, name: &str) -> bool {
        glob(self.0.as_bytes(), name.as_bytes())
    }
}

/// Iterative glob match with backtracking to the last `*`; linear in practice, no allocation.
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == name[n]) {
            p += 1;
            n += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, n));
            p += 1;
        } else if let Some((sp, sn)) = star {
            p = sp + 1;
            n = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text.is_empty() {
            return Err(serde::de::Error::custom("a pattern must not be empty"));
        }
        Ok(Pattern(text))
    }
}

/// True when `name` matches any of `patterns`.
pub fn any_match(patterns: &[Pattern], name: &str) -> bool {
    patterns.iter().any(|p| p.matches(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let cases = [
            ("veth*", "veth1a2b", true),
            ("veth*", "eth0", false),
            ("eth?", "eth0", true),
            ("eth?", "eth10", false),
            ("*", "", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("TcpExt:Tcp*", "TcpExt:TcpTimeouts", true),
            ("lo", "lo", true),
        ];
        for (p, n, want) in cases {
            assert_eq!(Pattern::new(p).matches(n), want, "{p} vs {n}");
        }
    }
}
