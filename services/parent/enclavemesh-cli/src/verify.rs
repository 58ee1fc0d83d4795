//! `enclavemesh verify`: is the agent that runs the enclave image we built?
//!
//! Fetches a fresh attestation document from the running agent (AgentService.Attest with a
//! random nonce, usually through the vsock-bridge), verifies it with the one
//! `enclavemesh_attestation::Verifier`, and compares its PCR0 with the measurements of the
//! build (`build/enclave.eif.json`, nitro-cli's shape). `--deep` also checks the other side
//! of the trust: that KMS actually released the key (Decrypt with Recipient) to an enclave
//! with that PCR0, from the emulator's audit log or from CloudTrail.
//!
//! Every check is run on its own (each with a verifier that only enforces that check, on
//! top of signature and chain), so one failure does not hide the others, and each prints
//! one `PASS`/`FAIL` line with the values compared.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, ValueEnum};
use enclavemesh_attestation::{AttestationDocument, TrustAnchor, Verifier, VerifyError};
use enclavemesh_proto::v1::AttestRequest;
use enclavemesh_proto::v1::agent_service_client::AgentServiceClient;
use enclavemesh_transport::Address;
use rand::RngCore;

use enclavemesh_proto::Refusal;
use enclavemesh_workflow::failure::classify_status;

use crate::cloudtrail::{self, DecryptEvent, EventsSource};

/// Exit code when at least one check failed.
pub const EXIT_CHECK_FAILED: u8 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Source {
    /// aws when the trust anchor is the AWS Nitro root, dev otherwise.
    Auto,
    /// The kms-emulator's CloudTrail-shaped audit log (--audit-log).
    Dev,
    /// `aws cloudtrail lookup-events` (EventName=Decrypt).
    Aws,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Agent to attest (usually the vsock-bridge in front of it): tcp://host:port, unix:///path, vsock://CID:PORT.
    #[arg(long, env = "ENCLAVEMESH_VERIFY_AGENT", default_value = "tcp://127.0.0.1:5005")]
    pub agent: Address,
    /// Verify a saved attestation document (raw COSE_Sign1 bytes) instead of asking an agent.
    /// No nonce check then (the nonce was not ours).
    #[arg(long, conflicts_with = "agent")]
    pub document: Option<PathBuf>,
    /// Root to pin: `aws` (AWS Nitro Enclaves Root G1) or a DER/PEM file, or `qemu-unsigned`
    /// (TESTS ONLY: an enclave in QEMU's nitro-enclave machine, whose documents are not
    /// signed; the output says so). Default: the dev root
    /// `$ENCLAVEMESH_DEV_DIR/dev-ca/root.der` when it exists, else aws.
    #[arg(long, env = "ENCLAVEMESH_TRUST_ANCHOR")]
    pub trust_anchor: Option<String>,
    /// nitro-cli build output holding `.Measurements.PCR0`.
    #[arg(long, env = "ENCLAVEMESH_MEASUREMENTS", default_value = "build/enclave.eif.json")]
    pub measurements: PathBuf,
    /// Also check KMS's record: a successful Decrypt whose Recipient PCR0 is the built one.
    #[arg(long)]
    pub deep: bool,
    /// Where `--deep` reads KMS Decrypt events from.
    #[arg(long, value_enum, env = "ENCLAVEMESH_EVENTS_SOURCE", default_value = "auto")]
    pub events_source: Source,
    /// Dev audit log (default `$ENCLAVEMESH_DEV_DIR/kms/audit.jsonl`).
    #[arg(long, env = "KMS_EMULATOR_AUDIT_LOG")]
    pub audit_log: Option<PathBuf>,
    /// Read a saved `aws cloudtrail lookup-events` JSON output instead of running the aws CLI.
    #[arg(long)]
    pub cloudtrail_file: Option<PathBuf>,
    /// aws CLI to run for `--events-source aws`.
    #[arg(long, env = "ENCLAVEMESH_AWS_CLI", default_value = "aws")]
    pub aws_cli: String,
    /// Region for `aws cloudtrail lookup-events` (default: the aws CLI's own).
    #[arg(long, env = "AWS_REGION")]
    pub region: Option<String>,
    /// Only look at CloudTrail events of the last N minutes.
    #[arg(long, default_value_t = 24 * 60)]
    pub lookback_minutes: u64,
    /// Maximum document age (a saved --document may be older than a fresh one).
    #[arg(long, default_value_t = 300)]
    pub max_age_secs: u64,
    /// Timeout of the Attest RPC in seconds.
    #[arg(long, default_value_t = 10)]
    pub rpc_timeout_secs: u64,
}

/// Outcome of one check.
struct Report {
    failed: Vec<&'static str>,
}

