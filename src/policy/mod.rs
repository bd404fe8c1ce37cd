//! The `ScalingPolicy` resource: types, parsing with source positions, validation.

pub mod types;

pub use types::*;
