//! What every server of fovea shares (the `otlp` receiver's gRPC and HTTP listeners, the
//! `prometheus` scrape endpoint, the extensions and the own-telemetry endpoint): one rule for
//! listen addresses.

mod address;

pub use address::ListenAddress;
