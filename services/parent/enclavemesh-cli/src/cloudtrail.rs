//! KMS Decrypt events, as CloudTrail records them, for `enclavemesh verify --deep`.
//!
//! Two sources with one record shape: the kms-emulator's audit log (one CloudTrail event
//! per JSON line) and `aws cloudtrail lookup-events`, whose `Events[].CloudTrailEvent` is
//! the same record serialised as a JSON *string*. Both are parsed as JSON, never grepped:
//! the field that matters is `additionalEventData.recipient.attestationDocumentEnclavePCR0`,
//! which KMS writes when a Decrypt carried a Nitro attestation document as Recipient.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// IAM action `aws cloudtrail lookup-events` needs.
pub const LOOKUP_PERMISSION: &str = "cloudtrail:LookupEvents";

/// One Decrypt call as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecryptEvent {
    pub event_time: String,
    /// Lower-case hex PCR0 of the Recipient's attestation document (absent: no Recipient).
    pub recipient_pcr0: Option<String>,
    pub module_id: Option<String>,
    /// CloudTrail `errorCode` (e.g. `AccessDenied`); absent for a successful call.
    pub error_code: Option<String>,
}

impl DecryptEvent {
    pub fn success(&self) -> bool {
        self.error_code.is_none()
    }
    pub fn outcome(&self) -> &str {
        self.error_code.as_deref().unwrap_or("success")
    }

    /// From one CloudTrail record; `None` if it is not a KMS Decrypt.
    pub fn from_record(v: &Value) -> Option<Self> {
        if v.get("eventName").and_then(Value::as_str) != Some("Decrypt") {
            return None;
        }
        if let Some(src) = v.get("eventSource").and_then(Value::as_str)
            && src != "kms.amazonaws.com"
        {
            return None;
        }
        let recipient = v.get("additionalEventData").and_then(|a| a.get("recipient"));
        let field = |name: &str| recipient.and_then(|r| r.get(name)).and_then(Value::as_str).map(str::to_string);
        Some(DecryptEvent {
            event_time: v.get("eventTime").and_then(Value::as_str).unwrap_or("?").to_string(),
            recipient_pcr0: field("attestationDocumentEnclavePCR0").map(|p| p.to_ascii_lowercase()),
            module_id: field("attestationDocumentModuleId"),
            error_code: v.get("errorCode").and_then(Value::as_str).map(str::to_string),
        })
    }
}

/// Where the events come from.
#[derive(Debug, Clone)]
pub enum EventsSource {
    DevAuditLog(PathBuf),
    /// A saved `aws cloudtrail lookup-events` output.
    CloudTrailFile(PathBuf),
    Aws {
        cli: String,
        region: Option<String>,
        lookback: Duration,
    },
}

impl EventsSource {
    pub fn describe(&self) -> String {
        match self {
            EventsSource::DevAuditLog(p) => format!("kms-emulator audit log {}", p.display()),
            EventsSource::CloudTrailFile(p) => format!("CloudTrail lookup-events output {}", p.display()),
            EventsSource::Aws { region, .. } => {
                format!(
                    "CloudTrail (aws cloudtrail lookup-events{})",
                    region.as_ref().map(|r| format!(", {r}")).unwrap_or_default()
                )
            }
        }
    }
}

/// Reading events failed; the message says why and what to do.
#[derive(Debug)]
pub struct EventsError(pub String);

impl std::fmt::Display for EventsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Decrypt events from `source`, oldest first as recorded.
pub fn decrypt_events(source: &EventsSource) -> Result<Vec<DecryptEvent>, EventsError> {
    match source {
        EventsSource::DevAuditLog(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                EventsError(format!(
                    "cannot read the kms-emulator audit log {}: {e}; pass --audit-log (or ENCLAVEMESH_DEV_DIR), \
                     or --events-source aws on a Nitro host",
                    path.display()
                ))
            })?;
            parse_audit_jsonl(&text).map_err(|e| EventsError(format!("{}: {e}", path.display())))
        }
        EventsSource::CloudTrailFile(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| EventsError(format!("cannot read {}: {e}", path.display())))?;
            parse_lookup_events(&text).map_err(|e| EventsError(format!("{}: {e}", path.display())))
        }
        EventsSource::Aws { cli, region, lookback } => {
            let start = SystemTime::now().checked_sub(*lookback).unwrap_or(UNIX_EPOCH);
            let start = start.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
            let mut cmd = Command::new(cli);
            cmd.args(["cloudtrail", "lookup-events", "--output", "json"])
                .args(["--lookup-attributes", "AttributeKey=EventName,AttributeValue=Decrypt"])
                .args(["--start-time", &start.to_string()])
                .env("AWS_PAGER", "");
            if let Some(r) = region {
                cmd.args(["--region", r]);
            }
            let out = cmd.output().map_err(|e| {
                EventsError(format!(
                    "cannot run '{cli} cloudtrail lookup-events': {e}; install the aws CLI (scripts/lib/venv.sh puts \
                     it in .venv/bin) \
                     or pass --aws-cli PATH"
                ))
            })?;
            if !out.status.success() {
                return Err(EventsError(lookup_failure(&String::from_utf8_lossy(&out.stderr))));
            }
            parse_lookup_events(&String::from_utf8_lossy(&out.stdout))
                .map_err(|e| EventsError(format!("aws cloudtrail lookup-events output: {e}")))
        }
    }
}

