//! The `ScalingPolicy` resource: types, parsing with source positions, validation.
//!
//! Pure: text in, values and positioned errors out; reading files is [`crate::policy_files`]'s
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

/// Fills [`ScalingPolicy::parsed`] from the strings validation accepted (each parse
/// below succeeded there; a failure keeps the default, which validation rules out).
pub fn with_parsed(mut policy: ScalingPolicy) -> ScalingPolicy {
    let spec = &policy.spec;
    let defaults = Parsed::default();
    policy.parsed = Parsed {
        host_ip: grammar::ip_address(&spec.ports.host_ip).unwrap_or(defaults.host_ip),
        port_range: grammar::port_range(&spec.ports.range).unwrap_or(defaults.port_range),
        listen: grammar::listen_address(&spec.load_balancer.listen).unwrap_or(defaults.listen),
        memory_bytes: spec
            .template
            .resources
            .memory
            .as_deref()
            .and_then(memory_bytes),
    };
    policy
}

/// Parses and fully validates one text (all documents): the policies with the line
/// where each starts, or every error found (shape errors of each document, then the
/// semantic errors of the documents that parsed), sorted by position.
pub fn parse_str(text: &str, file: &str) -> Result<Vec<(ScalingPolicy, usize)>, Vec<PolicyError>> {
    let (policies, mut errors) = parse_documents(text, file);
    errors.extend(validate_all(&policies));
    if errors.is_empty() {
        Ok(policies
            .into_iter()
            .map(|p| (with_parsed(p.policy), p.line))
            .collect())
    } else {
        errors.sort();
        Err(errors)
    }
}
