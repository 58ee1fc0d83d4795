//! The attestation document: a COSE_Sign1 (ES384) whose payload is the CBOR map the Nitro
//! Secure Module emits. This module only encodes and decodes; trust decisions live in
//! `verifier.rs`.

use std::collections::BTreeMap;
use std::io::Cursor;

use ciborium::Value;
use coset::{CborSerializable, CoseSign1, Header, TaggedCborSerializable, iana};
use p384::ecdsa::{Signature, SigningKey, signature::Signer as _};

use crate::error::{NsmError, VerifyError};
use crate::{MAX_DOCUMENT_BYTES, MAX_FIELD_BYTES};

/// Most PCRs an NSM exposes (indexes 0..32).
pub const MAX_PCRS: u16 = 32;

/// Decoded attestation document payload. Obtained verified from `Verifier::verify`, or
/// unverified (for display/debugging only) from [`AttestationDocument::parse_unverified`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationDocument {
    /// NSM module id, e.g. `i-0146…-enc0198…` (simulated: `i-sim-enc…`).
    pub module_id: String,
    /// PCR digest algorithm, always "SHA384" on Nitro.
    pub digest: String,
    /// Creation time, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// PCR index -> value (48 bytes for SHA384).
    pub pcrs: BTreeMap<u16, Vec<u8>>,
    /// DER leaf certificate whose key signed the document.
    pub certificate: Vec<u8>,
    /// DER CA certificates, root first; the leaf is issued by the last one.
    pub cabundle: Vec<Vec<u8>>,
    /// Optional public key supplied by the enclave (e.g. RSA SPKI DER for KMS Recipient).
    pub public_key: Option<Vec<u8>>,
    /// Optional application data supplied by the enclave.
    pub user_data: Option<Vec<u8>>,
    /// Optional nonce supplied by the enclave (echo of the verifier's challenge).
    pub nonce: Option<Vec<u8>>,
}

impl AttestationDocument {
    /// Value of PCR `i`, if present.
    pub fn pcr(&self, i: u16) -> Option<&[u8]> {
        self.pcrs.get(&i).map(Vec::as_slice)
    }

    /// Lower-case hex of PCR `i`, if present (the form nitro-cli prints and KMS policies use).
    pub fn pcr_hex(&self, i: u16) -> Option<String> {
        self.pcr(i).map(hex::encode)
    }

    /// Whether this document comes from a debug-mode enclave (PCR0 all zeros).
    pub fn is_debug_mode(&self) -> bool {
        self.pcr(0).is_some_and(|p| p.iter().all(|b| *b == 0))
    }

    /// Decode a document WITHOUT checking signature, chain, freshness or PCRs. Only for
    /// display and debugging; never base a trust decision on the result.
    /// QEMU's unsigned documents are decoded too (they are just as unverified).
    pub fn parse_unverified(cose: &[u8]) -> Result<Self, VerifyError> {
        match decode_cose(cose) {
            Ok(d) => Ok(d.document),
            Err(e) => decode_qemu_unsigned(cose).map_err(|_| e),
        }
    }
}

/// A decoded COSE_Sign1 with what signature verification needs.
pub(crate) struct DecodedCose {
    pub document: AttestationDocument,
    /// The COSE Sig_structure ["Signature1", protected, b"", payload] that was signed.
    pub to_be_signed: Vec<u8>,
    pub signature: Vec<u8>,
}

fn malformed(s: impl Into<String>) -> VerifyError {
    VerifyError::Malformed(s.into())
}

/// QEMU's `nitro-enclave` machine (its virtio-nsm) does not sign: the COSE_Sign1 has the
/// protected header `{1: -1}` (these bytes), a signature of [`QEMU_ZERO_BYTES`] zero
/// bytes, and that many zero bytes as the certificate and as the one cabundle entry.
pub(crate) const QEMU_PROTECTED_HEADER: [u8; 3] = [0xa1, 0x01, 0x20];
/// Length of QEMU's all-zero signature, certificate and cabundle entry.
pub(crate) const QEMU_ZERO_BYTES: usize = 64;

fn check_size(cose: &[u8]) -> Result<(), VerifyError> {
    if cose.len() > MAX_DOCUMENT_BYTES {
        return Err(VerifyError::TooLarge { len: cose.len(), limit: MAX_DOCUMENT_BYTES });
    }
    if cose.is_empty() {
        return Err(malformed("empty input"));
    }
    Ok(())
}

