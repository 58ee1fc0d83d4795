//! What a user writes: one [`Role`] over their own prost messages.
//!
//! Why this shape: everything a role must not get wrong (attestation, key release,
//! sealing with AAD and padding, the audit trail, topology checks, bounded decoding,
//! transports) is the SDK's, so a role is only what it does to its state. It never sees a
//! key, an envelope or a socket, and its plaintext lives in [`Plain`], which wipes it when
//! dropped.

use std::ops::{Deref, DerefMut};

use zeroize::{Zeroize, Zeroizing};

/// Plaintext held inside the enclave, wiped when dropped.
pub struct Plain<T: Zeroize>(T);

impl<T: Zeroize> Plain<T> {
    pub fn new(value: T) -> Self {
        Plain(value)
    }
}

impl<T: Zeroize> Deref for Plain<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Zeroize> DerefMut for Plain<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: Zeroize> Drop for Plain<T> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// Where a call is: not secret (the envelope's header carries the same), but what a role
/// may bind into its own state.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The workflow this state belongs to.
    pub workflow_id: &'a str,
    /// The step this call makes: 0 for `init`, then the previous step + 1. For
    /// `disclose`, the step of the state disclosed.
    pub step: u64,
    /// This agent's name (bound into the envelope it seals).
    pub agent: &'a str,
}

/// Why a role refused: the message goes back to the caller, so it must not hold plaintext.
#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    /// The input or state is not something this role can act on (refusal `INVALID_INPUT`).
    #[error("{0}")]
    InvalidInput(String),
    /// This role does not do that (refusal `WRONG_ROLE`): e.g. `init` on a later role.
    #[error("{0}")]
    NotSupported(String),
    /// `disclose` of a field this role does not disclose (refusal `INVALID_REQUEST`).
    #[error("{0}")]
    NotDisclosed(String),
}

/// An agent's logic. Implement it over your own prost messages and pass it to
/// [`crate::serve`].
///
/// A pipeline's roles share one `State` message (each role's binary defines the same
/// one); the first role's `Input` is what the data owner seals.
pub trait Role: Send + Sync + 'static {
    /// The owner's input, as the first role reads it (`WorkflowInput.input`).
    type Input: prost::Message + Default + Zeroize;
    /// The state handed from role to role, sealed between calls.
    type State: prost::Message + Default + Zeroize;

    /// The kind this role is (a manifest role's `kind`), e.g. `"screening"`.
    fn kind(&self) -> &str;

    /// Whether this role runs `init` (it opens the owner's input; it is a pipeline's first).
    fn starts(&self) -> bool {
        false
    }

    /// The first role (`starts` is true): the state made from the owner's input.
    fn init(&self, _ctx: &Context<'_>, _input: &Self::Input) -> Result<Self::State, RoleError> {
        Err(RoleError::NotSupported(format!("a {} agent does not run Init", self.kind())))
    }

    /// A later role: one step on the state.
    fn step(&self, _ctx: &Context<'_>, _state: &mut Self::State) -> Result<(), RoleError> {
        Err(RoleError::NotSupported(format!("a {} agent does not run Process", self.kind())))
    }

    /// What may go to the data owner: the value of `field`, which the SDK seals to the
    /// owner's key (Reveal). Refuse every field that is not meant for the owner.
    fn disclose(&self, ctx: &Context<'_>, state: &Self::State, field: &str) -> Result<Zeroizing<Vec<u8>>, RoleError>;

    /// A KMS-sealed resource this agent was started with (`--resource NAME=FILE`),
    /// opened in the enclave at boot, before serving.
    fn load(&mut self, name: &str, _bytes: Zeroizing<Vec<u8>>) -> Result<(), RoleError> {
        Err(RoleError::InvalidInput(format!("a {} agent takes no resource '{name}'", self.kind())))
    }
}
