//! SigV4 verification: which identity sent a request, proven by its signature.
//!
//! Why verify in an emulator: key policies here name principals (admin, instance role,
//! data owner), and a policy test is worthless if a caller can become the admin by
//! writing the admin's access key id (which is not secret: it is in logs and CloudTrail)
//! into its header. So, as AWS does, the emulator recomputes the signature with the
//! identity's secret over the request it received and refuses a mismatch.
//!
//! The steps are AWS's (Signature Version 4): canonical request (method, path, query,
//! the signed headers, SHA-256 of the body), string to sign (algorithm, `X-Amz-Date`,
//! credential scope, hash of the canonical request), HMAC-SHA256 key chain from
//! `AWS4<secret>` over date, region, service and `aws4_request`. The request must be
//! signed for this region and `kms`, within five minutes of the emulator's clock, and
//! temporary keys must present their session token.

use std::time::{Duration, SystemTime};

use axum::http::{HeaderMap, Method, Uri};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{ErrorKind, KmsError};
use crate::identity::{Identities, Identity};

/// Furthest `X-Amz-Date` may be from the emulator's clock (AWS: 5 minutes).
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The parts of an `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…` header.
struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn incomplete(msg: impl Into<String>) -> KmsError {
    KmsError::new(ErrorKind::IncompleteSignature, msg)
}

fn parse_authorization(value: &str) -> Result<Authorization<'_>, KmsError> {
    let rest = value.strip_prefix(ALGORITHM).ok_or_else(|| {
        incomplete(format!("Authorization header must start with {ALGORITHM} (sign the request with SigV4)"))
    })?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let credential = credential.ok_or_else(|| incomplete("Authorization header has no Credential="))?;
    let mut scope = credential.split('/');
    let (access_key_id, date, region, service, terminator) =
        (scope.next(), scope.next(), scope.next(), scope.next(), scope.next());
    let (Some(access_key_id), Some(date), Some(region), Some(service), Some("aws4_request"), None) =
        (access_key_id, date, region, service, terminator, scope.next())
    else {
        return Err(incomplete(format!(
            "Credential={credential} is not ACCESS_KEY_ID/YYYYMMDD/REGION/SERVICE/aws4_request"
        )));
    };
    if access_key_id.is_empty() {
        return Err(incomplete("Authorization Credential= has an empty access key id"));
    }
    let signed_headers: Vec<&str> = signed
        .ok_or_else(|| incomplete("Authorization header has no SignedHeaders="))?
        .split(';')
        .filter(|h| !h.is_empty())
        .collect();
    let signature = signature.ok_or_else(|| incomplete("Authorization header has no Signature="))?;
    Ok(Authorization { access_key_id, date, region, service, signed_headers, signature })
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return Vec::new(),
    };
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// `name:value` for one signed header: values trimmed, inner runs of spaces collapsed,
/// repeated headers joined with commas. `host` is HTTP/2's `:authority` when the request
/// came over h2 (which has no Host header).
fn canonical_header(headers: &HeaderMap, uri: &Uri, name: &str) -> Result<String, KmsError> {
    if name == "host"
        && headers.get("host").is_none()
        && let Some(authority) = uri.authority()
    {
        return Ok(format!("host:{authority}\n"));
    }
    let values: Vec<String> = headers
        .get_all(name)
        .iter()
        .map(|v| {
            let s = String::from_utf8_lossy(v.as_bytes());
            s.split_whitespace().collect::<Vec<_>>().join(" ")
        })
        .collect();
    if values.is_empty() {
        return Err(incomplete(format!("signed header {name} is missing from the request")));
    }
    Ok(format!("{name}:{}\n", values.join(",")))
}

/// `YYYYMMDDTHHMMSSZ` → seconds since the epoch.
fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let t = time::PrimitiveDateTime::parse(s, &format).ok()?.assume_utc();
    let secs = u64::try_from(t.unix_timestamp()).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// The identity that signed this request, if the signature is valid for it.