/// Decode the COSE_Sign1 envelope (untagged as the NSM emits it, or with CBOR tag 18).
pub(crate) fn decode_cose(cose: &[u8]) -> Result<DecodedCose, VerifyError> {
    check_size(cose)?;
    // 0xd2 = CBOR tag 18 (COSE_Sign1).
    let sign1 = match if cose[0] == 0xd2 { CoseSign1::from_tagged_slice(cose) } else { CoseSign1::from_slice(cose) } {
        Ok(s) => s,
        Err(e) => {
            if decode_qemu_unsigned(cose).is_ok() {
                return Err(malformed(
                    "this is an UNSIGNED document from QEMU's emulated nitro-enclave machine; only a verifier in \
                     the explicit QEMU test mode accepts it (trust anchor `qemu-unsigned`)",
                ));
            }
            return Err(malformed(format!("not a COSE_Sign1 structure ({e})")));
        }
    };
    let alg = sign1.protected.header.alg.clone();
    if alg != Some(coset::RegisteredLabelWithPrivate::Assigned(iana::Algorithm::ES384)) {
        return Err(malformed(format!("protected header alg is {alg:?}, expected ES384 (-35)")));
    }
    let payload = sign1.payload.as_deref().ok_or(VerifyError::MissingField("payload"))?;
    let document = decode_payload(payload)?;
    Ok(DecodedCose { to_be_signed: sign1.tbs_data(b""), signature: sign1.signature.clone(), document })
}

/// Decode exactly QEMU's unsigned shape: `[h'a10120', {}, payload, h'00'*64]` (tag 18
/// optional), whose payload carries all-zero `certificate` and a single all-zero
/// `cabundle` entry. Anything else is refused: this is the only unsigned form accepted,
/// and only by a verifier whose trust anchor is [`crate::TrustAnchor::QemuUnsigned`].
pub(crate) fn decode_qemu_unsigned(cose: &[u8]) -> Result<AttestationDocument, VerifyError> {
    check_size(cose)?;
    let mut cursor = Cursor::new(cose);
    let value: Value = ciborium::de::from_reader(&mut cursor).map_err(|e| malformed(format!("not CBOR ({e})")))?;
    if usize::try_from(cursor.position()).ok() != Some(cose.len()) {
        return Err(malformed("trailing bytes after the COSE_Sign1"));
    }
    let value = match value {
        Value::Tag(18, inner) => *inner,
        other => other,
    };
    let Value::Array(items) = value else { return Err(malformed("a COSE_Sign1 is a CBOR array")) };
    let [protected, unprotected, payload, signature]: [Value; 4] =
        items.try_into().map_err(|_| malformed("a COSE_Sign1 has four elements"))?;
    let not_qemu = |what: &str| malformed(format!("not QEMU's unsigned document shape: {what}"));
    match protected {
        Value::Bytes(b) if b == QEMU_PROTECTED_HEADER => {}
        _ => return Err(not_qemu("the protected header is not {1: -1}")),
    }
    match unprotected {
        Value::Map(m) if m.is_empty() => {}
        _ => return Err(not_qemu("the unprotected header is not empty")),
    }
    match signature {
        Value::Bytes(b) if b.len() == QEMU_ZERO_BYTES && b.iter().all(|x| *x == 0) => {}
        _ => return Err(not_qemu("the signature is not 64 zero bytes")),
    }
    let Value::Bytes(payload) = payload else { return Err(not_qemu("the payload is not a byte string")) };
    let document = decode_payload(&payload)?;
    let zeros = |b: &[u8]| b.len() == QEMU_ZERO_BYTES && b.iter().all(|x| *x == 0);
    if !zeros(&document.certificate) || document.cabundle.len() != 1 || !zeros(&document.cabundle[0]) {
        return Err(not_qemu("the certificate and the one cabundle entry are not 64 zero bytes each"));
    }
    Ok(document)
}

fn bytes_field(v: Value, name: &'static str, max: usize) -> Result<Vec<u8>, VerifyError> {
    match v {
        Value::Bytes(b) if b.len() <= max => Ok(b),
        Value::Bytes(b) => Err(malformed(format!("{name} is {} bytes, more than {max}", b.len()))),
        other => Err(malformed(format!("{name} must be a byte string, found {}", type_name(&other)))),
    }
}

