//! The owner's key file: an X25519 key pair, results are sealed to its public half.
//!
//! Format (JSON, mode 0600): `{"kind": "enclavemesh-owner-key", "version": 1,
//! "public_key": base64, "secret_key": base64}`. The secret stays on the owner's
//! machine; only the public key travels, inside the sealed input.

use std::io::Write;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use enclavemesh_sealing::owner::OwnerKeyPair;
use zeroize::Zeroizing;

use crate::OwnerError;

const KIND: &str = "enclavemesh-owner-key";

#[derive(serde::Serialize, serde::Deserialize)]
struct KeyFile {
    kind: String,
    version: u32,
    public_key: String,
    secret_key: String,
}

/// The owner's key pair.
#[derive(Debug)]
pub struct OwnerKey(pub OwnerKeyPair);

impl OwnerKey {
    pub fn generate() -> Self {
        OwnerKey(OwnerKeyPair::generate())
    }

    /// The public key, as it travels in the sealed input.
    pub fn public(&self) -> &[u8; 32] {
        self.0.public()
    }

    /// Reads a key file written by [`Self::save`].
    pub fn load(path: &Path) -> Result<Self, OwnerError> {
        let bad = |reason: String| OwnerError::KeyFile { path: path.display().to_string(), reason };
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| bad(format!("{e}; make one with `enclavemesh keygen --out {}`", path.display())))?,
        );
        let file: KeyFile = serde_json::from_str(&text).map_err(|e| bad(format!("not an owner key file: {e}")))?;
        if file.kind != KIND || file.version != 1 {
            return Err(bad(format!("kind {:?} version {}; expected {KIND:?} version 1", file.kind, file.version)));
        }
        let secret =
            Zeroizing::new(B64.decode(file.secret_key.as_bytes()).map_err(|e| bad(format!("secret_key: {e}")))?);
        let pair = OwnerKeyPair::from_secret(&secret).map_err(|e| bad(e.to_string()))?;
        if B64.encode(pair.public()) != file.public_key {
            return Err(bad("public_key does not belong to secret_key".into()));
        }
        Ok(OwnerKey(pair))
    }

    /// Writes the key file (mode 0600); refuses to overwrite one unless `force`.
    pub fn save(&self, path: &Path, force: bool) -> Result<(), OwnerError> {
        use std::os::unix::fs::OpenOptionsExt;
        let bad = |reason: String| OwnerError::KeyFile { path: path.display().to_string(), reason };
        let file = KeyFile {
            kind: KIND.into(),
            version: 1,
            public_key: B64.encode(self.0.public()),
            secret_key: B64.encode(self.0.secret()),
        };
        let text = Zeroizing::new(serde_json::to_string_pretty(&file).map_err(|e| bad(e.to_string()))?);
        let mut secret = file.secret_key;
        zeroize::Zeroize::zeroize(&mut secret);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| bad(e.to_string()))?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).mode(0o600);
        if force {
            options.create(true).truncate(true);
        } else {
            options.create_new(true);
        }
        let mut f = options.open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                bad("exists; results sealed to it would become unreadable if it were replaced (use --force)".into())
            }
            _ => bad(e.to_string()),
        })?;
        f.write_all(text.as_bytes()).and_then(|()| f.write_all(b"\n")).map_err(|e| bad(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_round_trips_is_private_and_is_not_overwritten() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("owner.key");
        let key = OwnerKey::generate();
        key.save(&path, false).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(OwnerKey::load(&path).unwrap().public(), key.public());
        let e = OwnerKey::generate().save(&path, false).unwrap_err().to_string();
        assert!(e.contains("--force"), "{e}");
        OwnerKey::generate().save(&path, true).unwrap();
        assert_ne!(OwnerKey::load(&path).unwrap().public(), key.public());
        std::fs::write(&path, "{}").unwrap();
        assert!(OwnerKey::load(&path).unwrap_err().to_string().contains("not an owner key file"));
        let e = OwnerKey::load(&dir.path().join("missing")).unwrap_err().to_string();
        assert!(e.contains("enclavemesh keygen"), "{e}");
    }
}
