//! The one exit-code table every subcommand follows (shown in `--help` and the README).
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | success: converged, nothing pending, valid |
//! | 1 | the command ran and the outcome is not the goal: a step failed and the next pass resumes (`reconcile`, `down`), changes are pending (`diff`), `load` saw every request fail or exceeded `--max-error-rate` |
//! | 2 | invalid input or usage: a bad flag, a policy that fails validation, an unreadable file; nothing was touched |
//! | 3 | the host cannot be used: Docker engine unreachable, nginx not found or failing, the state directory locked by another operator or missing, the listen address in use |
//! | 130 | a second SIGINT/SIGTERM ended the daemon at once |

use std::process::ExitCode;

/// What a command's exit code says; every subcommand maps its outcome to one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: success.
    Ok,
    /// 1: ran, but a step failed, changes are pending or the load target failed.
    Failed,
    /// 2: invalid input or usage; nothing was touched.
    Invalid,
    /// 3: the host cannot be used (engine, nginx, state directory, listen address).
    Unavailable,
}

impl Exit {
    /// The numeric code.
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Failed => 1,
            Exit::Invalid => 2,
            Exit::Unavailable => 3,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit.code())
    }
}

/// The table as `--help` prints it (kept in step with the module doc and the README).
pub const HELP: &str = "\
Exit codes (every subcommand):
  0    success: converged, nothing pending, valid
  1    ran, but a step failed (reconcile, down), changes are pending (diff),
       or load saw every request fail / exceeded --max-error-rate
  2    invalid input or usage: bad flag, invalid policy, unreadable file; nothing touched
  3    the host cannot be used: Docker engine unreachable, nginx not found or failing,
       state directory locked or missing, listen address in use
  130  a second SIGINT/SIGTERM ended the daemon at once";

/// Exit 0 when `ok`, else 1.
pub fn ok_or_failed(ok: bool) -> ExitCode {
    if ok { Exit::Ok } else { Exit::Failed }.into()
}

/// The exit code for an error that ended a command: 3 when the chain says the host
/// cannot be used (engine unreachable, nginx missing, state locked, listen address
/// taken), else `otherwise` (the command's own code for a failed step).
pub fn classify(err: &anyhow::Error, otherwise: Exit) -> Exit {
    use crate::runtime::RuntimeError;
    use crate::state::StateError;
    let unavailable = err.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<RuntimeError>(),
            Some(RuntimeError::Connect { .. } | RuntimeError::NotSwarmManager { .. })
        ) || matches!(
            cause.downcast_ref::<StateError>(),
            Some(StateError::Locked { .. })
        ) || cause
            .downcast_ref::<super::preflight::PreflightError>()
            .is_some()
            || matches!(
                cause.downcast_ref::<crate::api::ApiError>(),
                Some(crate::api::ApiError::Bind { .. })
            )
    });
    if unavailable {
        Exit::Unavailable
    } else {
        otherwise
    }
}

/// An error and its causes on one line, each cause once: a message that already ends
/// with (or contains) its cause's text does not repeat it (`Socket not found: X` was
/// printed twice when a variant's message embeds its `#[source]`).
pub fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        let next = c.to_string();
        if !next.is_empty() && !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        cause = c.source();
    }
    text
}

/// [`describe`] for an `anyhow` error.
pub fn describe_anyhow(err: &anyhow::Error) -> String {
    describe(err.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot connect to X: {0}")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("Socket not found: /nope")]
    struct Inner;

    #[derive(Debug, thiserror::Error)]
    #[error("reading policy")]
    struct Plain(#[source] Inner);

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let err = anyhow::Error::new(Outer(Inner));
        assert_eq!(
            describe_anyhow(&err),
            "cannot connect to X: Socket not found: /nope"
        );
        let err = anyhow::Error::new(Plain(Inner));
        assert_eq!(
            describe_anyhow(&err),
            "reading policy: Socket not found: /nope"
        );
    }

    #[test]
    fn an_unreachable_engine_is_unavailable_whatever_the_command() {
        let err = anyhow::Error::new(crate::state::StateError::Locked {
            path: "lock".into(),
            holder: "pid 1".into(),
        });
        for otherwise in [Exit::Failed, Exit::Unavailable] {
            assert_eq!(classify(&err, otherwise), Exit::Unavailable);
        }
        let other = anyhow::anyhow!("a step failed");
        assert_eq!(classify(&other, Exit::Failed), Exit::Failed);
    }
}
