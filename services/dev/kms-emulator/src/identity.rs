//! Who may call the emulator: access keys, each belonging to one principal, as IAM has
//! them. A request is attributed to a principal only through a valid SigV4 signature
//! made with that key's secret ([`crate::sigv4`]), so a key policy naming principals is
//! evaluated against who really called.
//!
//! In dev, three principals play the project's roles, each with its own key pair, created
//! once in `$ENCLAVEMESH_DEV_DIR/kms/identities.json` and written out for the scripts as
//! `$ENCLAVEMESH_DEV_DIR/credentials/<name>.env`:
//!
//! | name | principal | who in production |
//! |---|---|---|
//! | `admin` | `arn:aws:sts::ACCT:assumed-role/enclavemesh-admin/operator` | the operator who creates keys and policies |
//! | `instance` | `arn:aws:sts::ACCT:assumed-role/enclavemesh-instance/i-0dev` | the parent instance's role: what the kms-sidecar hands the enclave |
//! | `owner` | `arn:aws:sts::ACCT:assumed-role/enclavemesh-data-owner/owner` | the data owner, who seals workflow inputs |
//!
//! All three are role sessions with temporary keys (`ASIA…` plus a session token), as
//! roles are in AWS; a key policy names the role (`arn:aws:iam::ACCT:role/NAME`), which
//! covers its sessions.
//!
//! Each may carry an identity (IAM) policy; without one every action is allowed by IAM, so
//! the key policy alone decides, which is the strictest test of a key policy.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::error::EmulatorError;
use crate::policy::Policy;

/// One access key and its principal.
#[derive(Clone, Serialize, Deserialize)]
pub struct Identity {
    /// Short name (`admin`, `instance`, `owner`): the credentials file's name.
    pub name: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Temporary credentials (an assumed role's session) carry a token that must come with
    /// every request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<String>,
    /// The principal's ARN.
    pub principal: String,
    /// Identity (IAM) policy document; absent = IAM allows everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_policy: Option<serde_json::Value>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret and the token never appear in logs.
        f.debug_struct("Identity")
            .field("name", &self.name)
            .field("access_key_id", &self.access_key_id)
            .field("principal", &self.principal)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// The account id in the principal's ARN.
    pub fn account(&self) -> &str {
        self.principal.split(':').nth(4).unwrap_or_default()
    }

    /// The parsed identity policy, if any.
    pub fn policy(&self) -> Result<Option<Policy>, crate::error::KmsError> {
        self.identity_policy.as_ref().map(|v| Policy::parse(&v.to_string())).transpose()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Identities {
    pub identities: Vec<Identity>,
}

fn random_key(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    format!("{prefix}{}", b.iter().map(|x| ALPHABET[usize::from(x % 32)] as char).collect::<String>())
}

fn random_secret(len: usize) -> String {
    let mut b = vec![0u8; len];
    rand::rngs::OsRng.fill_bytes(&mut b);
    use base64::Engine;
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(b)
}

impl Identities {
    /// The key id's identity.
    pub fn get(&self, access_key_id: &str) -> Option<&Identity> {
        self.identities.iter().find(|i| i.access_key_id == access_key_id)
    }

    /// The three dev principals of `account`, with fresh random keys.
    pub fn dev_defaults(account: &str) -> Identities {
        let session = |name: &str, role: &str, session: &str| Identity {
            name: name.into(),
            access_key_id: random_key("ASIA"),
            secret_access_key: random_secret(30),
            session_token: Some(random_secret(96)),
            principal: format!("arn:aws:sts::{account}:assumed-role/{role}/{session}"),
            identity_policy: None,
        };
        Identities {
            identities: vec![
                session("admin", "enclavemesh-admin", "operator"),
                session("instance", "enclavemesh-instance", "i-0dev"),
                session("owner", "enclavemesh-data-owner", "owner"),
            ],
        }
    }

    /// Loads `path`, or creates it with [`Self::dev_defaults`] (race-safe: the first
    /// writer wins, later starts read its file), and writes each identity's
    /// `credentials_dir/<name>.env`.
    pub fn load_or_create(path: &Path, account: &str, credentials_dir: &Path) -> Result<Identities, EmulatorError> {
        let bad = |reason: String| EmulatorError::Identities { path: path.display().to_string(), reason };
        if !path.exists() {
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir).map_err(|e| bad(e.to_string()))?;
            }
            let fresh =
                serde_json::to_vec_pretty(&Identities::dev_defaults(account)).map_err(|e| bad(e.to_string()))?;
            match fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
                Ok(mut f) => f.write_all(&fresh).map_err(|e| bad(e.to_string()))?,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(bad(e.to_string())),
            }
        }
        let text = fs::read(path).map_err(|e| bad(e.to_string()))?;
        let ids: Identities = serde_json::from_slice(&text).map_err(|e| bad(format!("not an identities file: {e}")))?;
        for i in &ids.identities {
            i.policy().map_err(|e| bad(format!("identity {}: {}", i.name, e.message)))?;
        }
        ids.write_credentials(credentials_dir).map_err(|e| bad(format!("writing credentials: {e}")))?;
        Ok(ids)
    }

    /// `dir/<name>.env` per identity (mode 0600): `AWS_ACCESS_KEY_ID=…` lines a shell
    /// script can source, as an operator's credential file would be.
    fn write_credentials(&self, dir: &Path) -> std::io::Result<()> {
        fs::create_dir_all(dir)?;
        for i in &self.identities {
            let mut text = format!(
                "# {} ({}); written by the kms-emulator\nAWS_ACCESS_KEY_ID={}\nAWS_SECRET_ACCESS_KEY={}\n",
                i.name, i.principal, i.access_key_id, i.secret_access_key
            );
            if let Some(t) = &i.session_token {
                text.push_str(&format!("AWS_SESSION_TOKEN={t}\n"));
            }
            let path = dir.join(format!("{}.env", i.name));
            let tmp = dir.join(format!(".{}.env.{}", i.name, std::process::id()));
            let mut f = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
            f.write_all(text.as_bytes())?;
            fs::rename(&tmp, &path)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_defaults_are_three_distinct_principals_and_persist() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kms/identities.json");
        let creds = dir.path().join("credentials");
        let a = Identities::load_or_create(&path, "111122223333", &creds).unwrap();
        let b = Identities::load_or_create(&path, "111122223333", &creds).unwrap();
        assert_eq!(a.identities.len(), 3);
        let keys: Vec<_> = a.identities.iter().map(|i| i.access_key_id.clone()).collect();
        assert_eq!(keys, b.identities.iter().map(|i| i.access_key_id.clone()).collect::<Vec<_>>());
        let instance = a.identities.iter().find(|i| i.name == "instance").unwrap();
        assert!(instance.access_key_id.starts_with("ASIA") && instance.session_token.is_some());
        assert_eq!(instance.account(), "111122223333");
        let env = std::fs::read_to_string(creds.join("instance.env")).unwrap();
        assert!(env.contains(&instance.access_key_id) && env.contains("AWS_SESSION_TOKEN="));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(creds.join("admin.env")).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(!format!("{instance:?}").contains(&instance.secret_access_key));
    }
}
