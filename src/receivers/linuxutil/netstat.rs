//! Network-stack counters of one network namespace, read from `/proc/net/{snmp,netstat,snmp6}`.
//!
//! `snmp` and `netstat` are pairs of lines per group, a header line naming the counters and a
//! value line with as many integers:
//!
//! ```text
//! Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens ...
//! Tcp: 1 200 120000 -1 25 ...
//! ```
//!
//! `snmp6` (absent when IPv6 is disabled) has one `Ip6InReceives 12` pair per line; its group is
//! the name's prefix up to the first `6` (`Ip6`, `Icmp6`, `Udp6`, `UdpLite6`).
//!
//! [`NetstatReader`] keeps its counters and read buffer between calls: when the kernel prints the
//! same keys as last time (the normal case) a read allocates nothing.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use smol_str::SmolStr;

use super::error::LinuxutilError;

/// Where the counters of the agent's own network namespace live.
pub const DEFAULT_PROC_NET: &str = "/proc/net";

/// One kernel counter, e.g. group `TcpExt`, name `ListenDrops`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetstatCounter {
    /// Group as the kernel names it: `Ip`, `Icmp`, `IcmpMsg`, `Tcp`, `Udp`, `UdpLite`, `TcpExt`,
    /// `IpExt`, `MPTcpExt`, `Ip6`, `Icmp6`, `Udp6`, `UdpLite6`, or a group a newer kernel adds.
    pub group: SmolStr,
    /// Counter name within the group, without the group prefix (`InReceives`, not
    /// `Ip6InReceives`).
    pub name: SmolStr,
    /// The value. Signed because a few fields are (`Tcp MaxConn` is -1 when there is no limit),
    /// and OTLP integer points are i64; an unsigned value above `i64::MAX` (2^63, centuries of
    /// traffic) saturates there.
    pub value: i64,
}

/// Reads the counters of one `/proc/net`-like directory, reusing its buffers between reads.
#[derive(Debug, Default)]
pub struct NetstatReader {
    counters: Vec<NetstatCounter>,
    buf: Vec<u8>,
    path: PathBuf,
}

/// Files of a `/proc/net` directory, in the order they are read, and whether each must exist.
const FILES: [(&str, Layout, bool); 3] = [
    ("snmp", Layout::HeaderValuePairs, true),
    ("netstat", Layout::HeaderValuePairs, true),
    // Absent when the kernel runs with IPv6 disabled.
    ("snmp6", Layout::NameValueLines, false),
];

#[derive(Debug, Clone, Copy)]
enum Layout {
    HeaderValuePairs,
    NameValueLines,
}

impl NetstatReader {
    /// Creates a reader with empty buffers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads `snmp`, `netstat` and (if present) `snmp6` from `dir` and returns every counter.
    ///
    /// `dir` is [`DEFAULT_PROC_NET`] for the agent's namespace, `/proc/<pid>/net` for the
    /// namespace of process `pid`, or `/proc/thread-self/net` inside
    /// [`run_in_netns`](super::netns::run_in_netns) (`/proc/self` names the main thread, which
    /// stays in the agent's namespace). On error no counters are kept.
    pub fn read(&mut self, dir: &Path) -> Result<&[NetstatCounter], LinuxutilError> {
        let mut out = Refill { counters: &mut self.counters, len: 0 };
        let result = read_files(dir, &mut self.path, &mut self.buf, &mut out);
        let len = out.len;
        match result {
            Ok(()) => self.counters.truncate(len),
            Err(err) => {
                self.counters.clear();
                return Err(err);
            }
        }
        Ok(&self.counters)
    }

    /// The counters of the last successful [`read`](Self::read).
    pub fn counters(&self) -> &[NetstatCounter] {
        &self.counters
    }

    /// The value of one counter of the last read, e.g. `get("Icmp", "InEchos")`.
    pub fn get(&self, group: &str, name: &str) -> Option<i64> {
        self.counters.iter().find(|c| c.group == group && c.name == name).map(|c| c.value)
    }
}

