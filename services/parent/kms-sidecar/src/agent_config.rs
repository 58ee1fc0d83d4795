//! What the parent tells each enclave about itself at boot (`GetAgentConfig`).
//!
//! `nitro-cli run-enclave` passes no arguments, environment or files into an
//! enclave, and every enclave runs the same image (one PCR0 in the key policy). So
//! the agent's role (name, logic) and the encrypted-TSK file come from the parent,
//! here, chosen by the enclave's vsock CID — which the parent itself assigned with
//! `nitro-cli run-enclave --enclave-cid`. None of it is secret: the TSK file holds
//! KMS ciphertext that KMS releases only to an enclave whose attestation passes the
//! key policy, and a wrong role only changes which agent logic an honest image runs.

use enclavemesh_proto::limits::is_agent_name;
use enclavemesh_proto::v1::{AgentConfigResponse, AgentKind};
use enclavemesh_transport::Address;
use std::path::PathBuf;
use std::str::FromStr;
use tonic::Status;

/// Largest TSK file served (a handful of ~300-byte base64 lines in practice).
pub const MAX_TSK_FILE_BYTES: u64 = 64 * 1024;

/// Which enclaves a role is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// The enclave with this vsock CID.
    Cid(u32),
    /// Any caller no CID entry matches (dev mode over unix/TCP, or one-role hosts).
    Any,
}

/// `--agent-role CID=NAME:KIND` (or `*=NAME:KIND`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRole {
    pub selector: Selector,
    pub name: String,
    /// The kind as the agent's `--kind` spells it: the ledger's `ledger-init` /
    /// `interest`, or an SDK agent's own (e.g. `screening`). The agent refuses a kind its
    /// program does not serve.
    pub kind: String,
}

/// The ledger's kinds also go out as the wire enum (agents before `kind_name`).
fn wire_kind(s: &str) -> AgentKind {
    match s {
        "ledger-init" => AgentKind::LedgerInit,
        "interest" => AgentKind::Interest,
        _ => AgentKind::Unspecified,
    }
}

impl FromStr for AgentRole {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let usage = || {
            format!(
                "'{s}': expected CID=NAME:KIND or *=NAME:KIND (KIND as the agent's --kind: ledger-init, interest, or \
                 an SDK agent's own), e.g. 16=agent-a:ledger-init"
            )
        };
        let (sel, role) = s.split_once('=').ok_or_else(usage)?;
        let (name, kind) = role.split_once(':').ok_or_else(usage)?;
        let selector = match sel.trim() {
            "*" => Selector::Any,
            cid => Selector::Cid(cid.parse().map_err(|_| usage())?),
        };
        // The agent checks what it is handed by the same rule (enclavemesh_proto::limits).
        if !is_agent_name(name.trim()) || !is_agent_name(kind.trim()) {
            return Err(usage());
        }
        Ok(AgentRole { selector, name: name.trim().to_string(), kind: kind.trim().to_string() })
    }
}

/// The roles and the TSK file this sidecar hands out.
#[derive(Debug, Clone, Default)]
pub struct AgentDirectory {
    pub roles: Vec<AgentRole>,
    pub tsk_file: Option<PathBuf>,
}

