//! The enclave's ephemeral RSA key pair and unwrapping of `CiphertextForRecipient`.

use core::fmt;

use aes::Aes256;
use cbc::cipher::{BlockDecryptMut, KeyIvInit, block_padding::Pkcs7};
use cms::content_info::ContentInfo;
use cms::enveloped_data::{EnvelopedData, RecipientIdentifier, RecipientInfo};
use der::Decode;
use der::asn1::OctetString;
use rsa::pkcs8::EncodePublicKey;
use rsa::{Oaep, RsaPrivateKey};
use zeroize::Zeroizing;

use crate::RecipientError;
use crate::algorithms::{
    CEK_LEN, IV_LEN, MAX_CMS_LEN, OID_AES_256_CBC, OID_DATA, OID_ENVELOPED_DATA, check_oaep_sha256,
    subject_key_identifier,
};

/// RSA modulus size. KMS accepts RSA-2048..4096 in the attestation document; 2048 keeps
/// generation fast inside an enclave while matching what kmstool uses.
const RSA_BITS: usize = 2048;

/// An RSA-2048 key pair generated for one attestation exchange.
///
/// The private key never leaves this struct: it is zeroized on drop (by `rsa`'s own
/// `ZeroizeOnDrop`) and `Debug` prints only the public key identifier.
pub struct EphemeralKeyPair {
    private: RsaPrivateKey,
    spki_der: Vec<u8>,
    ski: Vec<u8>,
}

impl fmt::Debug for EphemeralKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EphemeralKeyPair")
            .field("subject_key_identifier", &hex_lower(&self.ski))
            .field("private", &"<redacted>")
            .finish()
    }
}

impl EphemeralKeyPair {
    /// Generates a fresh RSA-2048 key pair from the OS RNG.
    pub fn generate() -> Result<Self, RecipientError> {
        let private =
            RsaPrivateKey::new(&mut rand::rngs::OsRng, RSA_BITS).map_err(|e| RecipientError::Crypto(e.to_string()))?;
        Self::from_private(private)
    }

    fn from_private(private: RsaPrivateKey) -> Result<Self, RecipientError> {
        let spki_der =
            private.to_public_key().to_public_key_der().map_err(|e| RecipientError::Crypto(e.to_string()))?.into_vec();
        let ski = subject_key_identifier(&spki_der)?;
        Ok(Self { private, spki_der, ski })
    }

    /// SubjectPublicKeyInfo DER of the public key: the bytes to pass as `public_key` in
    /// the NSM attestation request (and therefore what KMS encrypts to).
    pub fn public_key_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// The CMS `rid` this key answers to (see [`crate::subject_key_identifier`]).
    pub fn subject_key_identifier(&self) -> &[u8] {
        &self.ski
    }

    /// Opens a `CiphertextForRecipient` (DER `ContentInfo`/`EnvelopedData`) addressed to
    /// this key and returns the plaintext in zeroizing memory.
    ///
    /// A `KeyTransRecipientInfo` identified by `issuerAndSerialNumber` cannot be matched
    /// against a bare key, so it is tried as if addressed to us.
    pub fn unwrap(&self, cms_der: &[u8]) -> Result<Zeroizing<Vec<u8>>, RecipientError> {
        if cms_der.len() > MAX_CMS_LEN {
            return Err(RecipientError::TooLarge { len: cms_der.len(), max: MAX_CMS_LEN });
        }
        let content_info = ContentInfo::from_der(cms_der)?;
        if content_info.content_type != OID_ENVELOPED_DATA {
            return Err(RecipientError::UnsupportedAlgorithm(content_info.content_type));
        }
        let enveloped: EnvelopedData = content_info.content.decode_as()?;

        let mut saw_ktri = false;
        let mut ktri_for_us = None;
        for info in enveloped.recip_infos.0.iter() {
            if let RecipientInfo::Ktri(ktri) = info {
                saw_ktri = true;
                let ours = match &ktri.rid {
                    RecipientIdentifier::SubjectKeyIdentifier(ski) => ski.0.as_bytes() == self.ski.as_slice(),
                    RecipientIdentifier::IssuerAndSerialNumber(_) => true,
                };
                if ours {
                    ktri_for_us = Some(ktri);
                    break;
                }
            }
        }
        let ktri = match (ktri_for_us, saw_ktri) {
            (Some(k), _) => k,
            (None, true) => return Err(RecipientError::WrongRecipient),
            (None, false) => {
                return Err(RecipientError::Malformed("EnvelopedData has no KeyTransRecipientInfo".into()));
            }
        };
        check_oaep_sha256(&ktri.key_enc_alg)?;

        let eci = &enveloped.encrypted_content;
        if eci.content_type != OID_DATA {
            return Err(RecipientError::UnsupportedAlgorithm(eci.content_type));
        }
        if eci.content_enc_alg.oid != OID_AES_256_CBC {
            return Err(RecipientError::UnsupportedAlgorithm(eci.content_enc_alg.oid));
        }
        let iv: OctetString = eci
            .content_enc_alg
            .parameters
            .as_ref()
            .ok_or_else(|| RecipientError::Malformed("AES-256-CBC without an IV".into()))?
            .decode_as()?;
        let iv: [u8; IV_LEN] =
            iv.as_bytes().try_into().map_err(|_| RecipientError::Malformed("AES-256-CBC IV is not 16 bytes".into()))?;
        let ciphertext = eci
            .encrypted_content
            .as_ref()
            .ok_or_else(|| RecipientError::Malformed("encryptedContent is absent".into()))?
            .as_bytes();
        if ciphertext.is_empty() || ciphertext.len() % IV_LEN != 0 {
            return Err(RecipientError::Malformed("encryptedContent is not a whole number of AES blocks".into()));
        }

        let cek = Zeroizing::new(
            self.private
                .decrypt(Oaep::new::<sha2::Sha256>(), ktri.enc_key.as_bytes())
                .map_err(|_| RecipientError::DecryptFailed)?,
        );
        if cek.len() != CEK_LEN {
            return Err(RecipientError::DecryptFailed);
        }
        let plaintext = cbc::Decryptor::<Aes256>::new(cek.as_slice().into(), &iv.into())
            .decrypt_padded_vec_mut::<Pkcs7>(ciphertext)
            .map_err(|_| RecipientError::DecryptFailed)?;
        Ok(Zeroizing::new(plaintext))
    }
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    //! Interop with OpenSSL lives here because it needs the private key as PEM, which the
    //! public API deliberately never exposes.
    use super::*;
    use crate::wrap_for_recipient;
    use rsa::pkcs8::{EncodePrivateKey, LineEnding};
    use std::process::Command;