fn optional_bytes(v: Value, name: &'static str) -> Result<Option<Vec<u8>>, VerifyError> {
    match v {
        Value::Null => Ok(None),
        other => bytes_field(other, name, MAX_FIELD_BYTES).map(Some),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Integer(_) => "integer",
        Value::Bytes(_) => "byte string",
        Value::Float(_) => "float",
        Value::Text(_) => "text",
        Value::Bool(_) => "bool",
        Value::Null => "null",
        Value::Tag(..) => "tag",
        Value::Array(_) => "array",
        Value::Map(_) => "map",
        _ => "unknown",
    }
}

/// Largest DER certificate accepted in the document (real ones are ~0.5-0.8 KiB).
const MAX_CERT_BYTES: usize = 4096;
/// Most CA certificates accepted in `cabundle` (real chains have 4).
const MAX_CABUNDLE: usize = 8;

/// Decode the NSM payload map (definite or indefinite length; unknown keys ignored).
fn decode_payload(payload: &[u8]) -> Result<AttestationDocument, VerifyError> {
    let mut cursor = Cursor::new(payload);
    let value: Value =
        ciborium::de::from_reader(&mut cursor).map_err(|e| malformed(format!("payload is not CBOR ({e})")))?;
    if usize::try_from(cursor.position()).ok() != Some(payload.len()) {
        return Err(malformed("trailing bytes after the payload map"));
    }
    let Value::Map(entries) = value else {
        return Err(malformed(format!("payload must be a CBOR map, found {}", type_name(&value))));
    };

    let mut module_id = None;
    let mut digest = None;
    let mut timestamp = None;
    let mut pcrs = None;
    let mut certificate = None;
    let mut cabundle = None;
    let mut public_key = None;
    let mut user_data = None;
    let mut nonce = None;
    let mut seen: Vec<String> = Vec::new();

    for (k, v) in entries {
        let Value::Text(key) = k else {
            return Err(malformed(format!("payload map key must be text, found {}", type_name(&k))));
        };
        if seen.contains(&key) {
            return Err(malformed(format!("duplicate payload key `{key}`")));
        }
        match key.as_str() {
            "module_id" => match v {
                Value::Text(s) if !s.is_empty() && s.len() <= 256 => module_id = Some(s),
                other => {
                    return Err(malformed(format!("module_id must be non-empty text, found {}", type_name(&other))));
                }
            },
            "digest" => match v {
                Value::Text(s) if s == "SHA384" => digest = Some(s),
                Value::Text(s) => {
                    return Err(malformed(format!("digest is '{s}', expected 'SHA384'")));
                }
                other => {
                    return Err(malformed(format!("digest must be text, found {}", type_name(&other))));
                }
            },
            "timestamp" => match v {
                Value::Integer(i) => {
                    timestamp = Some(u64::try_from(i).map_err(|_| malformed("timestamp is not a u64"))?)
                }
                other => {
                    return Err(malformed(format!(
                        "timestamp must be an unsigned integer, found {}",
                        type_name(&other)
                    )));
                }
            },
            "pcrs" => pcrs = Some(decode_pcrs(v)?),
            "certificate" => certificate = Some(bytes_field(v, "certificate", MAX_CERT_BYTES)?),
            "cabundle" => match v {
                Value::Array(items) if !items.is_empty() && items.len() <= MAX_CABUNDLE => {
                    let certs = items
                        .into_iter()
                        .map(|c| bytes_field(c, "cabundle entry", MAX_CERT_BYTES))
                        .collect::<Result<Vec<_>, _>>()?;
                    cabundle = Some(certs);
                }
                Value::Array(items) => {
                    return Err(malformed(format!(
                        "cabundle has {} entries, expected 1..={MAX_CABUNDLE}",
                        items.len()
                    )));
                }
                other => {
                    return Err(malformed(format!("cabundle must be an array, found {}", type_name(&other))));
                }
            },
            "public_key" => public_key = optional_bytes(v, "public_key")?,
            "user_data" => user_data = optional_bytes(v, "user_data")?,
            "nonce" => nonce = optional_bytes(v, "nonce")?,
            _ => {}
        }
        seen.push(key);
    }

    let pcrs: BTreeMap<u16, Vec<u8>> = pcrs.ok_or(VerifyError::MissingField("pcrs"))?;
    if !pcrs.contains_key(&0) {
        return Err(VerifyError::MissingField("pcrs[0]"));
    }
    Ok(AttestationDocument {
        module_id: module_id.ok_or(VerifyError::MissingField("module_id"))?,
        digest: digest.ok_or(VerifyError::MissingField("digest"))?,
        timestamp_ms: timestamp.ok_or(VerifyError::MissingField("timestamp"))?,
        pcrs,
        certificate: certificate.ok_or(VerifyError::MissingField("certificate"))?,
        cabundle: cabundle.ok_or(VerifyError::MissingField("cabundle"))?,
        public_key,
        user_data,
        nonce,
    })
}