fn read_files(dir: &Path, path: &mut PathBuf, buf: &mut Vec<u8>, out: &mut Refill<'_>) -> Result<(), LinuxutilError> {
    for (file, layout, required) in FILES {
        path.clear();
        path.push(dir);
        path.push(file);
        match read_to_buf(path, buf) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound && !required => continue,
            Err(source) => {
                return Err(LinuxutilError::Read { path: path.clone(), source });
            }
        }
        let text = as_text(path, buf)?;
        match layout {
            Layout::HeaderValuePairs => parse_header_value_pairs(path, text, out)?,
            Layout::NameValueLines => parse_name_value_lines(path, text, out)?,
        }
    }
    Ok(())
}

fn read_to_buf(path: &Path, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    File::open(path)?.read_to_end(buf)?;
    Ok(())
}

fn as_text<'a>(path: &Path, buf: &'a [u8]) -> Result<&'a str, LinuxutilError> {
    std::str::from_utf8(buf).map_err(|e| {
        let line = 1 + buf[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count();
        malformed(path, line, "the line is not valid UTF-8".to_owned())
    })
}

/// Overwrites a counter vector in place, so unchanged keys cost no allocation.
struct Refill<'a> {
    counters: &'a mut Vec<NetstatCounter>,
    len: usize,
}

impl Refill<'_> {
    fn put(&mut self, group: &str, name: &str, value: i64) {
        match self.counters.get_mut(self.len) {
            Some(c) => {
                if c.group != group {
                    c.group = SmolStr::new(group);
                }
                if c.name != name {
                    c.name = SmolStr::new(name);
                }
                c.value = value;
            }
            None => self.counters.push(NetstatCounter { group: SmolStr::new(group), name: SmolStr::new(name), value }),
        }
        self.len += 1;
    }
}

