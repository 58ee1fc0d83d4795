//! The emulator's shared state and the two checks every key operation goes through:
//! resolving a key reference and authorizing the action against the key policy.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use enclavemesh_attestation::TrustAnchor;

use crate::audit::AuditLog;
use crate::error::{EmulatorError, ErrorKind, KmsError};
use crate::identity::Identities;
use crate::op::Op;
use crate::policy::{Decision, Policy, Principal, PrincipalMatch, RequestContext};
use crate::recipient::{PCR0_KEY, RecipientPolicy, VerifiedRecipient};
use crate::state::{Key, KeyState, Store};

/// Library-level configuration (the binary builds it from flags; tests build it directly).
#[derive(Clone)]
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
    /// Who may call: access keys and their principals (requests are SigV4-verified).
    pub identities: Identities,
    /// HTTPS certificate; `None` serves plain HTTP (in-process tests only: the binary
    /// always serves TLS, like KMS).
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl EmulatorConfig {
    /// In-memory state, no audit log, us-east-1 / 111122223333, debug documents refused,
    /// `identities`, plain HTTP.
    pub fn new(trust_anchor: TrustAnchor, identities: Identities) -> Self {
        Self {
            state_file: None,
            audit_log: None,
            trust_anchor,
            region: "us-east-1".into(),
            account_id: "111122223333".into(),
            allow_debug_attestation: false,
            max_attestation_age: enclavemesh_attestation::DEFAULT_MAX_AGE,
            identities,
            tls: None,
        }
    }
}

/// Who is calling: the identity whose SigV4 signature the request carries.
#[derive(Debug, Clone)]
pub struct Caller {
    pub access_key_id: String,
    pub principal_arn: String,
    pub account: String,
    /// The caller's identity (IAM) policy; `None` allows every action as far as IAM goes.
    pub identity_policy: Option<Policy>,
}

