//! Component and pipeline ids: `type[/name]` and `signal[/name]`, with otelcol's rules.

use std::fmt;

use smol_str::SmolStr;

use crate::model::Signal;

/// A component id such as `otlp` or `prometheusremotewrite/backup`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ComponentId {
    /// The component type, e.g. `otlp`.
    pub kind_type: SmolStr,
    /// The optional instance name after the first `/`.
    pub name: Option<SmolStr>,
}

impl ComponentId {
    /// Parses `type[/name]`; the type is `[a-zA-Z][0-9a-zA-Z_]{0,62}`, the name non-empty without spaces.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (kind_type, name) = match text.split_once('/') {
            Some((t, n)) => (t.trim(), Some(n.trim())),
            None => (text.trim(), None),
        };
        let mut chars = kind_type.chars();
        let type_ok = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
            && kind_type.len() <= 63;
        if !type_ok {
            return Err(format!(
                "invalid component id `{text}`: the type must start with a letter and contain only letters, digits and _"
            ));
        }
        if let Some(n) = name {
            if n.is_empty() {
                return Err(format!("invalid component id `{text}`: the part after / must not be empty"));
            }
            if n.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(format!("invalid component id `{text}`: the name must not contain spaces"));
            }
        }
        Ok(ComponentId { kind_type: kind_type.into(), name: name.map(SmolStr::from) })
    }

    /// An id with a type and no name.
    pub fn of_type(kind_type: &str) -> Self {
        ComponentId { kind_type: kind_type.into(), name: None }
    }
}

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{}/{}", self.kind_type, n),
            None => f.write_str(&self.kind_type),
        }
    }
}

/// A pipeline id such as `metrics` or `flows/dns`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PipelineId {
    /// The signal the pipeline carries.
    pub signal: Signal,
    /// The optional name after the first `/`.
    pub name: Option<SmolStr>,
}

impl PipelineId {
    /// Parses `metrics[/name]` or `flows[/name]`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (signal, name) = match text.split_once('/') {
            Some((s, n)) => (s, Some(n)),
            None => (text, None),
        };
        let signal = match signal {
            "metrics" => Signal::Metrics,
            "flows" => Signal::Flows,
            "traces" | "logs" | "profiles" => {
                return Err(format!(
                    "pipeline `{text}`: fovea carries no {signal}; valid pipeline signals: metrics, flows"
                ));
            }
            other => {
                return Err(format!("unknown pipeline signal `{other}`; valid pipeline signals: metrics, flows"));
            }
        };
        if name == Some("") {
            return Err(format!("invalid pipeline id `{text}`: the part after / must not be empty"));
        }
        Ok(PipelineId { signal, name: name.map(SmolStr::from) })
    }
}

impl fmt::Display for PipelineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{}/{}", self.signal, n),
            None => write!(f, "{}", self.signal),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        let id = ComponentId::parse("otlp/backup").unwrap();
        assert_eq!((id.kind_type.as_str(), id.name.as_deref()), ("otlp", Some("backup")));
        assert_eq!(id.to_string(), "otlp/backup");
        assert!(ComponentId::parse("otlp/").is_err());
        assert!(ComponentId::parse("9otlp").is_err());
        assert!(PipelineId::parse("traces").unwrap_err().contains("valid pipeline signals"));
        assert_eq!(PipelineId::parse("flows/dns").unwrap().to_string(), "flows/dns");
    }
}
