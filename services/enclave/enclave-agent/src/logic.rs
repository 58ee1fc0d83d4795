//! Agent logic: what an agent does to the state, behind one small trait.
//!
//! The logic sees plaintext only as [`PlainState`], which wipes itself on drop; it
//! never sees keys or envelopes. Two built-in agents do something real and
//! checkable: a ledger is created (Agent A) and compounded one interest step at a
//! time (Agent B), with a SHA-256 hash chain over the history so any skipped,
//! doubled or reordered step shows.

use enclavemesh_proto::limits::MAX_RATE_BPS;
use enclavemesh_proto::v1::{AgentState, StepRecord, WorkflowInput};
use prost::Message;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

/// Plaintext state, zeroized on drop.
pub struct PlainState(pub AgentState);

impl Drop for PlainState {
    fn drop(&mut self) {
        let s = &mut self.0;
        s.secret_note.zeroize();
        s.workflow_id.zeroize();
        s.balance = 0;
        s.history_digest.zeroize();
        for r in &mut s.history {
            r.balance_before = 0;
            r.balance_after = 0;
        }
    }
}

impl PlainState {
    /// Encodes into a buffer that is wiped when dropped.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.0.encode_to_vec())
    }
}

/// A step the agent refused to run, with a reason a person can act on.
#[derive(Debug, thiserror::Error)]
pub enum LogicError {
    #[error("{0}")]
    InvalidInput(String),
    #[error("{0}")]
    NotSupported(String),
}

/// What Init starts a ledger from: the data owner's opened input.
pub struct InitParams<'a> {
    pub workflow_id: &'a str,
    pub initial_balance: i64,
    pub rate_bps: u32,
    pub secret_note: String,
    pub owner_public_key: Vec<u8>,
}

impl<'a> InitParams<'a> {
    pub fn from_input(workflow_id: &'a str, input: &WorkflowInput) -> Self {
        Self {
            workflow_id,
            initial_balance: input.initial_balance,
            rate_bps: input.rate_bps,
            secret_note: input.secret_note.clone(),
            owner_public_key: input.owner_public_key.clone(),
        }
    }
}

/// What an agent does. `init` is Agent A's job, `process` Agent B's.
pub trait AgentLogic: Send + Sync + 'static {
    fn kind(&self) -> &'static str;
    /// Whether this agent runs Init (and so opens the owner's inputs).
    fn runs_init(&self) -> bool {
        false
    }
    /// Why this agent does not run Init.
    fn init_refused(&self) -> LogicError {
        LogicError::NotSupported(format!("a {} agent does not run Init; send Init to a ledger-init agent", self.kind()))
    }
    fn init(&self, _agent: &str, _params: InitParams<'_>) -> Result<PlainState, LogicError> {
        Err(self.init_refused())
    }
    fn process(&self, _agent: &str, _state: PlainState) -> Result<PlainState, LogicError> {
        Err(LogicError::NotSupported(format!(
            "a {} agent does not run Process; send Process to an interest agent",
            self.kind()
        )))
    }
}

/// Start of the history hash chain for a workflow.
pub fn genesis_digest(workflow_id: &str) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(b"enclavemesh/v1/history");
    h.update((workflow_id.len() as u64).to_be_bytes());
    h.update(workflow_id.as_bytes());
    h.finalize().to_vec()
}

/// digest_n = SHA256(digest_{n-1} || encode(record_n)).
pub fn chain_digest(prev: &[u8], record: &StepRecord) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(record.encode_to_vec());
    h.finalize().to_vec()
}

/// Agent A: creates the ledger.
pub struct LedgerInit;

