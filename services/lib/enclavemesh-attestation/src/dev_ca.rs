//! The dev-mode CA: a self-signed P-384 root and one intermediate, persisted under
//! `$ENCLAVEMESH_DEV_DIR/dev-ca/` so every local process (agents, KMS emulator, tools) trusts
//! the same root. The root private key is discarded after issuing the intermediate: only the
//! intermediate key is kept, to issue the simulator's short-lived leaf certificates.
//!
//! Creation is race-safe: a process builds the CA in a private temporary directory inside the
//! dev dir and renames it to `dev-ca`. Directory rename is atomic and fails if the target
//! already exists with content, so exactly one CA wins and losers load the winner's.

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use p384::ecdsa::SigningKey;
use p384::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rand::RngCore;
use x509_cert::builder::Profile;
use x509_cert::name::Name;

use crate::anchor::TrustAnchor;
use crate::certs;
use crate::error::NsmError;

/// Subject of the dev root; says loudly that it is not AWS.
pub const DEV_ROOT_SUBJECT: &str = "CN=enclavemesh-dev-root-NOT-AWS,OU=simulated NSM,O=Enclave Mesh,C=US";
/// Subject of the dev intermediate.
pub const DEV_INTERMEDIATE_SUBJECT: &str = "CN=enclavemesh-dev-intermediate,OU=simulated NSM,O=Enclave Mesh,C=US";

/// Directory name under the dev dir.
pub const DEV_CA_DIR: &str = "dev-ca";
const ROOT_FILE: &str = "root.der";
/// The same root as PEM, for tools that take a CA bundle (`AWS_CA_BUNDLE`, curl).
const ROOT_PEM_FILE: &str = "root.pem";
const INTERMEDIATE_FILE: &str = "intermediate.der";
const INTERMEDIATE_KEY_FILE: &str = "intermediate.key.der";

const TEN_YEARS: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
const BACKDATE: Duration = Duration::from_secs(3600);

/// A TLS server certificate chain (leaf first, then the intermediate) and its private key
/// (PKCS#8 DER).
pub struct TlsServerCert {
    pub chain_der: Vec<Vec<u8>>,
    pub key_pkcs8_der: Vec<u8>,
}

impl fmt::Debug for TlsServerCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsServerCert").field("certificates", &self.chain_der.len()).finish_non_exhaustive()
    }
}

/// The dev root + intermediate (with the intermediate's key).
pub struct DevCa {
    dir: PathBuf,
    root_der: Vec<u8>,
    intermediate_der: Vec<u8>,
    intermediate_key: SigningKey,
    intermediate_name: Name,
}

impl fmt::Debug for DevCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the private key.
        f.debug_struct("DevCa")
            .field("dir", &self.dir)
            .field("root", &TrustAnchor::Der(self.root_der.clone()).describe())
            .finish_non_exhaustive()
    }
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> NsmError + use<> {
    let path = path.display().to_string();
    move |source| NsmError::Io { what, path, source }
}

impl DevCa {
    /// Load `dev_dir/dev-ca/`, creating it (and `dev_dir`) if absent. Safe to call from several
    /// processes/threads at once: all end up with the same CA.
    pub fn load_or_create(dev_dir: &Path) -> Result<Self, NsmError> {
        let final_dir = dev_dir.join(DEV_CA_DIR);
        if final_dir.exists() {
            return Self::load(&final_dir);
        }
        fs::create_dir_all(dev_dir).map_err(io_err("creating the dev directory", dev_dir))?;

        let mut suffix = [0u8; 8];
        rand::rngs::OsRng.fill_bytes(&mut suffix);
        let tmp = dev_dir.join(format!(".{DEV_CA_DIR}.tmp-{}-{}", std::process::id(), hex::encode(suffix)));
        let result = Self::generate_into(&tmp).and_then(|()| match fs::rename(&tmp, &final_dir) {
            Ok(()) => Ok(()),
            // Lost the race: someone else's CA is in place.
            Err(_) if final_dir.join(INTERMEDIATE_KEY_FILE).exists() => Ok(()),
            Err(e) => Err(io_err("installing the dev CA", &final_dir)(e)),
        });
        // Best effort: after a successful rename `tmp` no longer exists.
        let _ = fs::remove_dir_all(&tmp);
        result?;
        Self::load(&final_dir)
    }