/// Message for a failed `aws cloudtrail lookup-events`, from its stderr.
pub fn lookup_failure(stderr: &str) -> String {
    let err = stderr.trim();
    if err.contains("AccessDenied")
        || err.contains("not authorized to perform")
        || err.contains("UnauthorizedOperation")
    {
        format!(
            "CloudTrail LookupEvents was refused (AccessDenied): the caller's IAM identity lacks the permission \
             {LOOKUP_PERMISSION}. Grant it (an IAM policy with \"Action\": \"{LOOKUP_PERMISSION}\", \"Resource\": \
             \"*\") \
             to the role/user running verify (check which one: aws sts get-caller-identity). aws said: {err}"
        )
    } else if err.contains("Unable to locate credentials") || err.contains("NoCredentialProviders") {
        format!(
            "aws cloudtrail lookup-events found no credentials: on EC2 check the instance role and IMDSv2 \
             (aws ec2 describe-instances ... MetadataOptions); elsewhere configure a profile. aws said: {err}"
        )
    } else {
        format!(
            "aws cloudtrail lookup-events failed: {err}; check region (--region) and credentials (aws sts \
                get-caller-identity)"
        )
    }
}

/// The emulator's audit log: one CloudTrail record per line.
pub fn parse_audit_jsonl(text: &str) -> Result<Vec<DecryptEvent>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line).map_err(|e| format!("line {}: not JSON: {e}", i + 1))?;
        out.extend(DecryptEvent::from_record(&v));
    }
    Ok(out)
}

/// `aws cloudtrail lookup-events --output json`: `{"Events":[{"CloudTrailEvent":"<JSON string>",…}]}`.
/// Returned oldest first (CloudTrail lists newest first).
pub fn parse_lookup_events(text: &str) -> Result<Vec<DecryptEvent>, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let events = v.get("Events").and_then(Value::as_array).ok_or("no \"Events\" array")?;
    let mut out = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let Some(raw) = e.get("CloudTrailEvent").and_then(Value::as_str) else {
            return Err(format!("Events[{i}] has no CloudTrailEvent string"));
        };
        let record: Value =
            serde_json::from_str(raw).map_err(|err| format!("Events[{i}].CloudTrailEvent is not JSON: {err}"))?;
        out.extend(DecryptEvent::from_record(&record));
    }
    out.reverse();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(pcr0: Option<&str>, error: Option<&str>) -> Value {
        let mut v = serde_json::json!({
            "eventSource": "kms.amazonaws.com", "eventName": "Decrypt", "eventTime": "2025-01-01T00:00:00Z"
        });
        if let Some(p) = pcr0 {
            v["additionalEventData"] = serde_json::json!({
                "recipient": {"attestationDocumentEnclavePCR0": p, "attestationDocumentModuleId": "i-1-enc2"}
            });
        }
        if let Some(e) = error {
            v["errorCode"] = serde_json::json!(e);
        }
        v
    }

    #[test]
    fn lookup_events_with_embedded_json_strings() {
        let pcr0 = "AA".repeat(48);
        let out = serde_json::json!({"Events": [
            {"EventId": "2", "EventName": "Decrypt",
             "CloudTrailEvent": record(Some(&pcr0), Some("AccessDenied")).to_string()},
            {"EventId": "1", "EventName": "Decrypt", "CloudTrailEvent": record(Some(&pcr0), None).to_string()},
            {"EventId": "0", "EventName": "Decrypt", "CloudTrailEvent": record(None, None).to_string()},
        ]});
        let ev = parse_lookup_events(&out.to_string()).unwrap();
        assert_eq!(ev.len(), 3);
        assert_eq!(ev[0].recipient_pcr0, None);
        assert_eq!(ev[1].recipient_pcr0.as_deref(), Some("aa".repeat(48).as_str()));
        assert!(ev[1].success());
        assert_eq!(ev[2].outcome(), "AccessDenied");
        assert!(parse_lookup_events(r#"{"Events":[{"CloudTrailEvent":"{not json"}]}"#).is_err());
    }

    #[test]
    fn audit_log_skips_other_events() {
        let text = format!("{}\n{}\n", serde_json::json!({"eventName": "GetKeyPolicy"}), record(Some("ab"), None));
        let ev = parse_audit_jsonl(&text).unwrap();
        assert_eq!(ev.len(), 1);
    }

    #[test]
    fn access_denied_names_the_permission() {
        let m = lookup_failure(
            "An error occurred (AccessDeniedException) when calling the LookupEvents operation: User: \
                arn:aws:iam::1:user/x is not authorized to perform: cloudtrail:LookupEvents",
        );
        assert!(m.contains("cloudtrail:LookupEvents") && m.contains("AccessDenied"), "{m}");
    }
}
