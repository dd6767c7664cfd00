//! Drop reason names read from the running kernel's BTF.
//!
//! `enum skb_drop_reason` changes between kernels (values are renumbered, reasons added), so
//! fovea keeps no table of its own: it reads the enum from `/sys/kernel/btf/vmlinux` once and
//! maps codes to names without the `SKB_DROP_REASON_` prefix (`NETFILTER_DROP`, `NO_SOCKET`).
//! aya does not expose BTF type iteration, hence this small parser of the BTF type section.

use std::collections::HashMap;
use std::path::Path;

/// Errors reading kernel BTF.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    /// The BTF file could not be read.
    #[error("cannot read BTF from {path}: {source}")]
    Read {
        /// File that failed.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The file is not well-formed BTF.
    #[error("malformed BTF in {path}: {what}")]
    Malformed {
        /// File that failed.
        path: String,
        /// What is wrong.
        what: &'static str,
    },
    /// The enum is not in this kernel's BTF (kernels before 5.17 have no drop reasons).
    #[error("enum {name} not found in {path}; drop reasons need Linux 5.17 or newer")]
    EnumNotFound {
        /// File searched.
        path: String,
        /// Enum looked for.
        name: String,
    },
}

/// The kernel's drop reasons: code to name, as the running kernel defines them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DropReasons {
    names: HashMap<u32, String>,
}

impl DropReasons {
    /// Reads `enum skb_drop_reason` from `/sys/kernel/btf/vmlinux`.
    pub fn from_kernel() -> Result<Self, BtfError> {
        Self::from_file(crate::ebpf::preflight::KERNEL_BTF)
    }

    /// Reads `enum skb_drop_reason` from a BTF file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, BtfError> {
        let path = path.as_ref();
        let data = std::fs::read(path).map_err(|source| BtfError::Read { path: path.display().to_string(), source })?;
        let shown = path.display().to_string();
        let values =
            enum_values(&data, "skb_drop_reason").map_err(|what| BtfError::Malformed { path: shown.clone(), what })?;
        let values = values.ok_or(BtfError::EnumNotFound { path: shown, name: "skb_drop_reason".into() })?;
        let names = values
            .into_iter()
            .map(|(name, value)| {
                let short = name.strip_prefix("SKB_DROP_REASON_").unwrap_or(&name).to_owned();
                (value as u32, short)
            })
            .collect();
        Ok(Self { names })
    }

    /// The name of `code` (e.g. `NETFILTER_DROP`), or `None` if this kernel has no such reason.
    pub fn name(&self, code: u32) -> Option<&str> {
        self.names.get(&code).map(String::as_str)
    }

    /// The code of `name` (with or without the `SKB_DROP_REASON_` prefix).
    pub fn code(&self, name: &str) -> Option<u32> {
        let short = name.strip_prefix("SKB_DROP_REASON_").unwrap_or(name);
        self.names.iter().find_map(|(code, n)| (n == short).then_some(*code))
    }

    /// Number of reasons known.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when no reasons are known.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

const BTF_MAGIC: u16 = 0xeb9f;
const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_ENUM64: u32 = 19;

