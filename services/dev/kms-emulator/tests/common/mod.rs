//! Shared test helpers: start an emulator on 127.0.0.1:0 and an aws-sdk-kms client for it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use aws_sdk_kms::error::ProvideErrorMetadata;
use enclavemesh_attestation::{DevCa, TrustAnchor};
use kms_emulator::{EmulatorConfig, RunningEmulator};

pub struct Env {
    pub dir: tempfile::TempDir,
    pub anchor: TrustAnchor,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let anchor = DevCa::load_or_create(&dir.path().join("dev")).unwrap().trust_anchor();
        Env { dir, anchor }
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
        let mut c = EmulatorConfig::new(self.anchor.clone());
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

pub async fn client(endpoint: &str) -> aws_sdk_kms::Client {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_kms::config::Credentials::new("AKIDTESTKEY", "testsecret", None, None, "tests"))
        .load()
        .await;
    aws_sdk_kms::Client::new(&conf)
}

/// (error code, message) of an SDK error.
pub fn code<E: ProvideErrorMetadata>(e: E) -> (String, String) {
    (e.code().unwrap_or("?").to_string(), e.message().unwrap_or("").to_string())
}
