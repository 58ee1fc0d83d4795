//! One mapping from the agent's failures to refused calls.
//!
//! Every refusal leaves as a [`Refusal`] in the status details (see
//! `enclavemesh_proto::refusal`), so the worker, the audit trail and the metrics read the
//! same kind; the message is for people. Also here: how a handler's span records the way
//! its call ended.

use enclavemesh_proto::{DecodeError, Refusal};
use enclavemesh_sealing::{OpenError, SealError};
use tonic::Status;

use crate::role::RoleError;

pub fn open_error(e: &OpenError) -> Status {
    e.refusal().status(format!("cannot open envelope: {e}"))
}

pub fn seal_error(e: &SealError) -> Status {
    e.refusal().status(format!("sealing failed: {e}"))
}

pub fn role_error(e: RoleError) -> Status {
    match e {
        RoleError::InvalidInput(m) => Refusal::InvalidInput.status(m),
        RoleError::NotSupported(m) => Refusal::WrongRole.status(m),
        RoleError::NotDisclosed(m) => Refusal::InvalidRequest.status(m),
    }
}

pub fn decode_error(what: &str, e: DecodeError) -> Status {
    match e {
        DecodeError::TooLarge { .. } => Refusal::EnvelopeTooLarge.status(format!("{what}: {e}")),
        DecodeError::Malformed(_) | DecodeError::Truncated { .. } => {
            Refusal::EnvelopeMalformed.status(format!("{what}: {e}"))
        }
    }
}

/// Records on the current handler span how the call ended: `outcome` (`ok` / `error`)
/// and, for errors, `error.kind` (the refusal's label). Kinds only: status messages stay
/// out of the span.
pub fn finish<T>(result: Result<T, Status>) -> Result<T, Status> {
    let span = tracing::Span::current();
    match &result {
        Ok(_) => {
            span.record("outcome", "ok");
        }
        Err(s) => {
            span.record("outcome", "error");
            span.record("error.kind", Refusal::of(s).unwrap_or(Refusal::AgentError).label());
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_refusals_are_typed() {
        assert_eq!(Refusal::of(&role_error(RoleError::InvalidInput("x".into()))), Some(Refusal::InvalidInput));
        assert_eq!(Refusal::of(&role_error(RoleError::NotSupported("x".into()))), Some(Refusal::WrongRole));
        assert_eq!(Refusal::of(&role_error(RoleError::NotDisclosed("x".into()))), Some(Refusal::InvalidRequest));
    }
}
