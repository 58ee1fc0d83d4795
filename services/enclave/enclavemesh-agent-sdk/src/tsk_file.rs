//! The encrypted-TSK file the parent hands to the enclave.
//!
//! It holds only KMS ciphertext blobs, never key material: one bare base64 line
//! (version 1, as `scripts/setup-kms.sh` writes first) or `v<N>:<base64>` lines, one
//! per TSK version after rotations.

use base64::Engine;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum TskFileError {
    #[error(
        "cannot read TSK file {path}: {source}. Create it with scripts/setup-kms.sh (it writes encrypted-tsk.b64) \
            and pass it with --tsk-file"
    )]
    Read { path: String, source: std::io::Error },
    #[error("TSK file {path} line {line}: {reason}")]
    Syntax { path: String, line: usize, reason: String },
    #[error("TSK file {path} holds no key versions; run scripts/setup-kms.sh")]
    Empty { path: String },
    #[error(
        "--retired-key-versions {retired:?} retires every version in the TSK file ({held:?}); keep at least the \
            newest active (run scripts/setup-kms.sh --rotate first to add one)"
    )]
    AllRetired { retired: Vec<u32>, held: Vec<u32> },
}

/// Drops the retired versions (operator's `--retired-key-versions`) before key
/// release, so a retired TSK is never even asked of KMS and cannot enter the ring.
/// A retired version the file does not list is ignored with a warning (already gone).
pub fn without_retired(versions: Vec<EncryptedTsk>, retired: &[u32]) -> Result<Vec<EncryptedTsk>, TskFileError> {
    for r in retired {
        if !versions.iter().any(|t| t.version == *r) {
            tracing::warn!(version = r, "--retired-key-versions names a version the TSK file does not list; ignored");
        }
    }
    let held: Vec<u32> = versions.iter().map(|t| t.version).collect();
    let active: Vec<EncryptedTsk> = versions.into_iter().filter(|t| !retired.contains(&t.version)).collect();
    if active.is_empty() {
        return Err(TskFileError::AllRetired { retired: retired.to_vec(), held });
    }
    Ok(active)
}

/// One encrypted TSK version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedTsk {
    pub version: u32,
    pub ciphertext_blob: Vec<u8>,
}

pub fn read(path: &Path) -> Result<Vec<EncryptedTsk>, TskFileError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| TskFileError::Read { path: path.display().to_string(), source })?;
    parse(&text, &path.display().to_string())
}

pub fn parse(text: &str, path: &str) -> Result<Vec<EncryptedTsk>, TskFileError> {
    let syntax = |line: usize, reason: String| TskFileError::Syntax { path: path.to_string(), line, reason };
    let mut out: Vec<EncryptedTsk> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (version, b64) = match line.split_once(':') {
            Some((v, b)) => {
                let n = v
                    .strip_prefix('v')
                    .and_then(|n| n.parse::<u32>().ok())
                    .filter(|n| *n > 0)
                    .ok_or_else(|| syntax(i + 1, format!("expected `v<N>:<base64>`, got prefix {v:?}")))?;
                (n, b)
            }
            None => (1, line),
        };
        let blob = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| syntax(i + 1, format!("not base64: {e}")))?;
        if out.iter().any(|t| t.version == version) {
            return Err(syntax(i + 1, format!("version {version} appears twice")));
        }
        out.push(EncryptedTsk { version, ciphertext_blob: blob });
    }
    if out.is_empty() {
        return Err(TskFileError::Empty { path: path.to_string() });
    }
    out.sort_by_key(|t| t.version);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_line_is_version_one() {
        let v = parse("AQID\n", "f").unwrap();
        assert_eq!(v, vec![EncryptedTsk { version: 1, ciphertext_blob: vec![1, 2, 3] }]);
    }

    #[test]
    fn versioned_lines_sorted() {
        let v = parse("v2:BAU=\nAQID\n", "f").unwrap();
        assert_eq!(v.iter().map(|t| t.version).collect::<Vec<_>>(), vec![1, 2]);
    }

    #[test]
    fn retired_versions_are_dropped_but_one_must_stay() {
        let v = parse("v1:AQID\nv2:BAU=\nv3:Bgc=\n", "f").unwrap();
        let active = without_retired(v.clone(), &[1, 9]).unwrap();
        assert_eq!(active.iter().map(|t| t.version).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(without_retired(v.clone(), &[]).unwrap(), v);
        assert!(matches!(
            without_retired(v, &[1, 2, 3]),
            Err(TskFileError::AllRetired { held, .. }) if held == vec![1, 2, 3]
        ));
    }

    #[test]
    fn errors_are_specific() {
        assert!(matches!(parse("", "f"), Err(TskFileError::Empty { .. })));
        assert!(matches!(parse("v1:AQID\nv1:AQID", "f"), Err(TskFileError::Syntax { line: 2, .. })));
        assert!(matches!(parse("vx:AQID", "f"), Err(TskFileError::Syntax { line: 1, .. })));
        assert!(matches!(parse("!!!", "f"), Err(TskFileError::Syntax { line: 1, .. })));
    }
}
