//! CloudTrail-shaped audit events, one JSON line per call, appended to `--audit-log`.
//!
//! Mirrors the fields of a real KMS CloudTrail record so the same jq/Athena queries work
//! in dev. Only identifiers and parameters go in: never plaintext, data keys, ciphertext
//! blobs or CiphertextForRecipient (callers build `request_parameters` from an allow-list).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use serde_json::{Value, json};

use crate::error::EmulatorError;

/// What one call contributes to its audit event.
#[derive(Debug, Default, Clone)]
pub struct AuditRecord {
    pub event_name: String,
    pub access_key_id: Option<String>,
    /// The caller's principal ARN, once its signature verified.
    pub principal_arn: Option<String>,
    pub source_ip: String,
    pub user_agent: Option<String>,
    pub request_parameters: serde_json::Map<String, Value>,
    /// `additionalEventData.recipient` when the request carried a Recipient.
    pub recipient: Option<Value>,
    pub key_arn: Option<String>,
    pub error: Option<(String, String)>,
    pub request_id: String,
    pub read_only: bool,
}

/// Appends events to a file (or drops them when no file is configured).
pub struct AuditLog {
    file: Option<Mutex<File>>,
    region: String,
    account_id: String,
}

impl AuditLog {
    pub fn open(path: Option<&Path>, region: &str, account_id: &str) -> Result<Self, EmulatorError> {
        let file =
            match path {
                None => None,
                Some(p) => {
                    if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                        std::fs::create_dir_all(dir).map_err(|e| EmulatorError::AuditLog {
                            path: p.display().to_string(),
                            reason: e.to_string(),
                        })?;
                    }
                    let f = OpenOptions::new().create(true).append(true).open(p).map_err(|e| {
                        EmulatorError::AuditLog { path: p.display().to_string(), reason: e.to_string() }
                    })?;
                    Some(Mutex::new(f))
                }
            };
        Ok(Self { file, region: region.to_string(), account_id: account_id.to_string() })
    }

    /// Builds the CloudTrail-shaped event.
    pub fn event(&self, r: &AuditRecord) -> Value {
        let now = time::OffsetDateTime::now_utc();
        let event_time = now
            .replace_nanosecond(0)
            .unwrap_or(now)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let mut ev = json!({
            "eventVersion": "1.08",
            "userIdentity": {
                "type": if r.principal_arn.as_deref().is_some_and(|a| a.contains(":assumed-role/")) {
                    "AssumedRole"
                } else {
                    "IAMUser"
                },
                "principalId": r.access_key_id.clone().unwrap_or_default(),
                "arn": r.principal_arn,
                "accountId": self.account_id,
                "accessKeyId": r.access_key_id,
            },
            "eventTime": event_time,
            "eventSource": "kms.amazonaws.com",
            "eventName": r.event_name,
            "awsRegion": self.region,
            "sourceIPAddress": r.source_ip,
            "userAgent": r.user_agent,
            "requestParameters": Value::Object(r.request_parameters.clone()),
            "responseElements": Value::Null,
            "requestID": r.request_id,
            "eventID": uuid::Uuid::new_v4().to_string(),
            "readOnly": r.read_only,
            "resources": match &r.key_arn {
                Some(arn) => json!([{"accountId": self.account_id, "type": "AWS::KMS::Key", "ARN": arn}]),
                None => json!([]),
            },
            "eventType": "AwsApiCall",
            "managementEvent": true,
            "recipientAccountId": self.account_id,
            "eventCategory": "Management",
        });
        if let Some(rec) = &r.recipient {
            ev["additionalEventData"] = json!({ "recipient": rec });
        }
        if let Some((code, msg)) = &r.error {
            ev["errorCode"] = json!(code);
            ev["errorMessage"] = json!(msg);
        }
        ev
    }

    /// Appends the event as one line. Audit failures are logged, not fatal to the call.
    pub fn write(&self, r: &AuditRecord) {
        let Some(file) = &self.file else { return };
        let mut line = self.event(r).to_string();
        line.push('\n');
        let Ok(mut f) = file.lock() else { return };
        if let Err(e) = f.write_all(line.as_bytes()) {
            tracing::error!(error = %e, "cannot append to the audit log");
        }
    }
}
