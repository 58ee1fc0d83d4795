//! KMS administration for tests, through aws-sdk-kms against the emulator (HTTPS, under
//! the dev CA), as the principals the emulator knows: the same calls and the same policy
//! templates (`deploy/kms/*.json.tpl`) `scripts/setup-kms.sh` and `setup-kms-policy.sh`
//! make with the aws CLI.

use std::collections::BTreeMap;
use std::path::Path;

use aws_sdk_kms::types::DataKeySpec;

use crate::proc::repo_root;

/// The emulator's account (its default `--account-id`).
pub const ACCOUNT: &str = "111122223333";

/// One principal's credentials (as the emulator wrote them to `credentials/<name>.env`).
#[derive(Debug, Clone)]
pub struct Creds {
    pub name: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl Creds {
    /// Reads `dev/credentials/<name>.env`.
    pub fn load(dev_dir: &Path, name: &str) -> Creds {
        let path = dev_dir.join("credentials").join(format!("{name}.env"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let get = |k: &str| text.lines().find_map(|l| l.strip_prefix(&format!("{k}="))).map(str::to_string);
        Creds {
            name: name.into(),
            access_key_id: get("AWS_ACCESS_KEY_ID").expect("AWS_ACCESS_KEY_ID"),
            secret_access_key: get("AWS_SECRET_ACCESS_KEY").expect("AWS_SECRET_ACCESS_KEY"),
            session_token: get("AWS_SESSION_TOKEN"),
        }
    }

    /// As environment variables for a child process.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut v = vec![
            ("AWS_ACCESS_KEY_ID".into(), self.access_key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY".into(), self.secret_access_key.clone()),
        ];
        if let Some(t) = &self.session_token {
            v.push(("AWS_SESSION_TOKEN".into(), t.clone()));
        }
        v
    }

    /// The IAM role this principal's sessions belong to (what policies name).
    pub fn role_arn(&self) -> String {
        let role = match self.name.as_str() {
            "admin" => "enclavemesh-admin",
            "instance" => "enclavemesh-instance",
            "owner" => "enclavemesh-data-owner",
            other => other,
        };
        format!("arn:aws:iam::{ACCOUNT}:role/{role}")
    }
}

/// A client of the emulator at `endpoint` (https://localhost:PORT) signing as `creds`,
/// trusting the dev CA root in `dev_dir`.
pub async fn client(endpoint: &str, dev_dir: &Path, creds: &Creds) -> aws_sdk_kms::Client {
    use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
    let root_der = std::fs::read(enclavemesh_attestation::DevCa::root_path(dev_dir)).expect("dev CA root");
    let pem = der_to_pem(&root_der);
    let tls_context = TlsContext::builder()
        .with_trust_store(TrustStore::empty().with_pem_certificate(pem.into_bytes()))
        .build()
        .expect("TLS context");
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(tls_context)
        .build_https();
    let sdk_creds = aws_sdk_kms::config::Credentials::new(
        &creds.access_key_id,
        &creds.secret_access_key,
        creds.session_token.clone(),
        None,
        "tests",
    );
    let conf = aws_sdk_kms::Config::builder()
        .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
        .region(aws_sdk_kms::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(sdk_creds)
        .http_client(http)
        .build();
    aws_sdk_kms::Client::from_conf(conf)
}

fn der_to_pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap_or_default()).collect();
    format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", lines.join("\n"))
}

/// Renders a `deploy/kms/*.json.tpl` template as `scripts/lib/common.sh`'s
/// `em_render_json_template` does: `"${NAME}"` strings (and keys) take text values, a
/// string that is exactly `"${NAME}"` takes a JSON value, and nothing may stay unreplaced.
pub fn render_template(name: &str, text: &BTreeMap<&str, String>, json: &BTreeMap<&str, serde_json::Value>) -> String {
    fn walk(
        v: serde_json::Value,
        text: &BTreeMap<&str, String>,
        json: &BTreeMap<&str, serde_json::Value>,
    ) -> serde_json::Value {
        use serde_json::Value;
        let sub = |s: &str| {
            let mut out = s.to_string();
            for (k, val) in text {
                out = out.replace(&format!("${{{k}}}"), val);
            }
            assert!(!out.contains("${"), "unreplaced placeholder in {s}");
            out
        };
        match v {
            Value::String(s) => {
                if let Some(name) = s.strip_prefix("${").and_then(|r| r.strip_suffix('}'))
                    && let Some(j) = json.get(name)
                {
                    return j.clone();
                }
                Value::String(sub(&s))
            }
            Value::Array(a) => Value::Array(a.into_iter().map(|x| walk(x, text, json)).collect()),
            Value::Object(o) => Value::Object(o.into_iter().map(|(k, x)| (sub(&k), walk(x, text, json))).collect()),
            other => other,
        }
    }
    let path = repo_root().join("deploy/kms").join(name);
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("policy template")).expect("template JSON");
    walk(doc, text, json).to_string()
}

