//! KMS administration for tests, through aws-sdk-kms against the emulator: the same
//! calls scripts/setup-kms.sh and setup-kms-policy.sh make with the aws CLI.

use aws_sdk_kms::primitives::Blob;

pub async fn client(endpoint: &str) -> aws_sdk_kms::Client {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_kms::config::Credentials::new("devkey", "devsecret", None, None, "tests"))
        .load()
        .await;
    aws_sdk_kms::Client::new(&conf)
}

/// Key policy: the admin may manage the key and encrypt, but Decrypt (and data-key
/// release) is allowed only to an enclave whose attestation carries one of `pcr0s`.
pub fn pcr0_policy(pcr0s: &[String]) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "KeyAdministration",
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
                "Action": ["kms:Create*", "kms:Describe*", "kms:Enable*", "kms:Disable*", "kms:List*", "kms:Put*",
                           "kms:Get*", "kms:Encrypt", "kms:GenerateDataKeyWithoutPlaintext"],
                "Resource": "*"
            },
            {
                "Sid": "ReleaseToAttestedEnclave",
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
                "Action": ["kms:Decrypt", "kms:GenerateDataKey", "kms:GenerateRandom"],
                "Resource": "*",
                "Condition": {"StringEqualsIgnoreCase": {"kms:RecipientAttestation:PCR0": pcr0s}}
            }
        ]
    })
    .to_string()
}

/// A created TSK: the KMS key, the encrypted TSK blob and — because tests must be able
/// to look for it in logs and traffic — the TSK plaintext, captured at creation time
/// before the policy locks Decrypt to enclaves.
pub struct TestTsk {
    pub key_id: String,
    pub blob: Vec<u8>,
    pub plaintext: Vec<u8>,
}

pub async fn create_tsk(kms: &aws_sdk_kms::Client) -> anyhow::Result<TestTsk> {
    let key = kms.create_key().description("enclavemesh TSK (test)").send().await?;
    let key_id = key.key_metadata().map(|m| m.key_id().to_string()).ok_or_else(|| anyhow::anyhow!("no KeyMetadata"))?;
    let dk = kms.generate_data_key().key_id(&key_id).key_spec(aws_sdk_kms::types::DataKeySpec::Aes256).send().await?;
    let blob = dk.ciphertext_blob().map(|b| b.as_ref().to_vec()).unwrap_or_default();
    let plaintext = dk.plaintext().map(|b| b.as_ref().to_vec()).unwrap_or_default();
    Ok(TestTsk { key_id, blob, plaintext })
}

pub async fn put_policy(kms: &aws_sdk_kms::Client, key_id: &str, pcr0s: &[String]) -> anyhow::Result<()> {
    kms.put_key_policy().key_id(key_id).policy_name("default").policy(pcr0_policy(pcr0s)).send().await?;
    Ok(())
}

pub async fn encrypt(kms: &aws_sdk_kms::Client, key_id: &str, plaintext: &[u8]) -> anyhow::Result<Vec<u8>> {
    let out = kms.encrypt().key_id(key_id).plaintext(Blob::new(plaintext)).send().await?;
    Ok(out.ciphertext_blob().map(|b| b.as_ref().to_vec()).unwrap_or_default())
}