    fn openssl_available() -> bool {
        Command::new("openssl").arg("version").output().is_ok_and(|o| o.status.success())
    }

    #[test]
    fn debug_redacts_private_key() {
        let kp = EphemeralKeyPair::generate().unwrap();
        let s = format!("{kp:?}");
        assert!(s.contains("<redacted>"));
        assert!(!s.to_lowercase().contains("prime"));
    }

    #[test]
    fn openssl_cms_decrypts_our_output() {
        if !openssl_available() {
            eprintln!("SKIPPED: `openssl` binary not found; cannot cross-check CMS output");
            return;
        }
        let kp = EphemeralKeyPair::generate().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join("key.pem");
        let msg_path = dir.path().join("msg.der");
        let out_path = dir.path().join("out.bin");
        let pem = kp.private.to_pkcs8_pem(LineEnding::LF).unwrap();
        std::fs::write(&key_path, pem.as_bytes()).unwrap();
        let plaintext: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        std::fs::write(&msg_path, wrap_for_recipient(kp.public_key_der(), &plaintext).unwrap()).unwrap();
        let out = Command::new("openssl")
            .args(["cms", "-decrypt", "-inform", "DER", "-in"])
            .arg(&msg_path)
            .arg("-inkey")
            .arg(&key_path)
            .arg("-out")
            .arg(&out_path)
            .output()
            .unwrap();
        assert!(out.status.success(), "openssl cms -decrypt failed: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(std::fs::read(&out_path).unwrap(), plaintext);

        // And the structure, as OpenSSL sees it, names the algorithms we claim.
        let print = Command::new("openssl")
            .args(["cms", "-cmsout", "-print", "-inform", "DER", "-in"])
            .arg(&msg_path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&print.stdout);
        assert!(text.contains("rsaesOaep"), "{text}");
        assert!(text.contains("sha256"), "{text}");
        assert!(text.contains("mgf1"), "{text}");
        assert!(text.contains("aes-256-cbc"), "{text}");
        assert!(text.contains("subjectKeyIdentifier"), "{text}");
    }

    #[test]
    fn we_decrypt_openssl_output() {
        if !openssl_available() {
            eprintln!("SKIPPED: `openssl` binary not found; cannot cross-check CMS input");
            return;
        }
        // OpenSSL needs a certificate to encrypt to; a self-signed one over our key is fine.
        let kp = EphemeralKeyPair::generate().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join("key.pem");
        let cert_path = dir.path().join("cert.pem");
        let in_path = dir.path().join("in.bin");
        let msg_path = dir.path().join("msg.der");
        std::fs::write(&key_path, kp.private.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes()).unwrap();
        let st = Command::new("openssl")
            .args(["req", "-new", "-x509", "-subj", "/CN=enclave", "-days", "1", "-key"])
            .arg(&key_path)
            .arg("-out")
            .arg(&cert_path)
            .output()
            .unwrap();
        assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
        std::fs::write(&in_path, b"data key from openssl").unwrap();
        let st = Command::new("openssl")
            .args(["cms", "-encrypt", "-binary", "-aes-256-cbc", "-outform", "DER", "-in"])
            .arg(&in_path)
            .arg("-out")
            .arg(&msg_path)
            .arg("-recip")
            .arg(&cert_path)
            // -keyopt applies to the preceding -recip.
            .args(["-keyopt", "rsa_padding_mode:oaep", "-keyopt", "rsa_oaep_md:sha256"])
            .args(["-keyopt", "rsa_mgf1_md:sha256"])
            .output()
            .unwrap();
        assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
        let der = std::fs::read(&msg_path).unwrap();
        // Without -keyid OpenSSL addresses the recipient by issuerAndSerialNumber, which
        // we try against our key.
        assert_eq!(kp.unwrap(&der).unwrap().as_slice(), b"data key from openssl");
    }
}