impl Report {
    fn pass(&mut self, check: &'static str, detail: impl AsRef<str>) {
        println!("PASS  {check:<16} {}", detail.as_ref());
    }
    fn fail(&mut self, check: &'static str, detail: impl AsRef<str>) {
        println!("FAIL  {check:<16} {}", detail.as_ref());
        self.failed.push(check);
    }
    fn info(&self, check: &'static str, detail: impl AsRef<str>) {
        println!("INFO  {check:<16} {}", detail.as_ref());
    }
    fn warn(&self, check: &'static str, detail: impl AsRef<str>) {
        println!("WARN  {check:<16} {}", detail.as_ref());
    }
    fn skip(&self, check: &'static str, detail: impl AsRef<str>) {
        println!("SKIP  {check:<16} {}", detail.as_ref());
    }
}

fn dev_dir() -> PathBuf {
    std::env::var_os("ENCLAVEMESH_DEV_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(".dev"))
}

/// The `--trust-anchor` choice (see the flag's help).
fn trust_anchor(arg: Option<&str>) -> Result<TrustAnchor, VerifyError> {
    match arg {
        Some(arg) => TrustAnchor::from_arg(arg),
        None => {
            let dev_root = dev_dir().join("dev-ca/root.der");
            if dev_root.exists() { TrustAnchor::from_file(&dev_root) } else { Ok(TrustAnchor::AwsNitroRootG1) }
        }
    }
}

/// `.Measurements.PCR0` of a nitro-cli `build-enclave` output, lower-case hex.
pub fn read_build_pcr0(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "cannot read {}: {e}; build the image first (enclave-image/build.sh, or --dev) or pass --measurements",
            path.display()
        )
    })?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
    let pcr0 = v
        .get("Measurements")
        .and_then(|m| m.get("PCR0"))
        .and_then(|p| p.as_str())
        .ok_or_else(|| {
            format!("{} has no .Measurements.PCR0 (expected nitro-cli build-enclave output)", path.display())
        })?
        .to_ascii_lowercase();
    if pcr0.len() != 96 || !pcr0.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{}: .Measurements.PCR0 '{pcr0}' is not 96 hex characters (SHA-384)", path.display()));
    }
    Ok(pcr0)
}

/// Message for an agent that cannot be reached: the usual cause is that the enclave (or
/// the bridge in front of it) is not running.
pub fn agent_unreachable(addr: &Address, err: &dyn std::fmt::Display) -> String {
    format!(
        "cannot reach the agent at {addr} ({err}): enclave not running, or the vsock-bridge in front of it is down. \
         Start it: nitro-cli run-enclave (systemctl start enclavemesh-enclave@16 / @17, and enclavemesh-bridge), \
         check with nitro-cli describe-enclaves; in dev: scripts/dev.sh up"
    )
}

async fn fetch_document(args: &VerifyArgs, nonce: &[u8]) -> Result<Vec<u8>, String> {
    let channel = enclavemesh_transport::channel(&args.agent).map_err(|e| agent_unreachable(&args.agent, &e))?;
    let mut agent = AgentServiceClient::new(channel);
    let timeout = Duration::from_secs(args.rpc_timeout_secs.max(1));
    let mut req = tonic::Request::new(AttestRequest { nonce: nonce.to_vec(), user_data: Vec::new() });
    req.set_timeout(timeout);
    match tokio::time::timeout(timeout, agent.attest(req)).await {
        Ok(Ok(r)) => Ok(r.into_inner().attestation_document),
        // Nothing answered (refused, reset, or the bridge hung up: UNAVAILABLE, UNKNOWN or
        // CANCELLED depending on when the connection dropped), as the worker judges it too.
        Ok(Err(status)) if classify_status(&status).kind == Refusal::AgentUnavailable => {
            let detail = match std::error::Error::source(&status) {
                Some(src) => format!("{}: {}", status.message(), enclavemesh_transport::error_chain(src)),
                None => status.message().to_string(),
            };
            Err(agent_unreachable(&args.agent, &detail))
        }
        Ok(Err(status)) => Err(format!("Attest on {} failed: {:?}: {}", args.agent, status.code(), status.message())),
        Err(_) => Err(agent_unreachable(&args.agent, &format!("no answer within {timeout:?}"))),
    }
}

/// Runs all checks and prints one line per check; returns the exit code.
pub async fn run(args: &VerifyArgs) -> anyhow::Result<u8> {
    let mut r = Report { failed: Vec::new() };
    checks(args, &mut r).await;
    if r.failed.is_empty() {
        println!("OK    all checks passed");
        Ok(0)
    } else {
        println!("FAILED checks: {}", r.failed.join(", "));
        Ok(EXIT_CHECK_FAILED)
    }
}

