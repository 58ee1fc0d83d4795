//! The enclave's identity: its NSM and its ephemeral RSA key.
//!
//! Both are created once at start. The RSA key exists only in this process; its
//! public half goes into every attestation document so KMS can wrap answers to it.

use crate::config::NsmKind;
use crate::settings::NsmSettings;
use enclavemesh_attestation::binding::{self, Domain};
use enclavemesh_attestation::{NitroNsm, Nsm, SimulatedMeasurements, SimulatedNsm};
use enclavemesh_recipient::EphemeralKeyPair;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("NSM unavailable: {0}")]
    Nsm(#[from] enclavemesh_attestation::NsmError),
    #[error("--sim-pcr0 must be 96 hex characters (SHA-384), got {0:?}")]
    BadPcr0(String),
    #[error("cannot measure the agent binary for the simulated PCR0: {0}")]
    Measure(std::io::Error),
    #[error(
        "--sim-measurements {path}: {reason}; it must be nitro-cli's JSON with .Measurements.PCR0/1/2 (96 hex \
         each), as enclave-image/build.sh writes build/enclave.eif.json"
    )]
    Measurements { path: String, reason: String },
    #[error("cannot generate the ephemeral RSA key: {0}")]
    Key(#[from] enclavemesh_recipient::RecipientError),
}

/// NSM + ephemeral key, shared by bootstrap and the service.
pub struct EnclaveIdentity {
    pub nsm: Arc<dyn Nsm>,
    pub key: EphemeralKeyPair,
    pub pcr0_hex: String,
    /// PCR8 (the signing certificate's) when the image is signed.
    pub pcr8_hex: Option<String>,
}

/// Parses a 96-hex-char PCR value.
fn parse_pcr(hex_str: &str) -> Result<[u8; 48], IdentityError> {
    let bytes = hex::decode(hex_str.trim()).map_err(|_| IdentityError::BadPcr0(hex_str.to_string()))?;
    bytes.try_into().map_err(|_| IdentityError::BadPcr0(hex_str.to_string()))
}

/// The simulated PCR0: an explicit override, or the SHA-384 of the running binary so
/// that rebuilding the agent with different code changes its measurement.
fn simulated_pcr0(nsm: &NsmSettings) -> Result<[u8; 48], IdentityError> {
    match &nsm.sim_pcr0 {
        Some(h) => parse_pcr(h),
        None => {
            let exe = std::env::current_exe().map_err(IdentityError::Measure)?;
            enclavemesh_attestation::measure_file(&exe).map_err(IdentityError::Measure)
        }
    }
}

/// The measurements of a built image (nitro-cli's JSON), for the simulated NSM to report.
fn built_image_measurements(path: &std::path::Path) -> Result<SimulatedMeasurements, IdentityError> {
    let bad = |reason: String| IdentityError::Measurements { path: path.display().to_string(), reason };
    let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read it ({e})")))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(format!("not JSON ({e})")))?;
    let pcr = |k: &str| -> Result<Option<[u8; 48]>, IdentityError> {
        match json["Measurements"][k].as_str() {
            None => Ok(None),
            Some(h) => parse_pcr(h).map(Some).map_err(|_| bad(format!("{k} is not 96 hex characters"))),
        }
    };
    let need = |k: &str| pcr(k)?.ok_or_else(|| bad(format!("no {k}")));
    let mut m = SimulatedMeasurements::from_pcr0(need("PCR0")?);
    m.pcr1 = need("PCR1")?;
    m.pcr2 = need("PCR2")?;
    m.pcr8 = pcr("PCR8")?;
    Ok(m)
}

impl EnclaveIdentity {
    pub fn create(settings: &NsmSettings) -> Result<Self, IdentityError> {
        let nsm: Arc<dyn Nsm> = match settings.kind {
            NsmKind::Nitro => Arc::new(NitroNsm::open()?),
            NsmKind::Simulated => {
                let mut m = match &settings.sim_measurements {
                    Some(path) => built_image_measurements(path)?,
                    None => SimulatedMeasurements::from_pcr0(simulated_pcr0(settings)?),
                };
                if let Some(path) = &settings.sim_signing_cert {
                    m = m.signed_with(&enclavemesh_attestation::read_signing_certificate(path)?);
                }
                m.debug_mode = settings.sim_debug_mode;
                Arc::new(SimulatedNsm::new(&settings.dev_dir, m)?)
            }
        };
        let pcr0_hex = hex::encode(nsm.describe_pcr(0)?);
        let pcr8 = nsm.describe_pcr(8)?;
        let pcr8_hex = pcr8.iter().any(|b| *b != 0).then(|| hex::encode(pcr8));
        let key = EphemeralKeyPair::generate()?;
        Ok(Self { nsm, key, pcr0_hex, pcr8_hex })
    }

    /// An attestation document binding our public key, for KMS's Recipient. KMS reads
    /// the key from `public_key`; `user_data` says, under its own domain, that this
    /// document was made for that purpose.
    pub fn attest_for_kms(&self) -> Result<Vec<u8>, enclavemesh_attestation::NsmError> {
        let nonce: [u8; 32] = rand::random();
        let der = self.key.public_key_der();
        let purpose = binding::user_data(Domain::KmsRecipient, der);
        self.nsm.attestation(Some(&purpose), Some(&nonce), Some(der))
    }
}
