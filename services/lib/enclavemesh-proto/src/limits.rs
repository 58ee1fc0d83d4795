//! Bounds on fields of the contracts that more than one program checks.
//!
//! Why here: a bound checked on one side only, or checked with two different numbers,
//! is a bug waiting. Each one is written once, next to the messages it bounds.

/// Longest agent name (`AgentConfigResponse.name`, the `agent` bound into envelopes).
pub const MAX_AGENT_NAME_BYTES: usize = 64;

/// Largest workflow id an agent accepts.
pub const MAX_WORKFLOW_ID_BYTES: usize = 256;

/// Highest ledger interest rate, in basis points per step (100%).
pub const MAX_RATE_BPS: u32 = 10_000;

/// Largest encoded `Manifest` an agent accepts with a call (and a workflow input carries).
pub const MAX_MANIFEST_BYTES: usize = 16 * 1024;

/// Whether `name` is a usable agent name: 1 to [`MAX_AGENT_NAME_BYTES`] bytes of ASCII
/// letters, digits, `-` and `_` (it appears in logs, file names and AAD).
pub fn is_agent_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_AGENT_NAME_BYTES
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_names() {
        assert!(is_agent_name("agent-a") && is_agent_name("b_2"));
        assert!(is_agent_name(&"x".repeat(MAX_AGENT_NAME_BYTES)));
        assert!(!is_agent_name(&"x".repeat(MAX_AGENT_NAME_BYTES + 1)));
        assert!(!is_agent_name("") && !is_agent_name("a b") && !is_agent_name("ä") && !is_agent_name("a/b"));
    }
}
