//! The emulator's shared state and the two checks every key operation goes through:
//! resolving a key reference and authorizing the action against the key policy.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use enclavemesh_attestation::TrustAnchor;

use crate::audit::AuditLog;
use crate::error::{EmulatorError, ErrorKind, KmsError};
use crate::op::Op;
use crate::policy::{Decision, Policy, RequestContext};
use crate::recipient::{PCR0_KEY, RecipientPolicy, VerifiedRecipient};
use crate::state::{Key, KeyState, Store};

/// Library-level configuration (the binary builds it from flags; tests build it directly).
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Where keys persist; `None` keeps them in memory only.
    pub state_file: Option<PathBuf>,
    /// CloudTrail-shaped JSON lines; `None` disables auditing.
    pub audit_log: Option<PathBuf>,
    /// Root that attestation documents must chain to.
    pub trust_anchor: TrustAnchor,
    pub region: String,
    pub account_id: String,
    /// Accept debug-mode (all-zero PCR) documents. Off by default, as a real deployment
    /// must never release keys to an enclave whose memory the parent can read.
    pub allow_debug_attestation: bool,
    /// Oldest attestation document accepted.
    pub max_attestation_age: Duration,
}

impl EmulatorConfig {
    /// In-memory state, no audit log, us-east-1 / 111122223333, debug documents refused.
    pub fn new(trust_anchor: TrustAnchor) -> Self {
        Self {
            state_file: None,
            audit_log: None,
            trust_anchor,
            region: "us-east-1".into(),
            account_id: "111122223333".into(),
            allow_debug_attestation: false,
            max_attestation_age: enclavemesh_attestation::DEFAULT_MAX_AGE,
        }
    }
}

/// Who is calling (SigV4 is parsed, not verified: every caller is the account root).
#[derive(Debug, Clone)]
pub struct Caller {
    pub access_key_id: String,
    pub principal_arn: String,
}

pub struct Emulator {
    pub cfg: EmulatorConfig,
    pub store: Mutex<Store>,
    pub audit: AuditLog,
    pub recipient: RecipientPolicy,
}

impl Emulator {
    pub fn new(cfg: EmulatorConfig) -> Result<Self, EmulatorError> {
        let store = match &cfg.state_file {
            Some(p) => Store::load(p)?,
            None => Store::default(),
        };
        let audit = AuditLog::open(cfg.audit_log.as_deref(), &cfg.region, &cfg.account_id)?;
        let recipient = RecipientPolicy {
            anchor: cfg.trust_anchor.clone(),
            allow_debug: cfg.allow_debug_attestation,
            max_age: cfg.max_attestation_age,
        };
        Ok(Self { cfg, store: Mutex::new(store), audit, recipient })
    }

    pub fn key_arn(&self, key_id: &str) -> String {
        format!("arn:aws:kms:{}:{}:key/{key_id}", self.cfg.region, self.cfg.account_id)
    }

    pub fn alias_arn(&self, alias: &str) -> String {
        format!("arn:aws:kms:{}:{}:{alias}", self.cfg.region, self.cfg.account_id)
    }

    /// Persists the store after a mutation (no-op without a state file).
    pub fn persist(&self, store: &Store) -> Result<(), KmsError> {
        if let Some(p) = &self.cfg.state_file {
            store.save(p).map_err(|e| {
                tracing::error!(error = %e, "state file write failed");
                KmsError::internal(e.to_string())
            })?;
        }
        Ok(())
    }

    /// Resolves a key id, key ARN, `alias/name` or alias ARN to a key id.
    pub fn resolve(&self, store: &Store, reference: &str) -> Result<String, KmsError> {
        let prefix = format!("arn:aws:kms:{}:{}:", self.cfg.region, self.cfg.account_id);
        let local = if let Some(rest) = reference.strip_prefix("arn:") {
            match reference.strip_prefix(&prefix) {
                Some(r) => r.to_string(),
                None => {
                    return Err(KmsError::not_found(format!(
                        "{reference} is not in this emulator's region/account ({prefix}...); use the ARN printed by \
                            create-key/describe-key, or the bare key id (got arn:{rest})"
                    )));
                }
            }
        } else {
            reference.to_string()
        };
        if let Some(id) = local.strip_prefix("key/") {
            return self.check_exists(store, id, reference);
        }
        if local.starts_with("alias/") {
            return match store.aliases.get(&local) {
                Some(a) => Ok(a.target_key_id.clone()),
                None => Err(KmsError::not_found(format!(
                    "Alias {} is not found. Create it (aws kms create-alias --alias-name {local} --target-key-id \
                        KEY_ID) or list existing ones (aws kms list-aliases); is the emulator using the right \
                        --state-file?",
                    self.alias_arn(&local)
                ))),
            };
        }
        self.check_exists(store, &local, reference)
    }

