//! A second system on the agent SDK, with its own state and three roles in a chain:
//! a loan application goes through **intake** (checked and normalised), **screening**
//! (against a private list that reaches the enclave only KMS-sealed) and **scoring**.
//! Only the score is disclosed, sealed to the data owner's key. Each role is its own
//! binary (`intake-agent`, `screening-agent`, `scoring-agent`), so each has its own
//! measurement, and a manifest pins which may hand the case to which.

pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/screening.v1.rs"));
}

mod intake;
mod scoring;
mod screening;

pub use intake::Intake;
pub use scoring::Scoring;
pub use screening::{SCREENING_LIST, Screening};

use enclavemesh_agent_sdk::{RoleError, Zeroizing};

/// What intake, screening and scoring answer to every Reveal but scoring's `score`.
pub(crate) fn nothing_disclosed(kind: &str, field: &str) -> Result<Zeroizing<Vec<u8>>, RoleError> {
    Err(RoleError::NotDisclosed(format!(
        "a {kind} agent discloses nothing ('{field}' asked); the owner gets only 'score', from the scoring agent"
    )))
}

/// The application in a case, or why there is none.
pub(crate) fn application(case: &v1::Case) -> Result<&v1::Application, RoleError> {
    case.application.as_ref().ok_or_else(|| RoleError::InvalidInput("the case holds no application".into()))
}
