//! Producing `CiphertextForRecipient` (the KMS side of the exchange).

use aes::Aes256;
use cbc::cipher::{BlockEncryptMut, KeyIvInit, block_padding::Pkcs7};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::enveloped_data::{
    EncryptedContentInfo, EnvelopedData, KeyTransRecipientInfo, RecipientIdentifier, RecipientInfo, RecipientInfos,
};
use der::asn1::{OctetString, SetOfVec};
use der::{Any, Encode, Tag};
use rand::RngCore;
use rsa::pkcs8::DecodePublicKey;
use rsa::{Oaep, RsaPublicKey};
use spki::AlgorithmIdentifierOwned;
use x509_cert::ext::pkix::SubjectKeyIdentifier;
use zeroize::Zeroizing;

use crate::RecipientError;
use crate::algorithms::{
    CEK_LEN, IV_LEN, MAX_PLAINTEXT_LEN, OID_AES_256_CBC, OID_DATA, OID_ENVELOPED_DATA, oaep_sha256_algorithm,
    subject_key_identifier,
};

/// Largest SPKI we accept (an RSA-4096 SPKI is ~550 bytes; the NSM caps public_key at 1 KiB).
const MAX_SPKI_LEN: usize = 2048;

/// Encrypts `plaintext` to the RSA public key `recipient_spki_der` (SubjectPublicKeyInfo
/// DER, exactly the bytes an attestation document carries in `public_key`) and returns the
/// DER of a CMS `ContentInfo` / `EnvelopedData`.
///
/// A fresh AES-256 content-encryption key and IV are drawn for every call; the CEK is
/// zeroized before returning.
pub fn wrap_for_recipient(recipient_spki_der: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, RecipientError> {
    if plaintext.len() > MAX_PLAINTEXT_LEN {
        return Err(RecipientError::TooLarge { len: plaintext.len(), max: MAX_PLAINTEXT_LEN });
    }
    if recipient_spki_der.len() > MAX_SPKI_LEN {
        return Err(RecipientError::TooLarge { len: recipient_spki_der.len(), max: MAX_SPKI_LEN });
    }
    let ski = subject_key_identifier(recipient_spki_der)?;
    let public_key = RsaPublicKey::from_public_key_der(recipient_spki_der)
        .map_err(|e| RecipientError::Malformed(format!("recipient public key: {e}")))?;

    let mut rng = rand::rngs::OsRng;
    let mut cek = Zeroizing::new([0u8; CEK_LEN]);
    rng.fill_bytes(cek.as_mut());
    let mut iv = [0u8; IV_LEN];
    rng.fill_bytes(&mut iv);

    let encrypted_content =
        cbc::Encryptor::<Aes256>::new(cek.as_ref().into(), &iv.into()).encrypt_padded_vec_mut::<Pkcs7>(plaintext);
    let encrypted_key = public_key
        .encrypt(&mut rng, Oaep::new::<sha2::Sha256>(), cek.as_ref())
        .map_err(|e| RecipientError::Crypto(e.to_string()))?;

    let ktri = KeyTransRecipientInfo {
        // RFC 5652 §6.2.1: version 2 when rid is subjectKeyIdentifier.
        version: CmsVersion::V2,
        rid: RecipientIdentifier::SubjectKeyIdentifier(SubjectKeyIdentifier(OctetString::new(ski)?)),
        key_enc_alg: oaep_sha256_algorithm()?,
        enc_key: OctetString::new(encrypted_key)?,
    };
    let mut infos = SetOfVec::new();
    infos.insert(RecipientInfo::Ktri(ktri))?;

    let enveloped = EnvelopedData {
        // RFC 5652 §6.1: a ktri of version 2 makes the EnvelopedData version 2.
        version: CmsVersion::V2,
        originator_info: None,
        recip_infos: RecipientInfos(infos),
        encrypted_content: EncryptedContentInfo {
            content_type: OID_DATA,
            content_enc_alg: AlgorithmIdentifierOwned {
                oid: OID_AES_256_CBC,
                parameters: Some(Any::new(Tag::OctetString, iv.to_vec())?),
            },
            encrypted_content: Some(OctetString::new(encrypted_content)?),
        },
        unprotected_attrs: None,
    };
    let content_info = ContentInfo { content_type: OID_ENVELOPED_DATA, content: Any::encode_from(&enveloped)? };
    Ok(content_info.to_der()?)
}
