//! Listen addresses, read the same way for every server fovea runs (the `otlp` receiver, the
//! `prometheus` exporter, the extensions and the own-telemetry endpoint): `host:port`, where
//! host is an IPv4 address, `[IPv6]`, a host name such as `localhost`, or empty for every
//! interface (`:4317`, as otelcol and Go accept).

use std::fmt;

use crate::config::shorten;

/// A checked `host:port` to listen on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddress {
    /// The host as written, without IPv6 brackets; empty means every interface.
    pub host: String,
    /// The port (0 = any free port).
    pub port: u16,
}

impl ListenAddress {
    /// Parses `host:port`; the error says what is wrong and shows examples.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!(
                "`{}` is not host:port ({why}); write e.g. \"0.0.0.0:4317\", \"127.0.0.1:8888\", \"localhost:9464\" or \"[::]:4318\"",
                shorten(text)
            )
        };
        let Some((host, port)) = text.rsplit_once(':') else { return Err(bad("no port")) };
        if port.is_empty() {
            return Err(bad("no port after `:`"));
        }
        let port: u16 = port.parse().map_err(|_| bad("the port must be a number from 0 to 65535"))?;
        let host = match host.strip_prefix('[') {
            Some(v6) => {
                let v6 = v6.strip_suffix(']').ok_or_else(|| bad("`[` without `]`"))?;
                v6.parse::<std::net::Ipv6Addr>().map_err(|_| bad("not an IPv6 address inside [ ]"))?;
                v6
            }
            None if host.contains(':') => return Err(bad("write IPv6 addresses in brackets, [::1]:port")),
            None => host,
        };
        let name_ok = host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
        if !host.is_empty() && !host.contains(':') && !name_ok {
            return Err(bad("the host must be an IP address or a host name"));
        }
        Ok(ListenAddress { host: host.to_string(), port })
    }

    /// What to hand to `bind` (host names are resolved there): every interface for an empty host.
    pub fn bind_target(&self) -> String {
        match self.host.as_str() {
            "" => format!("0.0.0.0:{}", self.port),
            h if h.contains(':') => format!("[{h}]:{}", self.port),
            h => format!("{h}:{}", self.port),
        }
    }
}

impl fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rule_for_every_listener() {
        for (text, target) in [
            ("0.0.0.0:4317", "0.0.0.0:4317"),
            ("127.0.0.1:0", "127.0.0.1:0"),
            ("localhost:28888", "localhost:28888"),
            ("node-1.example:9464", "node-1.example:9464"),
            (":8888", "0.0.0.0:8888"),
            ("[::]:4318", "[::]:4318"),
            ("[::1]:8888", "[::1]:8888"),
        ] {
            assert_eq!(ListenAddress::parse(text).map(|a| a.bind_target()), Ok(target.to_string()), "{text}");
        }
        for (text, why) in [
            ("notanaddr", "no port"),
            ("127.0.0.1:", "no port after `:`"),
            ("127.0.0.1:70000", "from 0 to 65535"),
            ("::1:8888", "in brackets"),
            ("[::1:8888", "without `]`"),
            ("[nope]:1", "not an IPv6 address"),
            ("bad host:1", "an IP address or a host name"),
            ("a..b:1", "an IP address or a host name"),
        ] {
            let err = ListenAddress::parse(text).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
    }
}
