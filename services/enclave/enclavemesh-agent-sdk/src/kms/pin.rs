//! The KMS key this enclave's image trusts, by ARN: part of its measured configuration.
//!
//! Why TLS alone is not enough: a parent that owns an AWS account of its own can hand the
//! enclave a TSK blob made under *its* KMS key; real KMS decrypts it over authentic TLS,
//! and the parent knows the key. So the image names the key its TSK (and the owner's
//! inputs) must come from, the enclave passes that key id to KMS and checks the key id KMS
//! answers with, and the TLS hostname follows from the key's region, never from the parent.

/// A KMS key ARN: `arn:PARTITION:kms:REGION:ACCOUNT:key/KEY_ID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPin {
    pub arn: String,
    pub region: String,
    pub account: String,
}

impl KeyPin {
    /// `kms.<region>.amazonaws.com` (the partition's DNS suffix for `aws`).
    pub fn endpoint_host(&self) -> String {
        format!("kms.{}.amazonaws.com", self.region)
    }
}

impl std::str::FromStr for KeyPin {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("'{s}' is not a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/KEY_ID)");
        let parts: Vec<&str> = s.split(':').collect();
        let [arn, partition, service, region, account, resource] = parts.as_slice() else { return Err(bad()) };
        let key_ok = resource.strip_prefix("key/").is_some_and(|k| !k.is_empty() && !k.contains('/'));
        let region_ok =
            !region.is_empty() && region.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if *arn != "arn"
            || *partition != "aws"
            || *service != "kms"
            || !region_ok
            || account.len() != 12
            || !account.chars().all(|c| c.is_ascii_digit())
            || !key_ok
        {
            return Err(bad());
        }
        Ok(KeyPin { arn: s.to_string(), region: region.to_string(), account: account.to_string() })
    }
}

impl std::fmt::Display for KeyPin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.arn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_full_key_arns_pin() {
        let p: KeyPin = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab".parse().unwrap();
        assert_eq!((p.region.as_str(), p.account.as_str()), ("eu-west-1", "111122223333"));
        assert_eq!(p.endpoint_host(), "kms.eu-west-1.amazonaws.com");
        for bad in [
            "alias/enclavemesh-tsk",
            "1234abcd-12ab",
            "arn:aws:kms:eu-west-1:111122223333:alias/x",
            "arn:aws:kms:eu-west-1:1111:key/x",
            "arn:aws:kms:evil.example/x:111122223333:key/x",
            "arn:aws:s3:eu-west-1:111122223333:key/x",
        ] {
            assert!(bad.parse::<KeyPin>().is_err(), "{bad}");
        }
    }
}
