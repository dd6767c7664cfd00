//! `linuxutil` receiver: kernel network-stack counters, socket states and interface statistics.

pub mod error;
pub mod netns;
pub mod netstat;
