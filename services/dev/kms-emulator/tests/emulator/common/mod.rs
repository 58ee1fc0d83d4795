//! Shared test helpers: start an emulator on 127.0.0.1:0 and an aws-sdk-kms client for it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use aws_sdk_kms::error::ProvideErrorMetadata;
use enclavemesh_attestation::{DevCa, TrustAnchor};
use kms_emulator::{EmulatorConfig, Identities, Identity, RunningEmulator};

pub struct Env {
    pub dir: tempfile::TempDir,
    pub anchor: TrustAnchor,
    /// The account root (what [`client`] signs as) and the three dev principals.
    pub identities: Identities,
}

/// The account root's test key: what [`client`] signs with.
pub const ROOT_KEY: (&str, &str) = ("AKIDTESTKEY", "testsecret");

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let anchor = DevCa::load_or_create(&dir.path().join("dev")).unwrap().trust_anchor();
        let mut identities = Identities::dev_defaults("111122223333");
        identities.identities.push(Identity {
            name: "root".into(),
            access_key_id: ROOT_KEY.0.into(),
            secret_access_key: ROOT_KEY.1.into(),
            session_token: None,
            principal: "arn:aws:iam::111122223333:root".into(),
            identity_policy: None,
        });
        Env { dir, anchor, identities }
    }
    /// One of the dev principals: `admin`, `instance`, `owner`.
    pub fn identity(&self, name: &str) -> &Identity {
        self.identities.identities.iter().find(|i| i.name == name).unwrap()
    }
    pub fn dev_dir(&self) -> PathBuf {
        self.dir.path().join("dev")
    }
    pub fn state_file(&self) -> PathBuf {
        self.dir.path().join("kms/state.json")
    }
    pub fn audit_log(&self) -> PathBuf {
        self.dir.path().join("kms/audit.jsonl")
    }
    pub fn config(&self) -> EmulatorConfig {
        let mut c = EmulatorConfig::new(self.anchor.clone(), self.identities.clone());
        c.state_file = Some(self.state_file());
        c.audit_log = Some(self.audit_log());
        c
    }
    pub async fn start(&self) -> RunningEmulator {
        kms_emulator::spawn("127.0.0.1:0".parse().unwrap(), self.config()).await.unwrap()
    }
    pub fn audit_events(&self) -> Vec<serde_json::Value> {
        read_events(&self.audit_log())
    }
}

pub fn read_events(p: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(p).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// A client signing as the account root.
pub async fn client(endpoint: &str) -> aws_sdk_kms::Client {
    client_with(endpoint, aws_sdk_kms::config::Credentials::new(ROOT_KEY.0, ROOT_KEY.1, None, None, "tests")).await
}

/// A client signing as `identity`.
pub async fn client_as(endpoint: &str, identity: &Identity) -> aws_sdk_kms::Client {
    let creds = aws_sdk_kms::config::Credentials::new(
        &identity.access_key_id,
        &identity.secret_access_key,
        identity.session_token.clone(),
        None,
        "tests",
    );
    client_with(endpoint, creds).await
}

async fn client_with(endpoint: &str, creds: aws_sdk_kms::config::Credentials) -> aws_sdk_kms::Client {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(creds)
        .load()
        .await;
    aws_sdk_kms::Client::new(&conf)
}

/// (error code, message) of an SDK error.
pub fn code<E: ProvideErrorMetadata>(e: E) -> (String, String) {
    (e.code().unwrap_or("?").to_string(), e.message().unwrap_or("").to_string())
}

/// SigV4 headers (`authorization`, `x-amz-date`, `x-amz-security-token`) for a POST of
/// `body` to `host` with `target`, signed with `key` (id, secret) now: what botocore sends.
pub fn sigv4_headers(key: (&str, &str), host: &str, target: &str, body: &[u8]) -> Vec<(String, String)> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use aws_sigv4::sign::v4;
    let creds: aws_smithy_runtime_api::client::identity::Identity =
        aws_credential_types::Credentials::new(key.0, key.1, None, None, "raw").into();
    let params = v4::SigningParams::builder()
        .identity(&creds)
        .region("us-east-1")
        .name("kms")
        .time(std::time::SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let headers = [("host", host), ("content-type", "application/x-amz-json-1.1"), ("x-amz-target", target)];
    let req = SignableRequest::new("POST", format!("https://{host}/"), headers.into_iter(), SignableBody::Bytes(body))
        .unwrap();
    let (instructions, _) = sign(req, &params).unwrap().into_parts();
    let mut r = http::Request::builder().uri("/").body(()).unwrap();
    instructions.apply_to_request_http1x(&mut r);
    r.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string())).collect()
}