/// Parses the `Group: names...` / `Group: values...` layout of `snmp` and `netstat`.
fn parse_header_value_pairs(path: &Path, text: &str, out: &mut Refill<'_>) -> Result<(), LinuxutilError> {
    let mut lines = text.lines().enumerate().map(|(i, line)| (i + 1, line)).filter(|(_, line)| !line.trim().is_empty());
    while let Some((header_no, header)) = lines.next() {
        let (group, names) = split_group(header).ok_or_else(|| {
            malformed(path, header_no, format!("expected a header line 'Group: Name ...', found '{}'", shorten(header)))
        })?;
        let Some((values_no, values_line)) = lines.next() else {
            return Err(malformed(
                path,
                header_no,
                format!("the header line of group {group} is not followed by a value line"),
            ));
        };
        let (value_group, values) = split_group(values_line).ok_or_else(|| {
            malformed(
                path,
                values_no,
                format!("expected a value line '{group}: 1 2 ...', found '{}'", shorten(values_line)),
            )
        })?;
        if value_group != group {
            return Err(malformed(
                path,
                values_no,
                format!(
                    "this value line is for group {value_group} but the header line \
                     {header_no} above it is for group {group}"
                ),
            ));
        }
        let mut names_iter = names.split_ascii_whitespace();
        let mut values_iter = values.split_ascii_whitespace();
        loop {
            match (names_iter.next(), values_iter.next()) {
                (Some(name), Some(token)) => {
                    let value = parse_value(token).ok_or_else(|| {
                        malformed(path, values_no, format!("value '{token}' of {group} {name} is not an integer"))
                    })?;
                    out.put(group, name, value);
                }
                (None, None) => break,
                _ => {
                    return Err(malformed(
                        path,
                        values_no,
                        format!(
                            "group {group} has {} names on header line {header_no} but {} \
                             values on this line",
                            names.split_ascii_whitespace().count(),
                            values.split_ascii_whitespace().count()
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Parses the `Ip6InReceives 12` layout of `snmp6`.
fn parse_name_value_lines(path: &Path, text: &str, out: &mut Refill<'_>) -> Result<(), LinuxutilError> {
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let mut fields = line.split_ascii_whitespace();
        let (Some(key), Some(token), None) = (fields.next(), fields.next(), fields.next()) else {
            if line.trim().is_empty() {
                continue;
            }
            return Err(malformed(path, line_no, format!("expected 'Name value', found '{}'", shorten(line))));
        };
        // The group is the prefix up to and including the first '6': Ip6, Icmp6, Udp6, UdpLite6.
        let split = key.find('6').map(|i| i + 1).filter(|&i| i > 1 && i < key.len()).ok_or_else(|| {
            malformed(path, line_no, format!("counter '{key}' does not start with a group such as Ip6 or Udp6"))
        })?;
        let (group, name) = key.split_at(split);
        let value = parse_value(token)
            .ok_or_else(|| malformed(path, line_no, format!("value '{token}' of {key} is not an integer")))?;
        out.put(group, name, value);
    }
    Ok(())
}

/// Splits `Group: rest` into the group and the rest; the group is alphanumeric.
fn split_group(line: &str) -> Option<(&str, &str)> {
    let (group, rest) = line.split_once(':')?;
    let valid = !group.is_empty() && group.bytes().all(|b| b.is_ascii_alphanumeric());
    valid.then_some((group, rest))
}

/// Parses a kernel integer: signed fields print `-1`, the others are unsigned 64-bit.
fn parse_value(token: &str) -> Option<i64> {
    if token.starts_with('-') {
        token.parse::<i64>().ok()
    } else {
        token.parse::<u64>().ok().map(|v| i64::try_from(v).unwrap_or(i64::MAX))
    }
}

fn malformed(path: &Path, line: usize, reason: String) -> LinuxutilError {
    LinuxutilError::Malformed { path: path.to_owned(), line, reason }
}

/// The start of a line, for error messages.
fn shorten(line: &str) -> &str {
    match line.char_indices().nth(60) {
        Some((i, _)) => &line[..i],
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn testdata(dir: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src/receivers/linuxutil/testdata").join(dir)
    }

    #[test]
    fn reads_every_counter_of_a_real_proc_net() {
        let mut reader = NetstatReader::new();
        let count = reader.read(&testdata("proc_net")).expect("fixture parses").len();

        // Counted with awk on the fixture: (fields - 1) of every header line of snmp and
        // netstat, plus the lines of snmp6.
        assert_eq!(count, EXPECTED_FIXTURE_COUNTERS);
        assert_eq!(reader.get("Tcp", "MaxConn"), Some(-1));
        assert_eq!(reader.get("Ip", "DefaultTTL"), Some(64));
        assert_eq!(reader.get("Ip", "InReceives"), Some(4461));
        assert_eq!(reader.get("Icmp", "InDestUnreachs"), Some(1));
        assert_eq!(reader.get("IcmpMsg", "InType3"), Some(1));
        assert_eq!(reader.get("TcpExt", "TCPHPAcks"), Some(72));
        assert_eq!(reader.get("TcpExt", "TW"), Some(12));
        assert_eq!(reader.get("IpExt", "InOctets"), Some(126_812_253));
        assert_eq!(reader.get("MPTcpExt", "MPCapableSYNRX"), Some(0));
        assert_eq!(reader.get("Ip6", "InReceives"), Some(1));
        assert_eq!(reader.get("Icmp6", "OutMsgs"), Some(9));
        assert_eq!(reader.get("UdpLite6", "InDatagrams"), Some(0));
        assert_eq!(reader.get("Tcp", "NoSuchCounter"), None);

        let first = &reader.counters()[0];
        assert_eq!((first.group.as_str(), first.name.as_str(), first.value), ("Ip", "Forwarding", 2));
    }

    /// Total counters in `testdata/proc_net`, see `reads_every_counter_of_a_real_proc_net`.
    const EXPECTED_FIXTURE_COUNTERS: usize = 20 + 29 + 1 + 15 + 9 + 9 + 135 + 18 + 76 + 90;

    #[test]
    fn rereading_reuses_the_counter_storage() {
        let mut reader = NetstatReader::new();
        reader.read(&testdata("proc_net")).expect("fixture parses");
        let storage = reader.counters().as_ptr();
        let name = reader.counters()[0].name.clone();
        reader.read(&testdata("proc_net")).expect("fixture parses");
        assert_eq!(reader.counters().as_ptr(), storage);
        assert_eq!(reader.counters()[0].name, name);
        assert_eq!(reader.counters().len(), EXPECTED_FIXTURE_COUNTERS);
    }

    #[test]
    fn a_changed_key_set_is_refilled_and_truncated() {
        let path = Path::new("/test/snmp");
        let mut counters = Vec::new();
        let mut out = Refill { counters: &mut counters, len: 0 };
        parse_header_value_pairs(path, "A: x y z\nA: 1 2 3\n", &mut out).expect("parses");
        let mut out = Refill { counters: &mut counters, len: 0 };
        parse_header_value_pairs(path, "A: x w\nA: 4 5\n", &mut out).expect("parses");
        let len = out.len;
        counters.truncate(len);
        let got: Vec<_> = counters.iter().map(|c| (c.group.as_str(), c.name.as_str(), c.value)).collect();
        assert_eq!(got, [("A", "x", 4), ("A", "w", 5)]);
    }

    #[test]
    fn signed_and_huge_values() {
        assert_eq!(parse_value("-1"), Some(-1));
        assert_eq!(parse_value("0"), Some(0));
        assert_eq!(parse_value("18446744073709551615"), Some(i64::MAX));
        assert_eq!(parse_value("9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_value("12a"), None);
        assert_eq!(parse_value(""), None);
    }

    fn error_of(dir: &str) -> (PathBuf, usize, String, String) {
        let mut reader = NetstatReader::new();
        let err = reader.read(&testdata(dir)).expect_err("fixture is malformed");
        assert!(reader.counters().is_empty(), "no partial counters kept");
        let message = err.to_string();
        match err {
            LinuxutilError::Malformed { path, line, reason } => (path, line, reason, message),
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    #[test]
    fn a_value_line_shorter_than_its_header_names_file_and_line() {
        let (path, line, reason, message) = error_of("malformed_count");
        assert_eq!(path, testdata("malformed_count").join("netstat"));
        assert_eq!(line, 4);
        assert_eq!(reason, "group IpExt has 18 names on header line 3 but 17 values on this line");
        assert!(message.starts_with(&format!("{}:4: group IpExt", path.display())), "{message}");
    }

    #[test]
    fn a_non_numeric_value_names_file_line_and_counter() {
        let (path, line, reason, _) = error_of("malformed_value");
        assert_eq!(path, testdata("malformed_value").join("snmp"));
        assert_eq!(line, 8);
        assert_eq!(reason, "value 'x7' of Tcp ActiveOpens is not an integer");
    }

    #[test]
    fn mismatched_groups_and_missing_value_lines_are_errors() {
        let path = Path::new("/test/snmp");
        let mut counters = Vec::new();
        let mut out = Refill { counters: &mut counters, len: 0 };
        let err = parse_header_value_pairs(path, "Ip: a\nTcp: 1\n", &mut out).expect_err("bad");
        assert_eq!(
            err.to_string().split(';').next(),
            Some(
                "/test/snmp:2: this value line is for group Tcp but the header line 1 above it \
                 is for group Ip"
            )
        );
        let err = parse_header_value_pairs(path, "Ip: a\nIp: 1\nTcp: b\n", &mut out).expect_err("bad");
        assert!(matches!(err, LinuxutilError::Malformed { line: 3, .. }), "{err}");
        let err = parse_header_value_pairs(path, "no colon here\n", &mut out).expect_err("bad");
        assert!(matches!(err, LinuxutilError::Malformed { line: 1, .. }), "{err}");
    }

    #[test]
    fn snmp6_lines_are_split_at_the_group_digit() {
        let path = Path::new("/test/snmp6");
        let mut counters = Vec::new();
        let mut out = Refill { counters: &mut counters, len: 0 };
        let text = "Ip6InReceives \t 7\nIcmp6OutType143 2\nUdpLite6InErrors 0\n";
        parse_name_value_lines(path, text, &mut out).expect("parses");
        let got: Vec<_> = counters.iter().map(|c| (c.group.as_str(), c.name.as_str(), c.value)).collect();
        assert_eq!(got, [("Ip6", "InReceives", 7), ("Icmp6", "OutType143", 2), ("UdpLite6", "InErrors", 0)]);
        let mut out = Refill { counters: &mut counters, len: 0 };
        let err = parse_name_value_lines(path, "Ip6A 1\nTcpNoSix 2\n", &mut out).expect_err("bad");
        assert!(matches!(err, LinuxutilError::Malformed { line: 2, .. }), "{err}");
    }

    #[test]
    fn a_missing_required_file_is_a_read_error_naming_it() {
        let mut reader = NetstatReader::new();
        let err = reader.read(Path::new("/nonexistent/fovea")).expect_err("missing");
        assert!(err.to_string().starts_with("cannot read /nonexistent/fovea/snmp: No such file"), "{err}");
    }
}
