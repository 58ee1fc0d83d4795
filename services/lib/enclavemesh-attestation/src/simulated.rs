//! The dev-mode NSM: emits documents in exactly the real NSM format (so the one verifier
//! handles both), signed by a short-lived leaf under the dev CA instead of the AWS chain.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use p384::ecdsa::SigningKey;
use rand::RngCore;
use sha2::{Digest, Sha384};
use x509_cert::builder::Profile;

use crate::certs;
use crate::dev_ca::DevCa;
use crate::document::{AttestationDocument, MAX_PCRS, sign_document};
use crate::error::NsmError;
use crate::nsm::{Nsm, check_field_sizes};

/// PCRs 0..=15 appear in documents, as on the real NSM.
const DOCUMENT_PCRS: u16 = 16;
/// Leaf lifetime, like the real NSM's (about three hours).
const LEAF_LIFETIME: Duration = Duration::from_secs(3 * 3600);
/// A leaf older than this is replaced, so documents always carry a leaf valid for hours.
const LEAF_RENEW_AFTER: Duration = Duration::from_secs(3600);
/// Leaf notBefore is backdated a little to tolerate clock differences between local processes.
const LEAF_BACKDATE: Duration = Duration::from_secs(60);

const PCR1_LABEL: &[u8] = b"enclavemesh simulated PCR1: kernel and boot ramfs";
const PCR2_LABEL: &[u8] = b"enclavemesh simulated PCR2: user applications";

/// SHA-384 of a file: the simulated PCR0 of the agent binary (stable across runs of the same
/// build, different for a different build - the property real PCR0 has).
pub fn measure_file(path: &Path) -> Result<[u8; 48], std::io::Error> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha384::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
}

/// PCR8 of an image signed with the certificate `cert_der`, as the Nitro hypervisor (and
/// QEMU's nitro-enclave machine) computes it: the SHA-384 fingerprint of the certificate,
/// extended into a zeroed PCR, `SHA384(0^48 || SHA384(cert_der))`.
pub fn pcr8_of_signing_certificate(cert_der: &[u8]) -> [u8; 48] {
    let mut h = Sha384::new();
    h.update([0u8; 48]);
    h.update(Sha384::digest(cert_der));
    h.finalize().into()
}

/// Reads an X.509 certificate file, PEM (the first `CERTIFICATE` block) or DER, and
/// returns its DER, checked to parse. `what` names it in errors (e.g. "the image signing
/// certificate").
pub fn read_certificate(path: &Path, what: &'static str) -> Result<Vec<u8>, NsmError> {
    use der::{Decode, DecodePem, Encode};
    use x509_cert::Certificate;
    let fail = |reason: String| NsmError::Certificate { what, path: path.display().to_string(), reason };
    let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let cert =
        if bytes.starts_with(b"-----BEGIN") { Certificate::from_pem(&bytes) } else { Certificate::from_der(&bytes) };
    let bad = |e: der::Error| fail(format!("not an X.509 certificate: {e}"));
    cert.map_err(bad)?.to_der().map_err(bad)
}

/// Reads an image signing certificate (the `--signing-certificate` of the EIF build).
pub fn read_signing_certificate(path: &Path) -> Result<Vec<u8>, NsmError> {
    read_certificate(path, "the image signing certificate")
}

/// What the simulated enclave "measures" as PCR0/1/2 (and PCR8 when its image is signed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimulatedMeasurements {
    pub pcr0: [u8; 48],
    pub pcr1: [u8; 48],
    pub pcr2: [u8; 48],
    /// PCR8: set when the simulated image is signed ([`Self::signed_with`]); zeros otherwise.
    pub pcr8: Option<[u8; 48]>,
    /// Emulate a debug-mode enclave: every PCR reads as zeros, as on real hardware.
    pub debug_mode: bool,
}

impl SimulatedMeasurements {
    /// PCR0 as given; PCR1/PCR2 fixed SHA-384 digests of labels (they stand for the kernel and
    /// the application layer, which dev mode does not measure separately).
    pub fn from_pcr0(pcr0: [u8; 48]) -> Self {
        SimulatedMeasurements {
            pcr0,
            pcr1: Sha384::digest(PCR1_LABEL).into(),
            pcr2: Sha384::digest(PCR2_LABEL).into(),
            pcr8: None,
            debug_mode: false,
        }
    }

    /// PCR0 from 96 hex characters (the form nitro-cli prints), e.g. from `--sim-pcr0`.
    pub fn from_pcr0_hex(pcr0_hex: &str) -> Result<Self, NsmError> {
        let bytes = hex::decode(pcr0_hex.trim()).map_err(|e| {
            NsmError::InvalidMeasurement(format!("PCR0 '{pcr0_hex}' is not hex ({e}); give 96 hex characters"))
        })?;
        let pcr0: [u8; 48] = bytes.as_slice().try_into().map_err(|_| {
            NsmError::InvalidMeasurement(format!("PCR0 is {} bytes, expected 48 (96 hex characters)", bytes.len()))
        })?;
        Ok(Self::from_pcr0(pcr0))
    }

    /// PCR0 = SHA-384 of the file at `path` (normally the running agent binary).
    pub fn from_binary(path: &Path) -> Result<Self, NsmError> {
        let pcr0 = measure_file(path).map_err(|source| NsmError::Io {
            what: "measuring the binary for PCR0",
            path: path.display().to_string(),
            source,
        })?;
        Ok(Self::from_pcr0(pcr0))
    }

    /// Same measurements, for an image signed with the certificate `cert_der` (DER).
    pub fn signed_with(mut self, cert_der: &[u8]) -> Self {
        self.pcr8 = Some(pcr8_of_signing_certificate(cert_der));
        self
    }

