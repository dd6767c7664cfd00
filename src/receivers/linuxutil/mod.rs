//! `linuxutil` receiver: kernel network-stack counters, socket states and interface statistics.

pub mod error;
pub mod interfaces;
mod netlink;
pub mod netns;
pub mod netstat;
pub mod sockets;