    fn generate_into(dir: &Path) -> Result<(), NsmError> {
        fs::create_dir(dir).map_err(io_err("creating a temporary dev CA directory", dir))?;
        let now = SystemTime::now();
        let validity = certs::validity(now - BACKDATE, now + TEN_YEARS)?;

        let root_key = SigningKey::random(&mut rand::rngs::OsRng);
        let root_name = certs::name(DEV_ROOT_SUBJECT)?;
        let root_der = certs::issue(Profile::Root, root_name.clone(), root_key.verifying_key(), validity, &root_key)?;

        let int_key = SigningKey::random(&mut rand::rngs::OsRng);
        let int_der = certs::issue(
            Profile::SubCA { issuer: root_name, path_len_constraint: Some(0) },
            certs::name(DEV_INTERMEDIATE_SUBJECT)?,
            int_key.verifying_key(),
            validity,
            &root_key,
        )?;
        let int_pkcs8 = int_key
            .to_pkcs8_der()
            .map_err(|e| NsmError::Crypto { context: "encoding the intermediate key", reason: e.to_string() })?;

        write_file(&dir.join(ROOT_FILE), &root_der, 0o644)?;
        let root_pem = der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, &root_der)
            .map_err(|e| NsmError::Crypto { context: "encoding the root as PEM", reason: e.to_string() })?;
        write_file(&dir.join(ROOT_PEM_FILE), root_pem.as_bytes(), 0o644)?;
        write_file(&dir.join(INTERMEDIATE_FILE), &int_der, 0o644)?;
        write_file(&dir.join(INTERMEDIATE_KEY_FILE), int_pkcs8.as_bytes(), 0o600)?;
        Ok(())
    }

    fn load(dir: &Path) -> Result<Self, NsmError> {
        let bad = |reason: String| NsmError::DevCa { path: dir.display().to_string(), reason };
        let read = |name: &str| {
            let p = dir.join(name);
            fs::read(&p).map_err(|e| bad(format!("cannot read {name}: {e}")))
        };
        let root_der = read(ROOT_FILE)?;
        let intermediate_der = read(INTERMEDIATE_FILE)?;
        let key_der = read(INTERMEDIATE_KEY_FILE)?;

        let root = certs::parse(&root_der).map_err(|e| bad(format!("{ROOT_FILE}: {e}")))?;
        let intermediate = certs::parse(&intermediate_der).map_err(|e| bad(format!("{INTERMEDIATE_FILE}: {e}")))?;
        certs::verify_issued_by(&intermediate, &intermediate_der, &root)
            .map_err(|e| bad(format!("intermediate is not issued by the root: {e}")))?;
        let intermediate_key = SigningKey::from_pkcs8_der(&key_der)
            .map_err(|e| bad(format!("{INTERMEDIATE_KEY_FILE} is not a PKCS#8 P-384 key: {e}")))?;
        let cert_key = certs::p384_key(&intermediate).map_err(bad)?;
        if *intermediate_key.verifying_key() != cert_key {
            return Err(bad(format!("{INTERMEDIATE_KEY_FILE} does not match {INTERMEDIATE_FILE}")));
        }
        Ok(DevCa {
            dir: dir.to_path_buf(),
            root_der,
            intermediate_der,
            intermediate_key,
            intermediate_name: intermediate.tbs_certificate.subject,
        })
    }

    /// DER of the dev root certificate (what verifiers pin in dev mode).
    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    /// DER of the intermediate certificate.
    pub fn intermediate_der(&self) -> &[u8] {
        &self.intermediate_der
    }

    /// The dev root as a trust anchor for [`crate::Verifier::new`].
    pub fn trust_anchor(&self) -> TrustAnchor {
        TrustAnchor::Der(self.root_der.clone())
    }

    /// The `dev-ca` directory holding the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of `root.der` inside `dev_dir` (for `--attestation-root` defaults).
    pub fn root_path(dev_dir: &Path) -> PathBuf {
        dev_dir.join(DEV_CA_DIR).join(ROOT_FILE)
    }

    /// Where the dev root is as PEM (a CA bundle for the aws CLI: `AWS_CA_BUNDLE`).
    pub fn root_pem_path(dev_dir: &Path) -> PathBuf {
        dev_dir.join(DEV_CA_DIR).join(ROOT_PEM_FILE)
    }

    /// A TLS server certificate for `dns_names` and `ip_addrs`, valid for a year, issued
    /// by the intermediate: what the kms-emulator serves HTTPS with, so a client that
    /// trusts the dev root (an agent in dev mode, the CLI, the test harness) checks it as
    /// it would any web PKI certificate. A fresh P-384 key each time.
    pub fn issue_tls_server(
        &self,
        dns_names: &[&str],
        ip_addrs: &[std::net::IpAddr],
    ) -> Result<TlsServerCert, NsmError> {
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let now = SystemTime::now();
        let validity = certs::validity(now - BACKDATE, now + Duration::from_secs(365 * 24 * 3600))?;
        let leaf = certs::issue_tls_server(
            self.intermediate_name.clone(),
            key.verifying_key(),
            dns_names,
            ip_addrs,
            validity,
            &self.intermediate_key,
        )?;
        let key_pkcs8_der = key
            .to_pkcs8_der()
            .map_err(|e| NsmError::Crypto { context: "encoding the TLS key", reason: e.to_string() })?
            .as_bytes()
            .to_vec();
        Ok(TlsServerCert { chain_der: vec![leaf, self.intermediate_der.clone()], key_pkcs8_der })
    }

    pub(crate) fn intermediate_key(&self) -> &SigningKey {
        &self.intermediate_key
    }

    pub(crate) fn intermediate_name(&self) -> &Name {
        &self.intermediate_name
    }
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), NsmError> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io_err("writing the dev CA", path))?;
    f.write_all(bytes).map_err(io_err("writing the dev CA", path))?;
    f.sync_all().map_err(io_err("writing the dev CA", path))
}