async fn checks(args: &VerifyArgs, r: &mut Report) {
    let anchor = match trust_anchor(args.trust_anchor.as_deref()) {
        Ok(a) => a,
        Err(e) => {
            r.fail("trust-anchor", e.to_string());
            return;
        }
    };
    if anchor.is_unsigned() {
        r.warn(
            "trust-anchor",
            "qemu-unsigned: the document is NOT signed (QEMU's nitro-enclave machine); signature and chain are \
             not checked, so this run proves nothing about real hardware - PCRs, nonce, freshness and debug mode \
             are still checked",
        );
    }
    let build_pcr0 = read_build_pcr0(&args.measurements);

    // The document: fresh from the agent with our nonce, or a saved one.
    let mut nonce = vec![0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let doc_bytes = match &args.document {
        Some(path) => match std::fs::read(path) {
            Ok(b) => {
                r.pass("attest", format!("document={} ({} bytes)", path.display(), b.len()));
                b
            }
            Err(e) => {
                r.fail("attest", format!("cannot read document {}: {e}", path.display()));
                return;
            }
        },
        None => match fetch_document(args, &nonce).await {
            Ok(b) => {
                r.pass("attest", format!("agent={} nonce={} ({} bytes)", args.agent, hex::encode(&nonce), b.len()));
                b
            }
            Err(msg) => {
                r.fail("attest", msg);
                return;
            }
        },
    };

    // Checks other than freshness run at the document's own time, so each isolates one property.
    let doc_time = match AttestationDocument::parse_unverified(&doc_bytes) {
        Ok(d) => UNIX_EPOCH + Duration::from_millis(d.timestamp_ms),
        Err(e) => {
            r.fail("signature+chain", e.to_string());
            return;
        }
    };
    let base = || Verifier::new(anchor.clone()).allow_debug(true);
    let doc = match base().verify_at(&doc_bytes, doc_time) {
        Ok(d) if anchor.is_unsigned() => {
            r.skip(
                "signature+chain",
                format!("qemu-unsigned: QEMU's document has no signature or chain to check (module={})", d.module_id),
            );
            d
        }
        Ok(d) => {
            r.pass(
                "signature+chain",
                format!("root={} module={} (ES384, cabundle[0] == pinned root)", anchor.describe(), d.module_id),
            );
            d
        }
        Err(e) => {
            r.fail("signature+chain", format!("{e} [pinned root {}]", anchor.describe()));
            return;
        }
    };

    let max_age = Duration::from_secs(args.max_age_secs);
    match base().max_age(max_age).verify(&doc_bytes) {
        Ok(_) => {
            let age = SystemTime::now().duration_since(doc_time).unwrap_or_default();
            r.pass("freshness", format!("age={}ms max={}ms", age.as_millis(), max_age.as_millis()));
        }
        Err(e) => r.fail("freshness", e.to_string()),
    }

    if args.document.is_some() {
        r.skip("nonce", "saved document: its nonce was not issued by this run");
    } else {
        match base().expect_nonce(nonce.clone()).verify_at(&doc_bytes, doc_time) {
            Ok(_) => r.pass("nonce", format!("sent={} document={}", hex::encode(&nonce), hex::encode(&nonce))),
            Err(e) => r.fail(
                "nonce",
                format!(
                    "sent={} document={}: {e}",
                    hex::encode(&nonce),
                    doc.nonce.as_deref().map_or("<absent>".into(), hex::encode)
                ),
            ),
        }
    }

    let agent_pcr0 = doc.pcr_hex(0).unwrap_or_else(|| "<absent>".into());
    match Verifier::new(anchor.clone()).verify_at(&doc_bytes, doc_time) {
        Ok(_) => r.pass("debug-mode", format!("off (PCR0={agent_pcr0} is not all zeros)")),
        Err(e @ VerifyError::DebugMode) => r.fail("debug-mode", format!("ON: PCR0={agent_pcr0}: {e}")),
        Err(e) => r.fail("debug-mode", e.to_string()),
    }

    let build_pcr0 = match build_pcr0 {
        Ok(p) => p,
        Err(msg) => {
            r.fail("pcr0", msg);
            return;
        }
    };
    let build_bytes = hex::decode(&build_pcr0).unwrap_or_default();
    match base().expect_pcr(0, build_bytes).verify_at(&doc_bytes, doc_time) {
        Ok(_) => r.pass("pcr0", format!("agent={agent_pcr0} build={build_pcr0} ({})", args.measurements.display())),
        Err(VerifyError::PcrMismatch { .. }) => r.fail(
            "pcr0",
            format!(
                "agent={agent_pcr0} build={build_pcr0} ({}): the running enclave is not the image that was built; \
                 redeploy the built EIF (nitro-cli run-enclave --eif-path build/enclave.eif) or rebuild from the \
                 deployed commit",
                args.measurements.display()
            ),
        ),
        Err(e) => r.fail("pcr0", e.to_string()),
    }

    if args.deep {
        deep(args, &anchor, &build_pcr0, r);
    }
}

/// `--deep`: KMS's own record of whom it released the key to.
fn deep(args: &VerifyArgs, anchor: &TrustAnchor, build_pcr0: &str, r: &mut Report) {
    let source = match (args.events_source, &args.cloudtrail_file) {
        (_, Some(file)) => EventsSource::CloudTrailFile(file.clone()),
        (Source::Dev, None) => EventsSource::DevAuditLog(audit_log_path(args)),
        (Source::Aws, None) => aws_events(args),
        (Source::Auto, None) if *anchor == TrustAnchor::AwsNitroRootG1 => aws_events(args),
        (Source::Auto, None) => EventsSource::DevAuditLog(audit_log_path(args)),
    };
    let events = match cloudtrail::decrypt_events(&source) {
        Ok(ev) => ev,
        Err(e) => {
            r.fail("kms-decrypt", e.to_string());
            return;
        }
    };
    judge_events(&events, build_pcr0, &source.describe(), r);
}

fn audit_log_path(args: &VerifyArgs) -> PathBuf {
    args.audit_log.clone().unwrap_or_else(|| dev_dir().join("kms/audit.jsonl"))
}

fn judge_events(events: &[DecryptEvent], build_pcr0: &str, source: &str, r: &mut Report) {
    let with_recipient: Vec<&DecryptEvent> = events.iter().filter(|e| e.recipient_pcr0.is_some()).collect();
    if with_recipient.is_empty() {
        let hint = if source.starts_with("CloudTrail") {
            "CloudTrail delivers events with a delay of up to ~5-15 minutes: if the agent bootstrapped recently, \
             re-run \
             `scripts/trigger.sh --verify --deep` in a few minutes"
        } else {
            "the agent has not bootstrapped against this KMS yet (is it running with this emulator?)"
        };
        r.fail(
            "kms-decrypt",
            format!(
                "no Decrypt events with an attestation Recipient yet in {source} ({} Decrypt events in all); {hint}",
                events.len()
            ),
        );
        return;
    }
    let good: Vec<&&DecryptEvent> =
        with_recipient.iter().filter(|e| e.success() && e.recipient_pcr0.as_deref() == Some(build_pcr0)).collect();
    let others: Vec<&&DecryptEvent> =
        with_recipient.iter().filter(|e| e.recipient_pcr0.as_deref() != Some(build_pcr0)).collect();
    for e in &others {
        r.info(
            "kms-decrypt",
            format!(
                "other PCR0 at {}: pcr0={} outcome={} module={}",
                e.event_time,
                e.recipient_pcr0.as_deref().unwrap_or(""),
                e.outcome(),
                e.module_id.as_deref().unwrap_or("?")
            ),
        );
    }
    match good.last() {
        Some(last) => r.pass(
            "kms-decrypt",
            format!(
                "kms={} build={build_pcr0} ({} successful Decrypt(s) with this PCR0, last {} module={}; {} event(s) \
                    with other PCR0s) [{source}]",
                last.recipient_pcr0.as_deref().unwrap_or(""),
                good.len(),
                last.event_time,
                last.module_id.as_deref().unwrap_or("?"),
                others.len()
            ),
        ),
        None => {
            let mut seen: Vec<String> = with_recipient
                .iter()
                .map(|e| format!("{}({})", e.recipient_pcr0.as_deref().unwrap_or(""), e.outcome()))
                .collect();
            seen.dedup();
            r.fail(
                "kms-decrypt",
                format!(
                    "kms={} build={build_pcr0}: KMS released the key to no enclave with the built PCR0 [{source}]",
                    seen.join(",")
                ),
            );
        }
    }
}

/// CloudTrail through the aws CLI, as the flags say.
fn aws_events(args: &VerifyArgs) -> EventsSource {
    EventsSource::Aws {
        cli: args.aws_cli.clone(),
        region: args.region.clone(),
        lookback: Duration::from_secs(args.lookback_minutes.saturating_mul(60)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_pcr0_from_nitro_cli_output() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.json");
        let pcr0 = "AB".repeat(48);
        std::fs::write(&p, format!(r#"{{"Measurements":{{"HashAlgorithm":"Sha384 {{ ... }}","PCR0":"{pcr0}"}}}}"#))
            .unwrap();
        assert_eq!(read_build_pcr0(&p).unwrap(), "ab".repeat(48));
        std::fs::write(&p, r#"{"Measurements":{}}"#).unwrap();
        assert!(read_build_pcr0(&p).unwrap_err().contains(".Measurements.PCR0"));
        assert!(read_build_pcr0(&dir.path().join("none.json")).unwrap_err().contains("enclave-image/build.sh"));
    }
}
