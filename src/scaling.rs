//! TEMPORARY stub until the scaling branch lands.
/// Stub.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct History {}