impl AgentDirectory {
    /// The configuration for the enclave at `peer` (its vsock address in production).
    pub fn config_for(&self, peer: Option<&Address>) -> Result<AgentConfigResponse, Status> {
        let cid = match peer {
            Some(Address::Vsock { cid, .. }) => Some(*cid),
            _ => None,
        };
        let who = cid.map_or_else(|| "this caller (not on vsock)".to_string(), |c| format!("enclave CID {c}"));
        let role = self
            .roles
            .iter()
            .find(|r| cid.is_some_and(|c| r.selector == Selector::Cid(c)))
            .or_else(|| self.roles.iter().find(|r| r.selector == Selector::Any))
            .ok_or_else(|| {
                Status::not_found(format!(
                    "kms-sidecar has no agent role for {who}: add --agent-role {}=NAME:KIND (e.g. agent-a:ledger-init) \
                     to the sidecar (KMS_SIDECAR_AGENT_ROLES in /etc/enclavemesh/kms-sidecar.env)",
                    cid.map_or_else(|| "*".to_string(), |c| c.to_string())
                ))
            })?;
        let path = self.tsk_file.as_ref().ok_or_else(|| {
            Status::failed_precondition(
                "kms-sidecar has no --agent-tsk-file (KMS_SIDECAR_AGENT_TSK_FILE): point it at the encrypted TSK \
                 written by scripts/setup-kms.sh (encrypted-tsk.b64)",
            )
        })?;
        // Read per call: after `setup-kms.sh --rotate` a restarted enclave gets the new
        // version without restarting the sidecar.
        let unreadable = |e: String| {
            Status::failed_precondition(format!(
                "kms-sidecar cannot read --agent-tsk-file {}: {e}. Create it with scripts/setup-kms.sh",
                path.display()
            ))
        };
        let len = std::fs::metadata(path).map_err(|e| unreadable(e.to_string()))?.len();
        if len > MAX_TSK_FILE_BYTES {
            return Err(unreadable(format!("{len} bytes, more than {MAX_TSK_FILE_BYTES}")));
        }
        let tsk_file = std::fs::read_to_string(path).map_err(|e| unreadable(e.to_string()))?;
        tracing::info!(agent = %role.name, kind = %role.kind, peer = %who, "agent configuration handed out");
        Ok(AgentConfigResponse {
            name: role.name.clone(),
            kind: wire_kind(&role.kind) as i32,
            kind_name: role.kind.clone(),
            tsk_file,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(roles: &[&str], tsk: Option<PathBuf>) -> AgentDirectory {
        AgentDirectory { roles: roles.iter().map(|r| r.parse().unwrap()).collect(), tsk_file: tsk }
    }

    fn vsock(cid: u32) -> Address {
        Address::Vsock { cid, port: 1234 }
    }

    #[test]
    fn roles_parse_and_refuse_nonsense() {
        let r: AgentRole = "16=agent-a:ledger-init".parse().unwrap();
        assert_eq!(r, AgentRole { selector: Selector::Cid(16), name: "agent-a".into(), kind: "ledger-init".into() });
        assert_eq!("16=s:screening".parse::<AgentRole>().unwrap().kind, "screening");
        assert_eq!("*=b:interest".parse::<AgentRole>().unwrap().selector, Selector::Any);
        for bad in ["16", "16=agent-a", "x=a:b", "16=:b", "16=a b:c", "16=a:", "16=a:root shell"] {
            let e = bad.parse::<AgentRole>().unwrap_err();
            assert!(e.contains("CID=NAME:KIND"), "{bad}: {e}");
        }
    }

    #[test]
    fn config_is_chosen_by_cid_then_wildcard() {
        let t = tempfile::tempdir().unwrap();
        let tsk = t.path().join("encrypted-tsk.b64");
        std::fs::write(&tsk, "v1:AAAA\n").unwrap();
        let d = dir(&["16=agent-a:ledger-init", "17=agent-b:interest"], Some(tsk.clone()));
        let a = d.config_for(Some(&vsock(16))).unwrap();
        assert_eq!((a.name.as_str(), a.kind(), a.tsk_file.as_str()), ("agent-a", AgentKind::LedgerInit, "v1:AAAA\n"));
        assert_eq!(a.kind_name, "ledger-init");
        assert_eq!(d.config_for(Some(&vsock(17))).unwrap().name, "agent-b");
        let e = d.config_for(Some(&vsock(18))).unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);
        assert!(e.message().contains("--agent-role 18=NAME:KIND"), "{}", e.message());
        let e = d.config_for(None).unwrap_err();
        assert!(e.message().contains("--agent-role *=NAME:KIND"), "{}", e.message());

        let any = dir(&["17=agent-b:interest", "*=dev:interest"], Some(tsk));
        assert_eq!(any.config_for(None).unwrap().name, "dev");
        assert_eq!(any.config_for(Some(&vsock(17))).unwrap().name, "agent-b");
    }

    #[test]
    fn missing_tsk_file_names_the_flag_and_the_script() {
        let e = dir(&["*=a:interest"], None).config_for(None).unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition);
        assert!(e.message().contains("--agent-tsk-file"), "{}", e.message());
        let e = dir(&["*=a:interest"], Some("/nonexistent/tsk.b64".into())).config_for(None).unwrap_err();
        assert!(
            e.message().contains("/nonexistent/tsk.b64") && e.message().contains("setup-kms.sh"),
            "{}",
            e.message()
        );
    }
}
