//! Processors: components in the middle of a pipeline.

pub mod batch;
pub mod k8sattributes;