/// How a rendered policy allows images, and whether it can still be changed.
#[derive(Debug, Clone)]
pub struct PolicyMode {
    /// `PCR0` (one image each, the unlocked default) or `PCR8` (the signing certificate).
    pub image_pcr: &'static str,
    pub allowed: Vec<String>,
    /// Nobody may change the policy again (`setup-kms-policy.sh --lock`).
    pub locked: bool,
}

impl PolicyMode {
    pub fn pcr0(pcr0s: &[String]) -> Self {
        PolicyMode { image_pcr: "PCR0", allowed: pcr0s.to_vec(), locked: false }
    }
    /// `setup-kms-policy.sh --lock`: images by signing certificate, policy frozen.
    pub fn locked_pcr8(pcr8s: &[String]) -> Self {
        PolicyMode { image_pcr: "PCR8", allowed: pcr8s.to_vec(), locked: true }
    }
}

/// The shipped policy (`template`) for the three dev principals.
pub fn policy(template: &str, principals: &Principals, mode: &PolicyMode) -> String {
    let text = BTreeMap::from([
        ("ADMIN_PRINCIPAL", principals.admin.role_arn()),
        ("INSTANCE_PRINCIPAL", principals.instance.role_arn()),
        ("OWNER_PRINCIPAL", principals.owner.role_arn()),
        ("IMAGE_PCR", mode.image_pcr.to_string()),
    ]);
    let condition = if mode.locked {
        serde_json::json!({})
    } else {
        serde_json::json!({"StringNotEquals": {"aws:PrincipalArn": [principals.admin.role_arn()]}})
    };
    let json =
        BTreeMap::from([("ALLOWED_IMAGES", serde_json::json!(mode.allowed)), ("POLICY_CHANGE_CONDITION", condition)]);
    render_template(template, &text, &json)
}

/// The three dev principals.
#[derive(Debug, Clone)]
pub struct Principals {
    pub admin: Creds,
    pub instance: Creds,
    pub owner: Creds,
}

impl Principals {
    pub fn load(dev_dir: &Path) -> Principals {
        Principals {
            admin: Creds::load(dev_dir, "admin"),
            instance: Creds::load(dev_dir, "instance"),
            owner: Creds::load(dev_dir, "owner"),
        }
    }
}

/// The TSK key, one TSK version, and the input key, as the mesh set them up. Because tests
/// must be able to look for it in logs and traffic, the TSK plaintext was captured at
/// creation: the harness makes version 1 with GenerateDataKey *before* the shipped policy
/// is put (the default policy allows it); the shipped policy never lets anyone do that.
pub struct TestTsk {
    pub key_id: String,
    pub key_arn: String,
    pub blob: Vec<u8>,
    pub plaintext: Vec<u8>,
    pub input_key_arn: String,
}

/// The encryption contexts (the contract's: `enclavemesh_proto::kms_context`).
pub use enclavemesh_proto::kms_context::{input as input_context, tsk as tsk_context};

async fn create_key(admin: &aws_sdk_kms::Client, description: &str) -> anyhow::Result<(String, String)> {
    let key = admin.create_key().description(description).send().await?;
    let m = key.key_metadata().ok_or_else(|| anyhow::anyhow!("no KeyMetadata"))?;
    Ok((m.key_id().to_string(), m.arn().unwrap_or_default().to_string()))
}

/// Creates the TSK key with version 1 (plaintext captured, see [`TestTsk`]) and the
/// input key, then puts the shipped policies allowing `mode`'s images.
pub async fn create_keys(
    admin: &aws_sdk_kms::Client,
    principals: &Principals,
    mode: &PolicyMode,
) -> anyhow::Result<TestTsk> {
    let (key_id, key_arn) = create_key(admin, "enclavemesh TSK (test)").await?;
    let mut dk = admin.generate_data_key().key_id(&key_id).key_spec(DataKeySpec::Aes256);
    for (k, v) in tsk_context(1) {
        dk = dk.encryption_context(k, v);
    }
    let dk = dk.send().await?;
    let blob = dk.ciphertext_blob().map(|b| b.as_ref().to_vec()).unwrap_or_default();
    let plaintext = dk.plaintext().map(|b| b.as_ref().to_vec()).unwrap_or_default();
    let (input_key_id, input_key_arn) = create_key(admin, "enclavemesh inputs (test)").await?;
    put_policies(admin, principals, &key_id, &input_key_id, mode).await?;
    Ok(TestTsk { key_id, key_arn, blob, plaintext, input_key_arn })
}

/// Puts the shipped TSK and input key policies for `mode`.
pub async fn put_policies(
    admin: &aws_sdk_kms::Client,
    principals: &Principals,
    tsk_key: &str,
    input_key: &str,
    mode: &PolicyMode,
) -> anyhow::Result<()> {
    for (key, template) in [(tsk_key, "tsk-key-policy.json.tpl"), (input_key, "input-key-policy.json.tpl")] {
        admin
            .put_key_policy()
            .key_id(key)
            .policy_name("default")
            .policy(policy(template, principals, mode))
            .bypass_policy_lockout_safety_check(mode.locked)
            .send()
            .await?;
    }
    Ok(())
}