fn decode_pcrs(v: Value) -> Result<BTreeMap<u16, Vec<u8>>, VerifyError> {
    let Value::Map(entries) = v else {
        return Err(malformed(format!("pcrs must be a map, found {}", type_name(&v))));
    };
    if entries.is_empty() || entries.len() > usize::from(MAX_PCRS) {
        return Err(malformed(format!("pcrs has {} entries, expected 1..={MAX_PCRS}", entries.len())));
    }
    let mut out = BTreeMap::new();
    for (k, v) in entries {
        let index = match k {
            Value::Integer(i) => u16::try_from(i).ok().filter(|i| *i < MAX_PCRS),
            _ => None,
        }
        .ok_or_else(|| malformed(format!("pcrs key must be an integer 0..{MAX_PCRS}")))?;
        let value = match v {
            Value::Bytes(b) if matches!(b.len(), 32 | 48 | 64) => b,
            Value::Bytes(b) => {
                return Err(malformed(format!("PCR{index} is {} bytes, expected 32, 48 or 64", b.len())));
            }
            other => {
                return Err(malformed(format!("PCR{index} must be a byte string, found {}", type_name(&other))));
            }
        };
        if out.insert(index, value).is_some() {
            return Err(malformed(format!("duplicate PCR{index}")));
        }
    }
    Ok(out)
}

/// Encode the payload map in the NSM's key order.
pub(crate) fn encode_payload(doc: &AttestationDocument) -> Result<Vec<u8>, NsmError> {
    let opt = |b: &Option<Vec<u8>>| b.clone().map_or(Value::Null, Value::Bytes);
    let text = |s: &str| Value::Text(s.to_owned());
    let map = Value::Map(vec![
        (text("module_id"), Value::Text(doc.module_id.clone())),
        (text("digest"), Value::Text(doc.digest.clone())),
        (text("timestamp"), Value::Integer(doc.timestamp_ms.into())),
        (
            text("pcrs"),
            Value::Map(doc.pcrs.iter().map(|(i, v)| (Value::Integer((*i).into()), Value::Bytes(v.clone()))).collect()),
        ),
        (text("certificate"), Value::Bytes(doc.certificate.clone())),
        (text("cabundle"), Value::Array(doc.cabundle.iter().cloned().map(Value::Bytes).collect())),
        (text("public_key"), opt(&doc.public_key)),
        (text("user_data"), opt(&doc.user_data)),
        (text("nonce"), opt(&doc.nonce)),
    ]);
    let mut out = Vec::new();
    ciborium::ser::into_writer(&map, &mut out)
        .map_err(|e| NsmError::Crypto { context: "encoding the attestation payload", reason: e.to_string() })?;
    Ok(out)
}

/// Wrap `doc` into an untagged COSE_Sign1 (as the NSM emits it) signed with ES384 by `leaf_key`.
/// The signature is raw r||s (96 bytes), as COSE requires.
pub(crate) fn sign_document(doc: &AttestationDocument, leaf_key: &SigningKey) -> Result<Vec<u8>, NsmError> {
    let payload = encode_payload(doc)?;
    let protected = Header { alg: Some(coset::Algorithm::Assigned(iana::Algorithm::ES384)), ..Default::default() };
    let mut sign1 = coset::CoseSign1Builder::new().protected(protected).payload(payload).build();
    let tbs = sign1.tbs_data(b"");
    let sig: Signature = leaf_key
        .try_sign(&tbs)
        .map_err(|e| NsmError::Crypto { context: "signing the attestation document", reason: e.to_string() })?;
    sign1.signature = sig.to_bytes().to_vec();
    sign1.to_vec().map_err(|e| NsmError::Crypto { context: "encoding the COSE_Sign1", reason: e.to_string() })
}
