//! Body compression for OTLP: `compression:` of the exporters, `Content-Encoding` of the receiver.

use std::io::{Read, Write};

use serde::Deserialize;

/// Errors of compressing or decompressing a body.
#[derive(Debug, thiserror::Error)]
pub enum CompressionError {
    /// The encoding is not one fovea reads.
    #[error("unsupported content encoding `{0}`; use gzip, zstd or none")]
    Unsupported(String),
    /// The body is not valid data of its encoding (truncated, corrupt).
    #[error("cannot decompress {encoding} body: {source}")]
    Corrupt {
        /// The encoding.
        encoding: &'static str,
        /// What the decoder said.
        source: std::io::Error,
    },
    /// The decompressed body is larger than allowed.
    #[error("decompressed body exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// Compressing failed (out of memory ...).
    #[error("cannot compress with {encoding}: {source}")]
    Compress {
        /// The encoding.
        encoding: &'static str,
        /// What the encoder said.
        source: std::io::Error,
    },
}

/// `compression:` of the OTLP exporters (otelcol's default is gzip).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// gzip (default; every OTLP server must accept it).
    #[default]
    Gzip,
    /// zstd: smaller and cheaper than gzip.
    Zstd,
    /// No compression.
    None,
}

impl Compression {
    /// The `Content-Encoding` / `grpc-encoding` token, `None` for no compression.
    pub fn token(self) -> Option<&'static str> {
        match self {
            Compression::Gzip => Some("gzip"),
            Compression::Zstd => Some("zstd"),
            Compression::None => None,
        }
    }

    /// Compresses `body` (returns it unchanged for `none`).
    pub fn compress(self, body: &[u8]) -> Result<Vec<u8>, CompressionError> {
        match self {
            Compression::None => Ok(body.to_vec()),
            Compression::Gzip => {
                let mut e =
                    flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 4), flate2::Compression::fast());
                e.write_all(body)
                    .and_then(|()| e.finish())
                    .map_err(|source| CompressionError::Compress { encoding: "gzip", source })
            }
            Compression::Zstd => {
                zstd::bulk::compress(body, 3).map_err(|source| CompressionError::Compress { encoding: "zstd", source })
            }
        }
    }
}

/// Decompresses a body sent with `Content-Encoding: encoding` (empty or `identity` = none),
/// refusing to produce more than `limit` bytes.
pub fn decompress(encoding: &str, body: &[u8], limit: usize) -> Result<Vec<u8>, CompressionError> {
    let encoding = encoding.trim();
    let (name, reader): (&'static str, Box<dyn Read + '_>) =
        if encoding.is_empty() || encoding.eq_ignore_ascii_case("identity") {
            if body.len() > limit {
                return Err(CompressionError::TooLarge { limit });
            }
            return Ok(body.to_vec());
        } else if encoding.eq_ignore_ascii_case("gzip") || encoding.eq_ignore_ascii_case("x-gzip") {
            ("gzip", Box::new(flate2::read::GzDecoder::new(body)))
        } else if encoding.eq_ignore_ascii_case("zstd") {
            let d = zstd::stream::read::Decoder::with_buffer(body)
                .map_err(|source| CompressionError::Corrupt { encoding: "zstd", source })?;
            ("zstd", Box::new(d))
        } else if encoding.eq_ignore_ascii_case("deflate") {
            ("deflate", Box::new(flate2::read::ZlibDecoder::new(body)))
        } else {
            return Err(CompressionError::Unsupported(encoding.to_string()));
        };
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
    // Read one byte past the limit to tell "exactly the limit" from "more".
    let read = reader.take(limit as u64 + 1).read_to_end(&mut out);
    match read {
        Ok(n) if n > limit => Err(CompressionError::TooLarge { limit }),
        Ok(_) => Ok(out),
        Err(source) => Err(CompressionError::Corrupt { encoding: name, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_limits() {
        let body = vec![7u8; 10_000];
        for c in [Compression::Gzip, Compression::Zstd, Compression::None] {
            let packed = c.compress(&body).unwrap();
            let token = c.token().unwrap_or("");
            assert_eq!(decompress(token, &packed, 10_000).unwrap(), body);
            assert!(matches!(decompress(token, &packed, 9_999), Err(CompressionError::TooLarge { limit: 9_999 })));
        }
        let gz = Compression::Gzip.compress(&body).unwrap();
        assert!(matches!(decompress("gzip", &gz[..gz.len() / 2], 1 << 20), Err(CompressionError::Corrupt { .. })));
        assert!(matches!(decompress("br", &gz, 1 << 20), Err(CompressionError::Unsupported(_))));
    }
}