impl Caller {
    /// The caller as policies see it.
    pub fn principal(&self) -> Principal<'_> {
        Principal { arn: &self.principal_arn, account: &self.account }
    }
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

    /// Authorizes `caller` doing `op` on `key`, as KMS does: an explicit Deny in the key
    /// policy or in the caller's identity policy refuses; a key policy statement naming the
    /// caller (or `*`) allows; one naming the caller's account allows if the identity policy
    /// does; else a grant may allow it. The refusal starts with AWS's own sentence and then
    /// names what to change.
    ///
    /// `operation` is what is authorized, by its name: an [`Op`]'s, or one of the two
    /// halves of ReEncrypt (`ReEncryptFrom`, `ReEncryptTo`).
    pub fn authorize(
        &self,
        store: &Store,
        key: &Key,
        operation: &str,
        caller: &Caller,
        ctx: &RequestContext,
        recipient: Option<&VerifiedRecipient>,
    ) -> Result<(), KmsError> {
        let action = format!("kms:{operation}");
        let policy = Policy::parse(&key.policy)?;
        let who = format!("User: {}", caller.principal_arn);
        let denied = |why: String| {
            KmsError::access_denied(format!(
                "{who} is not authorized to perform: {action} on resource: {} {why}",
                key.arn
            ))
        };
        let key_decision = policy.evaluate(&caller.principal(), &action, &key.arn, ctx);
        if let Decision::ExplicitDeny(sid) = &key_decision {
            return Err(denied(format!(
                "with an explicit deny in a resource-based policy (statement {} of the key policy of key {}; \
                 aws kms get-key-policy --key-id {} --policy-name default shows it)",
                sid.as_ref().map(|s| format!("'{s}'")).unwrap_or_else(|| "(no Sid)".into()),
                key.key_id,
                key.key_id
            )));
        }
        let identity_decision = caller.identity_policy.as_ref().map(|p| p.evaluate_identity(&action, &key.arn, ctx));
        if let Some(Decision::ExplicitDeny(sid)) = &identity_decision {
            return Err(denied(format!(
                "with an explicit deny in an identity-based policy (statement {})",
                sid.as_deref().unwrap_or("(no Sid)")
            )));
        }
        let identity_allows = !matches!(identity_decision, Some(Decision::ImplicitDeny));
        match key_decision {
            Decision::Allow(PrincipalMatch::Direct) => return Ok(()),
            Decision::Allow(PrincipalMatch::Account) if identity_allows => return Ok(()),
            Decision::Allow(PrincipalMatch::Account) => {
                return Err(denied(format!(
                    "because no identity-based policy allows the {action} action (the key policy delegates to the \
                 account's IAM policies)"
                )));
            }
            _ => {}
        }
        if grants_allow(store, key, operation, caller, ctx) {
            return Ok(());
        }
        let allowed = policy.allowed_values(&action, PCR0_KEY);
        let allowed_txt = if allowed.is_empty() {
            "none".to_string()
        } else {
            allowed.iter().map(|v| v.to_ascii_lowercase()).collect::<Vec<_>>().join(", ")
        };
        let hint = match recipient {
            Some(r) => format!(
                "attestation PCR0 {} is not allowed by the key policy of key {} (policy allows PCR0 {allowed_txt}). \
                 Run scripts/setup-kms-policy.sh {} to allow it.",
                r.pcr0_hex, key.key_id, r.pcr0_hex
            ),
            None if policy.allows_only_with(&action, PCR0_KEY) => format!(
                "the key policy of key {} allows {action} only with a Recipient attestation document whose PCR0 is \
                 one of [{allowed_txt}]; this request has no Recipient. Only an attested enclave can do this.",
                key.key_id
            ),
            None => format!(
                "no statement of the key policy of key {} allows it for this principal. Add {action} to an Allow \
                 statement naming it (aws kms put-key-policy --key-id {} --policy-name default ...).",
                key.key_id, key.key_id
            ),
        };
        Err(denied(format!("because no resource-based policy allows the {action} action: {hint}")))
    }

    /// Authorizes an operation that is not on a key (GenerateRandom, CreateKey, ListKeys):
    /// real KMS decides these by the caller's identity policy alone.
    pub fn authorize_unscoped(&self, op: Op, caller: &Caller) -> Result<(), KmsError> {
        let action = op.action();
        match caller.identity_policy.as_ref().map(|p| p.evaluate_identity(&action, "*", &RequestContext::default())) {
            None | Some(Decision::Allow(_)) => Ok(()),
            Some(Decision::ExplicitDeny(_)) => Err(KmsError::access_denied(format!(
                "User: {} is not authorized to perform: {action} with an explicit deny in an identity-based policy",
                caller.principal_arn
            ))),
            Some(Decision::ImplicitDeny) => Err(KmsError::access_denied(format!(
                "User: {} is not authorized to perform: {action} because no identity-based policy allows the {action} \
                 action",
                caller.principal_arn
            ))),
        }
    }
}

/// Whether a grant on `key` lets `caller` run `op` with this request's encryption context.
fn grants_allow(store: &Store, key: &Key, operation: &str, caller: &Caller, ctx: &RequestContext) -> bool {
    let iam = caller.principal().iam_arn();
    let request_context = ctx.encryption_context();
    store.grants.iter().any(|g| {
        g.key_id == key.key_id
            && (g.grantee_principal == caller.principal_arn || g.grantee_principal == iam)
            && g.operations.iter().any(|o| o == operation)
            && g.context_subset.iter().all(|(k, v)| request_context.get(&k.to_ascii_lowercase()) == Some(v))
            && g.context_equals.as_ref().is_none_or(|eq| {
                eq.len() == request_context.len()
                    && eq.iter().all(|(k, v)| request_context.get(&k.to_ascii_lowercase()) == Some(v))
            })
    })
}

impl std::fmt::Debug for EmulatorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorConfig")
            .field("state_file", &self.state_file)
            .field("audit_log", &self.audit_log)
            .field("region", &self.region)
            .field("account_id", &self.account_id)
            .field("identities", &self.identities.identities.len())
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}
