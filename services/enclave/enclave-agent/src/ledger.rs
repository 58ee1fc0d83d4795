//! The ledger: a [`Role`] over `LedgerInput` and `LedgerState`.
//!
//! Something real and checkable: a ledger is opened from the owner's sealed input
//! (Agent A, `ledger-init`) and compounded one interest step at a time (Agent B,
//! `interest`), with a SHA-256 hash chain over the history so any skipped, doubled or
//! reordered step shows.

use enclavemesh_agent_sdk::{Context, Role, RoleError, Zeroizing};
use enclavemesh_proto::limits::MAX_RATE_BPS;
use enclavemesh_proto::v1::{LedgerInput, LedgerState, RevealField, StepRecord};
use prost::Message;
use sha2::{Digest, Sha256};

/// Agent A's kind: opens the ledger (Init).
pub const LEDGER_INIT: &str = "ledger-init";
/// Agent B's kind: one interest step per Process.
pub const INTEREST: &str = "interest";

/// The ledger, as one of its two kinds.
pub struct Ledger {
    opens: bool,
}

impl Ledger {
    /// The role for `kind` (the SDK calls this with one of the kinds the program serves).
    pub fn of_kind(kind: &str) -> Ledger {
        Ledger { opens: kind == LEDGER_INIT }
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

impl Role for Ledger {
    type Input = LedgerInput;
    type State = LedgerState;

    fn kind(&self) -> &str {
        if self.opens { LEDGER_INIT } else { INTEREST }
    }

    fn starts(&self) -> bool {
        self.opens
    }

    fn init(&self, ctx: &Context<'_>, input: &LedgerInput) -> Result<LedgerState, RoleError> {
        if !self.opens {
            return Err(RoleError::NotSupported(
                "an interest agent does not run Init; send Init to a ledger-init \
                 agent"
                    .into(),
            ));
        }
        if input.initial_balance < 0 {
            return Err(RoleError::InvalidInput(format!(
                "initial_balance must be >= 0, got {}",
                input.initial_balance
            )));
        }
        if input.rate_bps > MAX_RATE_BPS {
            return Err(RoleError::InvalidInput(format!(
                "rate_bps must be 0..={MAX_RATE_BPS} (basis points), got {}",
                input.rate_bps
            )));
        }
        Ok(LedgerState {
            secret_note: input.secret_note.clone(),
            balance: input.initial_balance,
            rate_bps: input.rate_bps,
            history: Vec::new(),
            history_digest: genesis_digest(ctx.workflow_id),
        })
    }

    /// One step of interest, rounding down, extending the hash chain.
    fn step(&self, ctx: &Context<'_>, s: &mut LedgerState) -> Result<(), RoleError> {
        if self.opens {
            return Err(RoleError::NotSupported(
                "a ledger-init agent does not run Process; send Process to an interest agent".into(),
            ));
        }
        let before = s.balance;
        let interest = i128::from(before) * i128::from(s.rate_bps) / 10_000;
        let after = i64::try_from(i128::from(before) + interest).map_err(|_| {
            RoleError::InvalidInput(format!("balance overflow applying {} bps to {before}", s.rate_bps))
        })?;
        let record =
            StepRecord { step: ctx.step, agent: ctx.agent.to_string(), balance_before: before, balance_after: after };
        s.history_digest = chain_digest(&s.history_digest, &record);
        s.history.push(record);
        s.balance = after;
        Ok(())
    }

    /// Any field, to the owner who sealed the input (both kinds answer Reveal).
    fn disclose(&self, ctx: &Context<'_>, s: &LedgerState, field: &str) -> Result<Zeroizing<Vec<u8>>, RoleError> {
        let field = RevealField::from_str_name(field).unwrap_or(RevealField::Unspecified);
        let text = match field {
            RevealField::Balance => s.balance.to_string(),
            RevealField::Step => ctx.step.to_string(),
            RevealField::RateBps => s.rate_bps.to_string(),
            RevealField::HistoryDigest => hex::encode(&s.history_digest),
            RevealField::SecretNote => s.secret_note.clone(),
            RevealField::History => s
                .history
                .iter()
                .map(|r| format!("{}:{}:{}->{}", r.step, r.agent, r.balance_before, r.balance_after))
                .collect::<Vec<_>>()
                .join(","),
            RevealField::Unspecified => {
                return Err(RoleError::NotDisclosed(
                    "the ledger discloses REVEAL_FIELD_BALANCE, _STEP, _RATE_BPS, _HISTORY_DIGEST, _SECRET_NOTE, \
                     _HISTORY"
                        .into(),
                ));
            }
        };
        Ok(Zeroizing::new(text.into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(step: u64) -> Context<'static> {
        Context { workflow_id: "wf", step, agent: "b" }
    }

    fn open(balance: i64, bps: u32) -> Result<LedgerState, RoleError> {
        let input = LedgerInput { initial_balance: balance, rate_bps: bps, secret_note: "n".into() };
        Ledger::of_kind(LEDGER_INIT).init(&ctx(0), &input)
    }

    #[test]
    fn interest_compounds_and_chains() {
        let mut s = open(100_000, 500).unwrap();
        for step in 1..=3 {
            Ledger::of_kind(INTEREST).step(&ctx(step), &mut s).unwrap();
        }
        // 100000 -> 105000 -> 110250 -> 115762 (rounded down)
        assert_eq!(s.balance, 115_762);
        assert_eq!(s.history.iter().map(|r| r.step).collect::<Vec<_>>(), [1, 2, 3]);
        let mut d = genesis_digest("wf");
        for r in &s.history {
            d = chain_digest(&d, r);
        }
        assert_eq!(d, s.history_digest);
        let b = Ledger::of_kind(INTEREST).disclose(&ctx(3), &s, "REVEAL_FIELD_BALANCE").unwrap();
        assert_eq!(b.as_slice(), b"115762");
        assert!(matches!(Ledger::of_kind(INTEREST).disclose(&ctx(3), &s, "balance"), Err(RoleError::NotDisclosed(_))));
    }

    #[test]
    fn bad_inputs_are_refused() {
        assert!(matches!(open(-1, 1), Err(RoleError::InvalidInput(_))));
        assert!(matches!(open(1, 10_001), Err(RoleError::InvalidInput(_))));
        let mut big = open(i64::MAX, 10_000).unwrap();
        assert!(matches!(Ledger::of_kind(INTEREST).step(&ctx(1), &mut big), Err(RoleError::InvalidInput(_))));
        assert!(matches!(
            Ledger::of_kind(INTEREST).init(&ctx(0), &LedgerInput::default()),
            Err(RoleError::NotSupported(_))
        ));
        assert!(matches!(Ledger::of_kind(LEDGER_INIT).step(&ctx(1), &mut big), Err(RoleError::NotSupported(_))));
    }
}