    fn check_exists(&self, store: &Store, id: &str, reference: &str) -> Result<String, KmsError> {
        if store.keys.contains_key(id) {
            Ok(id.to_string())
        } else {
            Err(KmsError::not_found(format!(
                "Key '{}' does not exist (asked for '{reference}'). List keys with aws kms list-keys; is the \
                    emulator using the right --state-file?",
                self.key_arn(id)
            )))
        }
    }

    /// Refuses keys that are disabled or pending deletion (for cryptographic operations).
    pub fn check_usable(&self, key: &Key) -> Result<(), KmsError> {
        match key.state {
            KeyState::Enabled => Ok(()),
            KeyState::Disabled => Err(KmsError::new(
                ErrorKind::Disabled,
                format!("{} is disabled. Enable it: aws kms enable-key --key-id {}", key.arn, key.key_id),
            )),
            KeyState::PendingDeletion => Err(KmsError::new(
                ErrorKind::InvalidState,
                format!(
                    "{} is pending deletion. Cancel it: aws kms cancel-key-deletion --key-id {} (then enable-key)",
                    key.arn, key.key_id
                ),
            )),
        }
    }

    /// Evaluates the key policy for `kms:<op>`; the error names what to change.
    pub fn authorize(
        &self,
        key: &Key,
        op: Op,
        caller: &Caller,
        ctx: &RequestContext,
        recipient: Option<&VerifiedRecipient>,
    ) -> Result<(), KmsError> {
        let action = op.action();
        let policy = Policy::parse(&key.policy)?;
        let who = format!("User: {} (access key {})", caller.principal_arn, caller.access_key_id);
        match policy.evaluate(&action, &key.arn, ctx) {
            Decision::Allow => Ok(()),
            Decision::ExplicitDeny(sid) => Err(KmsError::access_denied(format!(
                "{who} is not authorized to perform {action} on resource {}: explicitly denied by statement {} of \
                    the key policy of key {}. Change the key policy (aws kms get-key-policy --key-id {} \
                    --policy-name default).",
                key.arn,
                sid.map(|s| format!("'{s}'")).unwrap_or_else(|| "(no Sid)".into()),
                key.key_id,
                key.key_id
            ))),
            Decision::ImplicitDeny => {
                let allowed = policy.allowed_values(&action, PCR0_KEY);
                let allowed_txt = if allowed.is_empty() {
                    "none".to_string()
                } else {
                    allowed.iter().map(|v| v.to_ascii_lowercase()).collect::<Vec<_>>().join(", ")
                };
                let msg = match recipient {
                    Some(r) => format!(
                        "{who} is not authorized to perform {action} on resource {}: attestation PCR0 {} is not \
                            allowed by the key policy of key {} (policy allows PCR0 {allowed_txt}). Run \
                            scripts/setup-kms-policy.sh {} to allow it.",
                        key.arn, r.pcr0_hex, key.key_id, r.pcr0_hex
                    ),
                    None if policy.allows_only_with(&action, PCR0_KEY) => format!(
                        "{who} is not authorized to perform {action} on resource {}: the key policy of key {} \
                            allows {action} only with a Recipient attestation document whose PCR0 is one of \
                            [{allowed_txt}]; this request has no Recipient. Only an attested enclave can do this \
                            (it sends Recipient through the kms-sidecar).",
                        key.arn, key.key_id
                    ),
                    None => format!(
                        "{who} is not authorized to perform {action} on resource {}: no statement of the key policy \
                            of key {} allows it. Add {action} to an Allow statement (aws kms put-key-policy \
                            --key-id {} --policy-name default ...).",
                        key.arn, key.key_id, key.key_id
                    ),
                };
                Err(KmsError::access_denied(msg))
            }
        }
    }
}