    /// Same measurements with debug mode on or off.
    pub fn with_debug_mode(mut self, yes: bool) -> Self {
        self.debug_mode = yes;
        self
    }

    /// Value of PCR `index` as the simulated NSM reports it.
    pub fn pcr(&self, index: u16) -> [u8; 48] {
        match (self.debug_mode, index) {
            (true, _) => [0; 48],
            (false, 0) => self.pcr0,
            (false, 1) => self.pcr1,
            (false, 2) => self.pcr2,
            (false, 8) => self.pcr8.unwrap_or([0; 48]),
            _ => [0; 48],
        }
    }
}

struct Leaf {
    key: SigningKey,
    cert_der: Vec<u8>,
    issued_at: SystemTime,
}

/// Simulated NSM for dev mode: real-format documents chained to the dev CA.
pub struct SimulatedNsm {
    ca: DevCa,
    measurements: SimulatedMeasurements,
    module_id: String,
    leaf: Mutex<Option<Leaf>>,
}

impl std::fmt::Debug for SimulatedNsm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedNsm")
            .field("module_id", &self.module_id)
            .field("measurements", &self.measurements)
            .field("ca", &self.ca)
            .finish_non_exhaustive()
    }
}

impl SimulatedNsm {
    /// Load (or race-safely create) the dev CA under `dev_dir` and start a simulated module.
    pub fn new(dev_dir: &Path, m: SimulatedMeasurements) -> Result<Self, NsmError> {
        let ca = DevCa::load_or_create(dev_dir)?;
        let mut id = [0u8; 8];
        rand::rngs::OsRng.fill_bytes(&mut id);
        Ok(SimulatedNsm {
            ca,
            measurements: m,
            module_id: format!("i-sim-enc{}", hex::encode(id)),
            leaf: Mutex::new(None),
        })
    }

    /// The module id placed in documents.
    pub fn module_id(&self) -> &str {
        &self.module_id
    }

    /// The measurements this module reports.
    pub fn measurements(&self) -> &SimulatedMeasurements {
        &self.measurements
    }

    /// The dev CA (its root is what verifiers must pin).
    pub fn dev_ca(&self) -> &DevCa {
        &self.ca
    }

    fn issue_leaf(&self, now: SystemTime) -> Result<Leaf, NsmError> {
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let subject =
            certs::name(&format!("CN={}.sim.enclavemesh,OU=simulated NSM,O=Enclave Mesh,C=US", self.module_id))?;
        let cert_der = certs::issue(
            Profile::Leaf {
                issuer: self.ca.intermediate_name().clone(),
                enable_key_agreement: false,
                enable_key_encipherment: false,
            },
            subject,
            key.verifying_key(),
            certs::validity(now - LEAF_BACKDATE, now + LEAF_LIFETIME)?,
            self.ca.intermediate_key(),
        )?;
        Ok(Leaf { key, cert_der, issued_at: now })
    }

    /// The current leaf signing key (tests forge documents with it).
    #[cfg(test)]
    pub(crate) fn leaf_key(&self) -> SigningKey {
        let guard = self.leaf.lock().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().map(|l| l.key.clone()).expect("attestation() was called first")
    }

    /// Build and sign a document at time `now` (tests use other times).
    pub(crate) fn attestation_at(
        &self,
        user_data: Option<&[u8]>,
        nonce: Option<&[u8]>,
        public_key: Option<&[u8]>,
        now: SystemTime,
    ) -> Result<Vec<u8>, NsmError> {
        check_field_sizes(user_data, nonce, public_key)?;
        let mut guard = self.leaf.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let fresh =
            guard.as_ref().is_some_and(|l| now.duration_since(l.issued_at).is_ok_and(|age| age < LEAF_RENEW_AFTER));
        if !fresh {
            *guard = Some(self.issue_leaf(now)?);
        }
        let leaf = guard
            .as_ref()
            .ok_or_else(|| NsmError::Request { request: "Attestation", reason: "no leaf certificate".to_owned() })?;
        let timestamp_ms =
            u64::try_from(now.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()).unwrap_or(u64::MAX);
        let pcrs: BTreeMap<u16, Vec<u8>> = (0..DOCUMENT_PCRS).map(|i| (i, self.measurements.pcr(i).to_vec())).collect();
        let doc = AttestationDocument {
            module_id: self.module_id.clone(),
            digest: "SHA384".to_owned(),
            timestamp_ms,
            pcrs,
            certificate: leaf.cert_der.clone(),
            cabundle: vec![self.ca.root_der().to_vec(), self.ca.intermediate_der().to_vec()],
            public_key: public_key.map(<[u8]>::to_vec),
            user_data: user_data.map(<[u8]>::to_vec),
            nonce: nonce.map(<[u8]>::to_vec),
        };
        sign_document(&doc, &leaf.key)
    }
}

impl Nsm for SimulatedNsm {
    fn attestation(
        &self,
        user_data: Option<&[u8]>,
        nonce: Option<&[u8]>,
        public_key: Option<&[u8]>,
    ) -> Result<Vec<u8>, NsmError> {
        self.attestation_at(user_data, nonce, public_key, SystemTime::now())
    }

    fn describe_pcr(&self, index: u16) -> Result<Vec<u8>, NsmError> {
        if index >= MAX_PCRS {
            return Err(NsmError::Request {
                request: "DescribePCR",
                reason: format!("PCR index {index} out of range 0..{MAX_PCRS} (the real NSM answers InvalidIndex)"),
            });
        }
        Ok(self.measurements.pcr(index).to_vec())
    }

    fn kind(&self) -> &'static str {
        "simulated"
    }
}
