//! Why a log failed verification: each variant names the record (by `seq`) where
//! the evidence of tampering is, so an operator knows what to look at.

/// Verification failure (or a writer I/O problem).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuditError {
    #[error("the audit log holds no records")]
    Empty,
    #[error("line {line}{}: not a valid audit record ({reason}); a record was edited or the file is not an audit \
        log", seq.map(|s| format!(" (seq {s})")).unwrap_or_default())]
    Malformed { line: usize, seq: Option<u64>, reason: String },
    #[error("record seq {seq} (line {line}) was edited: its {what} does not match its contents")]
    Edited { seq: u64, line: usize, what: &'static str },
    #[error("record seq {seq} was removed: the log jumps over it")]
    Removed { seq: u64 },
    #[error("record seq {seq} is out of order (records were reordered or duplicated)")]
    Reordered { seq: u64 },
    #[error(
        "record seq {seq} does not link to the record before it (prev_hash mismatch): records were replaced or \
            spliced in from another log"
    )]
    BadChain { seq: u64 },
    #[error("bootstrap record seq {seq}: {reason}")]
    BadAttestation { seq: u64, reason: String },
    #[error(
        "the log ends at seq {last_seq} but the agent's signed head is at seq {head_seq}: records at the tail were \
            removed"
    )]
    Truncated { last_seq: u64, head_seq: u64 },
    #[error(
        "record seq {seq} differs from the one the agent's signed head names: records up to it were edited, \
            replaced or re-chained"
    )]
    HeadMismatch { seq: u64 },
    #[error(
        "records seq {first_seq}..={last_seq} are not covered by any signed head: appended or rewritten by someone \
            other than the agent, or the agent stopped before its next checkpoint; fetch the log with `enclavemesh \
            audit fetch` (it ends with a fresh signed head)"
    )]
    Unsigned { first_seq: u64, last_seq: u64 },
    #[error("the head line is invalid: {reason}")]
    BadHead { reason: String },
    #[error("audit trail: {0}")]
    Io(String),
}

impl AuditError {
    /// The seq the evidence points at, if any.
    pub fn seq(&self) -> Option<u64> {
        match self {
            AuditError::Malformed { seq, .. } => *seq,
            AuditError::Edited { seq, .. }
            | AuditError::Removed { seq }
            | AuditError::Reordered { seq }
            | AuditError::BadChain { seq }
            | AuditError::BadAttestation { seq, .. }
            | AuditError::HeadMismatch { seq } => Some(*seq),
            AuditError::Unsigned { first_seq, .. } => Some(*first_seq),
            AuditError::Truncated { last_seq, .. } => Some(last_seq + 1),
            AuditError::Empty | AuditError::BadHead { .. } | AuditError::Io(_) => None,
        }
    }
}
