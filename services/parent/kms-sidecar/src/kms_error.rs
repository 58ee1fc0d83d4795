//! Turning the parent's environment troubles into messages a person can act on.
//!
//! The field's most common complaint about enclave tooling is an opaque failure. The
//! sidecar's own failures (no credentials, no route to KMS) name the cause and the fix.

/// The parent-host misconfigurations that show up as an opaque failure: no usable
/// credentials (on EC2: the instance role through IMDSv2), or no CA bundle for the TLS
/// the sidecar itself speaks (to STS or SSO, for role or web-identity credentials; KMS
/// TLS is the enclave's). `None` when none matches.
pub fn environment_hint(chain: &str) -> Option<&'static str> {
    let c = chain.to_ascii_lowercase();
    let tls = [
        "certificate",
        "unknownissuer",
        "unknown issuer",
        "no native root",
        "ca bundle",
        "root store",
        "tls handshake",
    ];
    if tls.iter().any(|w| c.contains(w)) {
        return Some(
            "TLS from this host failed while fetching credentials: the CA bundle is missing or unreadable (no \
             trusted root certificates). \
             Fix: install the CA certificates (dnf/yum install ca-certificates, or apt-get install ca-certificates; \
             update-ca-trust / update-ca-certificates), or point SSL_CERT_FILE at a PEM bundle; in a container, \
             copy /etc/ssl/certs into the image",
        );
    }
    let imds = ["imds", "169.254.169.254", "instance metadata", "ec2 metadata"];
    if imds.iter().any(|w| c.contains(w)) {
        return Some(
            "no AWS credentials: fetching the instance role from IMDSv2 (169.254.169.254) failed or timed out. \
             Fix: attach the instance profile role (aws ec2 describe-instances \
             --query 'Reservations[].Instances[].IamInstanceProfile'), \
             enable IMDSv2 (aws ec2 modify-instance-metadata-options --http-endpoint enabled --http-tokens required), \
             and in a container raise the hop limit (--http-put-response-hop-limit 2)",
        );
    }
    let creds = ["credential", "no credentials", "credentialsnotloaded"];
    if creds.iter().any(|w| c.contains(w)) {
        return Some(
            "no AWS credentials were found (env, profile, or the instance role through IMDSv2). \
             Fix: on EC2 attach the instance profile role and enable IMDSv2 (hop limit 2 in a container); \
             in dev start the sidecar with the instance identity's keys (source .dev/credentials/instance.env)",
        );
    }
    None
}

#[cfg(test)]
mod hint_tests {
    use super::environment_hint;

    #[test]
    fn tls_imds_and_credentials_are_told_apart() {
        let tls = environment_hint("dispatch failure: io error: invalid peer certificate: UnknownIssuer").unwrap();
        assert!(tls.contains("CA bundle") && tls.contains("ca-certificates") && tls.contains("SSL_CERT_FILE"));
        let imds =
            environment_hint("failed to load credentials: error loading credentials from IMDS: timeout").unwrap();
        assert!(imds.contains("IMDSv2") && imds.contains("hop-limit"));
        let creds =
            environment_hint("an error occurred while loading credentials: the credential provider was not enabled")
                .unwrap();
        assert!(creds.contains("instance profile"));
        assert!(environment_hint("io error: Connection refused (os error 111)").is_none());
    }
}
