//! Processors: components in the middle of a pipeline.

pub mod batch;