pub fn authenticate<'a>(
    identities: &'a Identities,
    region: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<&'a Identity, KmsError> {
    let value = headers.get("authorization").and_then(|v| v.to_str().ok()).ok_or_else(|| {
        KmsError::new(
            ErrorKind::MissingAuthenticationToken,
            "Missing Authentication Token: the request has no SigV4 Authorization header. Use the AWS CLI/SDK with \
             credentials (in dev: source .dev/credentials/<admin|instance|owner>.env)",
        )
    })?;
    let auth = parse_authorization(value)?;
    let identity = identities.get(auth.access_key_id).ok_or_else(|| {
        KmsError::new(
            ErrorKind::UnrecognizedClient,
            format!(
                "The security token included in the request is invalid: access key {} is not known to this emulator \
                 (dev credentials are in .dev/credentials/*.env, written at the emulator's first start)",
                auth.access_key_id
            ),
        )
    })?;
    if auth.service != "kms" || auth.region != region {
        return Err(KmsError::new(
            ErrorKind::InvalidSignature,
            format!(
                "Credential should be scoped to a valid region and service: got {}/{}, this is kms in {region}",
                auth.region, auth.service
            ),
        ));
    }
    let amz_date = headers.get("x-amz-date").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let signed_at = parse_amz_date(amz_date)
        .ok_or_else(|| incomplete(format!("X-Amz-Date '{amz_date}' is missing or not YYYYMMDDTHHMMSSZ")))?;
    if !amz_date.starts_with(auth.date) {
        return Err(KmsError::new(ErrorKind::InvalidSignature, "Credential date does not match X-Amz-Date"));
    }
    let skew = now.duration_since(signed_at).or_else(|e| Ok::<_, KmsError>(e.duration()))?;
    if skew > MAX_CLOCK_SKEW {
        return Err(KmsError::new(
            ErrorKind::InvalidSignature,
            format!("Signature expired: X-Amz-Date {amz_date} is more than 5 minutes from the emulator's clock"),
        ));
    }
    if let Some(token) = &identity.session_token {
        let given = headers.get("x-amz-security-token").map(|v| v.as_bytes()).unwrap_or_default();
        if !bool::from(given.ct_eq(token.as_bytes())) {
            return Err(KmsError::new(
                ErrorKind::UnrecognizedClient,
                "The security token included in the request is invalid: temporary credentials need their \
                 AWS_SESSION_TOKEN",
            ));
        }
    }
    if !auth.signed_headers.contains(&"host") {
        return Err(incomplete("SignedHeaders must include host"));
    }
    let mut canonical_headers = String::new();
    for name in &auth.signed_headers {
        canonical_headers.push_str(&canonical_header(headers, uri, name)?);
    }
    let payload_hash = hex::encode(Sha256::digest(body));
    let canonical_request = format!(
        "{method}\n{}\n{}\n{canonical_headers}\n{}\n{payload_hash}",
        if uri.path().is_empty() { "/" } else { uri.path() },
        uri.query().unwrap_or_default(),
        auth.signed_headers.join(";")
    );
    let scope = format!("{}/{}/{}/aws4_request", auth.date, auth.region, auth.service);
    let string_to_sign =
        format!("{ALGORITHM}\n{amz_date}\n{scope}\n{}", hex::encode(Sha256::digest(canonical_request.as_bytes())));
    let k_date = hmac(format!("AWS4{}", identity.secret_access_key).as_bytes(), auth.date.as_bytes());
    let k_region = hmac(&k_date, auth.region.as_bytes());
    let k_service = hmac(&k_region, auth.service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    let expected = hex::encode(hmac(&k_signing, string_to_sign.as_bytes()));
    if !bool::from(expected.as_bytes().ct_eq(auth.signature.as_bytes())) {
        return Err(KmsError::new(
            ErrorKind::InvalidSignature,
            format!(
                "The request signature we calculated does not match the signature you provided. Check your AWS \
                 Secret Access Key and signing method (access key {})",
                auth.access_key_id
            ),
        ));
    }
    Ok(identity)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's published SigV4 example (IAM User Guide, "Signature Version 4 signing
    /// process", the GET iam ListUsers request), re-scoped to kms by re-signing: here the
    /// check is that our canonicalization and key chain match aws-sigv4's signer.
    fn signed_request(identity: &Identity, body: &[u8], at: SystemTime) -> (HeaderMap, Uri) {
        use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
        use aws_sigv4::sign::v4;
        let creds = aws_credential_types::Credentials::new(
            &identity.access_key_id,
            &identity.secret_access_key,
            identity.session_token.clone(),
            None,
            "test",
        );
        let identity_creds = creds.into();
        let params = v4::SigningParams::builder()
            .identity(&identity_creds)
            .region("us-east-1")
            .name("kms")
            .time(at)
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let headers = [
            ("host", "kms.us-east-1.amazonaws.com"),
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", "TrentService.Decrypt"),
        ];
        let req = SignableRequest::new(
            "POST",
            "https://kms.us-east-1.amazonaws.com/",
            headers.into_iter(),
            SignableBody::Bytes(body),
        )
        .unwrap();
        let (instructions, _sig) = sign(req, &params).unwrap().into_parts();
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(k, v.parse().unwrap());
        }
        let mut http_req = axum::http::Request::builder().uri("/").body(()).unwrap();
        instructions.apply_to_request_http1x(&mut http_req);
        for (k, v) in http_req.headers() {
            map.insert(k.clone(), v.clone());
        }
        (map, "/".parse().unwrap())
    }

    fn ids() -> Identities {
        Identities::dev_defaults("111122223333")
    }

    #[test]
    fn a_request_signed_by_the_sdk_verifies_and_names_its_identity() {
        let ids = ids();
        let now = SystemTime::now();
        for who in &ids.identities {
            let (headers, uri) = signed_request(who, b"{\"a\":1}", now);
            let got = authenticate(&ids, "us-east-1", &Method::POST, &uri, &headers, b"{\"a\":1}", now).unwrap();
            assert_eq!(got.principal, who.principal);
        }
    }

    #[test]
    fn forged_edited_stale_and_unknown_requests_are_refused() {
        let ids = ids();
        let admin = &ids.identities[0];
        let now = SystemTime::now();
        let (headers, uri) = signed_request(admin, b"{}", now);
        let check = |h: &HeaderMap, body: &[u8], at: SystemTime| {
            authenticate(&ids, "us-east-1", &Method::POST, &uri, h, body, at).map(|i| i.name.clone())
        };
        // The body was changed after signing.
        assert_eq!(check(&headers, b"{\"x\":1}", now).unwrap_err().kind, ErrorKind::InvalidSignature);
        // Someone else's key id written into the header, with the admin's signature.
        let mut forged = headers.clone();
        let owner = &ids.identities[2];
        let auth = forged["authorization"].to_str().unwrap().replace(&admin.access_key_id, &owner.access_key_id);
        forged.insert("authorization", auth.parse().unwrap());
        // Even with the owner's session token (so only the signature can tell).
        forged.insert("x-amz-security-token", owner.session_token.clone().unwrap().parse().unwrap());
        assert_eq!(check(&forged, b"{}", now).unwrap_err().kind, ErrorKind::InvalidSignature);
        // A key nobody has.
        let mut unknown = headers.clone();
        let auth = headers["authorization"].to_str().unwrap().replace(&admin.access_key_id, "AKIANOBODY");
        unknown.insert("authorization", auth.parse().unwrap());
        assert_eq!(check(&unknown, b"{}", now).unwrap_err().kind, ErrorKind::UnrecognizedClient);
        // Replayed ten minutes later.
        assert_eq!(
            check(&headers, b"{}", now + Duration::from_secs(600)).unwrap_err().kind,
            ErrorKind::InvalidSignature
        );
        // No Authorization at all.
        let mut bare = headers.clone();
        bare.remove("authorization");
        assert_eq!(check(&bare, b"{}", now).unwrap_err().kind, ErrorKind::MissingAuthenticationToken);
        assert_eq!(check(&headers, b"{}", now).unwrap(), "admin");
    }

    #[test]
    fn temporary_credentials_need_their_session_token() {
        let ids = ids();
        let instance = &ids.identities[1];
        let now = SystemTime::now();
        let (mut headers, uri) = signed_request(instance, b"{}", now);
        assert!(authenticate(&ids, "us-east-1", &Method::POST, &uri, &headers, b"{}", now).is_ok());
        headers.insert("x-amz-security-token", "nope".parse().unwrap());
        let e = authenticate(&ids, "us-east-1", &Method::POST, &uri, &headers, b"{}", now).unwrap_err();
        assert_eq!(e.kind, ErrorKind::UnrecognizedClient);
    }
}
