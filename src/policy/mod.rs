//! The `ScalingPolicy` resource: types, parsing with source positions, validation.
//!
//! Pure: text in, values and positioned errors out; reading files is [`crate::loader`]'s
//! job. The flow is [`parse_documents`] (YAML → typed policies, shape errors) then
//! [`validate_all`] (semantic rules on one policy and across policies); [`parse_str`]
//! does both for one text.

pub mod error;
pub mod grammar;
pub mod locate;
pub mod parse;
pub mod schema;
pub mod types;
pub mod validate;

pub use error::PolicyError;
pub use grammar::memory_bytes;
pub use locate::Pos;
pub use parse::{MAX_FILE_BYTES, ParsedPolicy, parse_documents};
pub use schema::schema_json;
pub use types::*;
pub use validate::{Violation, check_conflicts, check_policy, validate_all};

/// Parses and fully validates one text (all documents): the policies with the line
/// where each starts, or every error found (shape errors of each document, then the
/// semantic errors of the documents that parsed), sorted by position.
pub fn parse_str(text: &str, file: &str) -> Result<Vec<(ScalingPolicy, usize)>, Vec<PolicyError>> {
    let (policies, mut errors) = parse_documents(text, file);
    errors.extend(validate_all(&policies));
    if errors.is_empty() {
        Ok(policies.into_iter().map(|p| (p.policy, p.line)).collect())
    } else {
        errors.sort();
        Err(errors)
    }
}