/// Finds the enum called `wanted` in raw BTF and returns its enumerators, or `None`.
fn enum_values(data: &[u8], wanted: &str) -> Result<Option<Vec<(String, i64)>>, &'static str> {
    let u16_at = |off: usize| -> Result<u16, &'static str> {
        data.get(off..off + 2).map(|b| u16::from_le_bytes([b[0], b[1]])).ok_or("truncated")
    };
    let u32_at = |off: usize| -> Result<u32, &'static str> {
        data.get(off..off + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).ok_or("truncated")
    };
    if u16_at(0)? != BTF_MAGIC {
        return Err("bad magic (not little-endian BTF)");
    }
    let hdr_len = u32_at(4)? as usize;
    let type_off = u32_at(8)? as usize;
    let type_len = u32_at(12)? as usize;
    let str_off = u32_at(16)? as usize;
    let str_len = u32_at(20)? as usize;
    let types = hdr_len + type_off;
    let strings = hdr_len + str_off;
    if data.len() < types + type_len || data.len() < strings + str_len {
        return Err("sections beyond end of file");
    }
    let string = |off: u32| -> Result<&str, &'static str> {
        let start = strings + off as usize;
        let rest = data.get(start..strings + str_len).ok_or("string offset out of range")?;
        let end = rest.iter().position(|&b| b == 0).ok_or("unterminated string")?;
        std::str::from_utf8(&rest[..end]).map_err(|_| "string not UTF-8")
    };

    let mut off = types;
    let end = types + type_len;
    while off < end {
        let name_off = u32_at(off)?;
        let info = u32_at(off + 4)?;
        let kind = (info >> 24) & 0x1f;
        let vlen = (info & 0xffff) as usize;
        let body = off + 12;
        let body_len = match kind {
            KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
            KIND_ARRAY => 12,
            KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => vlen * 12,
            KIND_ENUM | KIND_FUNC_PROTO => vlen * 8,
            0..=19 => 0,
            _ => return Err("unknown BTF kind"),
        };
        if (kind == KIND_ENUM || kind == KIND_ENUM64) && string(name_off)? == wanted {
            let mut values = Vec::with_capacity(vlen);
            for i in 0..vlen {
                if kind == KIND_ENUM {
                    let e = body + i * 8;
                    let value = u32_at(e + 4)? as i32 as i64;
                    values.push((string(u32_at(e)?)?.to_owned(), value));
                } else {
                    let e = body + i * 12;
                    let value = (u64::from(u32_at(e + 8)?) << 32 | u64::from(u32_at(e + 4)?)) as i64;
                    values.push((string(u32_at(e)?)?.to_owned(), value));
                }
            }
            return Ok(Some(values));
        }
        off = body + body_len;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a BTF blob with one INT and one ENUM so the parser is tested without a kernel.
    fn tiny_btf() -> Vec<u8> {
        let strings = b"\0int\0skb_drop_reason\0SKB_CONSUMED\0SKB_DROP_REASON_NO_SOCKET\0";
        let mut types = Vec::new();
        // INT "int": name_off 1, kind 1, size 4, encoding word
        types.extend_from_slice(&1u32.to_le_bytes());
        types.extend_from_slice(&(KIND_INT << 24).to_le_bytes());
        types.extend_from_slice(&4u32.to_le_bytes());
        types.extend_from_slice(&0x0100_0020u32.to_le_bytes());
        // ENUM "skb_drop_reason" with 2 values
        types.extend_from_slice(&5u32.to_le_bytes());
        types.extend_from_slice(&((KIND_ENUM << 24) | 2).to_le_bytes());
        types.extend_from_slice(&4u32.to_le_bytes());
        types.extend_from_slice(&21u32.to_le_bytes());
        types.extend_from_slice(&1u32.to_le_bytes());
        types.extend_from_slice(&34u32.to_le_bytes());
        types.extend_from_slice(&3u32.to_le_bytes());
        let mut out = Vec::new();
        out.extend_from_slice(&BTF_MAGIC.to_le_bytes());
        out.push(1);
        out.push(0);
        out.extend_from_slice(&24u32.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(types.len() as u32).to_le_bytes());
        out.extend_from_slice(&(types.len() as u32).to_le_bytes());
        out.extend_from_slice(&(strings.len() as u32).to_le_bytes());
        out.extend_from_slice(&types);
        out.extend_from_slice(strings);
        out
    }

    #[test]
    fn finds_enum_values_and_strips_the_prefix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("btf");
        std::fs::write(&path, tiny_btf()).expect("write");
        let reasons = DropReasons::from_file(&path).expect("parse");
        assert_eq!(reasons.len(), 2);
        assert_eq!(reasons.name(1), Some("SKB_CONSUMED"));
        assert_eq!(reasons.name(3), Some("NO_SOCKET"));
        assert_eq!(reasons.code("SKB_DROP_REASON_NO_SOCKET"), Some(3));
        assert_eq!(reasons.name(4), None);
    }

    #[test]
    fn rejects_garbage() {
        assert!(enum_values(b"not btf at all, clearly", "x").is_err());
    }
}