impl AgentLogic for LedgerInit {
    fn kind(&self) -> &'static str {
        "ledger-init"
    }

    fn runs_init(&self) -> bool {
        true
    }

    fn init(&self, _agent: &str, p: InitParams<'_>) -> Result<PlainState, LogicError> {
        if p.initial_balance < 0 {
            return Err(LogicError::InvalidInput(format!("initial_balance must be >= 0, got {}", p.initial_balance)));
        }
        if p.rate_bps > MAX_RATE_BPS {
            return Err(LogicError::InvalidInput(format!(
                "rate_bps must be 0..={MAX_RATE_BPS} (basis points), got {}",
                p.rate_bps
            )));
        }
        Ok(PlainState(AgentState {
            workflow_id: p.workflow_id.to_string(),
            step: 0,
            secret_note: p.secret_note,
            balance: p.initial_balance,
            rate_bps: p.rate_bps,
            history: Vec::new(),
            history_digest: genesis_digest(p.workflow_id),
            owner_public_key: p.owner_public_key,
            // Bound by the service from the owner's input (the logic does not see manifests).
            manifest_sha256: Vec::new(),
        }))
    }
}

/// Agent B: applies one step of interest, rounding down, and extends the hash chain.
pub struct Interest;

impl AgentLogic for Interest {
    fn kind(&self) -> &'static str {
        "interest"
    }

    fn process(&self, agent: &str, mut state: PlainState) -> Result<PlainState, LogicError> {
        let s = &mut state.0;
        let before = s.balance;
        let interest = i128::from(before) * i128::from(s.rate_bps) / 10_000;
        let after = i64::try_from(i128::from(before) + interest).map_err(|_| {
            LogicError::InvalidInput(format!("balance overflow applying {} bps to {before}", s.rate_bps))
        })?;
        let step = s.step.checked_add(1).ok_or_else(|| LogicError::InvalidInput("step counter overflow".into()))?;
        let record = StepRecord { step, agent: agent.to_string(), balance_before: before, balance_after: after };
        s.history_digest = chain_digest(&s.history_digest, &record);
        s.history.push(record);
        s.balance = after;
        s.step = step;
        Ok(state)
    }
}

/// The logic for a configured kind.
pub fn for_kind(kind: crate::config::AgentKind) -> Box<dyn AgentLogic> {
    match kind {
        crate::config::AgentKind::LedgerInit => Box::new(LedgerInit),
        crate::config::AgentKind::Interest => Box::new(Interest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn init(balance: i64, bps: u32) -> PlainState {
        LedgerInit
            .init(
                "a",
                InitParams {
                    workflow_id: "wf",
                    initial_balance: balance,
                    rate_bps: bps,
                    secret_note: "n".into(),
                    owner_public_key: vec![1; 32],
                },
            )
            .unwrap()
    }

    #[test]
    fn interest_compounds_and_chains() {
        let mut s = init(100_000, 500);
        for _ in 0..3 {
            s = Interest.process("b", s).unwrap();
        }
        // 100000 -> 105000 -> 110250 -> 115762 (rounded down)
        assert_eq!(s.0.balance, 115_762);
        assert_eq!(s.0.step, 3);
        let mut d = genesis_digest("wf");
        for r in &s.0.history {
            d = chain_digest(&d, r);
        }
        assert_eq!(d, s.0.history_digest);
    }

    #[test]
    fn bad_inputs_are_refused() {
        assert!(
            LedgerInit
                .init(
                    "a",
                    InitParams {
                        workflow_id: "wf",
                        initial_balance: -1,
                        rate_bps: 1,
                        secret_note: String::new(),
                        owner_public_key: vec![]
                    }
                )
                .is_err()
        );
        assert!(
            LedgerInit
                .init(
                    "a",
                    InitParams {
                        workflow_id: "wf",
                        initial_balance: 1,
                        rate_bps: 10_001,
                        secret_note: String::new(),
                        owner_public_key: vec![]
                    }
                )
                .is_err()
        );
        let big = init(i64::MAX, 10_000);
        assert!(matches!(Interest.process("b", big), Err(LogicError::InvalidInput(_))));
        assert!(matches!(
            Interest.init(
                "b",
                InitParams {
                    workflow_id: "w",
                    initial_balance: 0,
                    rate_bps: 0,
                    secret_note: String::new(),
                    owner_public_key: vec![]
                }
            ),
            Err(LogicError::NotSupported(_))
        ));
    }
}
