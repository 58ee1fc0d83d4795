//! `enclavemesh audit fetch|verify`: export an agent's audit trail and check it.
//!
//! `fetch` pages through the agent's AuditLog RPC and prints every record, then the
//! agent's signed head, as JSON lines (redirect to a file). `verify` checks such a
//! file (or a local `--audit-log` file) with `enclavemesh_audit::verify_with`: hash
//! chain, seq continuity, every record covered by a head signed with the boot's
//! attested key, and (against a fetched head) that no record was cut off the tail.
//! A failure names the record (seq) where the evidence is.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use enclavemesh_attestation::{TrustAnchor, Verifier};
use enclavemesh_proto::v1::AuditLogRequest;
use enclavemesh_proto::v1::agent_service_client::AgentServiceClient;
use enclavemesh_transport::Address;

/// Exit code when the log fails verification.
pub const EXIT_TAMPERED: u8 = 2;

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Print an agent's audit records and its signed head as JSON lines (`> FILE`).
    Fetch {
        /// Agent address (vsock://CID:PORT, unix:///path, tcp://host:port).
        #[arg(long, env = "ENCLAVEMESH_AUDIT_AGENT")]
        agent: Address,
        /// First record to fetch (0 = the whole current boot).
        #[arg(long, default_value_t = 0)]
        from_seq: u64,
        /// Timeout of each AuditLog RPC in seconds.
        #[arg(long, default_value_t = 10)]
        rpc_timeout_secs: u64,
    },
    /// Check an audit log file: exit 0 if intact, 2 naming the first tampered record.
    Verify {
        /// JSON-lines file from `audit fetch` or an agent's --audit-log.
        file: PathBuf,
        /// Also verify each bootstrap attestation document against this root
        /// (DER or PEM; the dev CA root `.dev/dev-ca/root.der`, or the AWS Nitro root).
        #[arg(long, env = "ENCLAVEMESH_ATTESTATION_ROOT")]
        attestation_root: Option<PathBuf>,
        /// With --attestation-root: require this PCR0 (96 hex chars) in every boot.
        #[arg(long, requires = "attestation_root")]
        expect_pcr0: Option<String>,
    },
}

pub async fn run(args: &AuditArgs, json: bool) -> anyhow::Result<u8> {
    match &args.command {
        AuditCommand::Fetch { agent, from_seq, rpc_timeout_secs } => fetch(agent, *from_seq, *rpc_timeout_secs).await,
        AuditCommand::Verify { file, attestation_root, expect_pcr0 } => {
            verify(file, attestation_root.as_ref(), expect_pcr0.as_deref(), json)
        }
    }
}

async fn fetch(agent: &Address, from_seq: u64, timeout_secs: u64) -> anyhow::Result<u8> {
    let channel = enclavemesh_transport::channel(agent)?;
    let mut client = AgentServiceClient::new(channel);
    let mut next = from_seq;
    let head = loop {
        let mut req = tonic::Request::new(AuditLogRequest { from_seq: next, max_records: 0 });
        req.set_timeout(Duration::from_secs(timeout_secs));
        let resp =
            client.audit_log(req).await.with_context(|| format!("AuditLog on the agent at {agent}"))?.into_inner();
        let got = resp.records.len();
        for r in &resp.records {
            // Records evicted from enclave memory are skipped by the agent: say so
            // (verify will report them removed) and carry on from what it sent.
            let seq = serde_json::from_str::<serde_json::Value>(r).ok().and_then(|v| v["seq"].as_u64()).unwrap_or(next);
            if seq > next {
                eprintln!(
                    "warning: records seq {next}..={} are no longer in the agent's memory (evicted past the agent's \
                     --audit-max-records / --audit-max-bytes); \
                     fetch more often, or keep earlier exports",
                    seq - 1
                );
            }
            println!("{r}");
            next = next.max(seq + 1);
        }
        if got == 0 || next >= resp.next_seq {
            break resp.head;
        }
    };
    // The head of the last page: signed by the agent, names the last record it had.
    println!("{head}");
    Ok(0)
}

fn verify(file: &PathBuf, root: Option<&PathBuf>, expect_pcr0: Option<&str>, json: bool) -> anyhow::Result<u8> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let verifier = match root {
        Some(p) => {
            let mut v = Verifier::new(
                TrustAnchor::from_arg(&p.display().to_string())
                    .with_context(|| format!("attestation root {}", p.display()))?,
            );
            if let Some(pcr0) = expect_pcr0 {
                v = v.expect_pcr(0, hex::decode(pcr0.trim()).context("--expect-pcr0 must be hex")?);
            }
            Some(v)
        }
        None => None,
    };
    match enclavemesh_audit::verify_with(text.lines(), verifier.as_ref()) {
        Ok(s) => {
            if json {
                let segments: Vec<_> = s
                    .segments
                    .iter()
                    .map(|g| {
                        serde_json::json!({"agent": g.agent, "records": g.records, "pcr0": g.pcr0,
                            "attestation_verified": g.attestation_verified, "last_hash": g.last_hash})
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({
                        "event": "audit_verified", "records": s.records, "boots": segments, "signed_heads": s.heads
                    })
                );
            } else {
                println!(
                    "OK: {} records in {} boot(s), every one covered by a head signed in the enclave ({} head(s))",
                    s.records,
                    s.segments.len(),
                    s.heads
                );
                for g in &s.segments {
                    println!(
                        "  {}: {} records, PCR0 {} (attestation {})",
                        g.agent,
                        g.records,
                        g.pcr0,
                        if g.attestation_verified {
                            "verified"
                        } else {
                            "binding checked, chain not verified: pass --attestation-root"
                        }
                    );
                }
            }
            Ok(0)
        }
        Err(e) => {
            if json {
                println!("{}", serde_json::json!({"event": "audit_failed", "error": e.to_string(), "seq": e.seq()}));
            } else {
                println!("FAILED: {e}");
            }
            Ok(EXIT_TAMPERED)
        }
    }
}
