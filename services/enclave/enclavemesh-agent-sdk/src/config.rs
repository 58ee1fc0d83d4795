//! The agent's whole configuration: one struct, from flags or environment.

use clap::{Parser, Subcommand, ValueEnum};

use enclavemesh_transport::Address;

use crate::kms::pin::KeyPin;
use crate::kms::tls::KmsTrust;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    about = "Enclave Mesh agent: serves AgentService inside a Nitro Enclave (or a simulated one in dev).",
    long_about = "At start the agent makes an ephemeral RSA key, gets an attestation document from the \
NSM binding that key, and asks KMS itself, over TLS that ends in this process (carried by the parent's \
kms-sidecar as opaque bytes), to Decrypt the encrypted TSK under the pinned key with that document as \
Recipient. KMS releases the TSK only if the document's PCR0 is allowed by the key policy, wrapped to the \
ephemeral key, so the TSK exists in clear only in this process. Then it serves AgentService, \
grpc.health.v1 and server reflection on --listen.",
    // `measure` is a tool: it needs none of the serving settings (the pinned key above all).
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: Config,
}

impl Cli {
    /// Parses the process's arguments as `program`, which serves `kinds`.
    pub fn parse_for(program: &str, kinds: &[&str]) -> Result<Cli, clap::Error> {
        use clap::{CommandFactory, FromArgMatches};
        let command = Cli::command()
            .name(program.to_string())
            .bin_name(program.to_string())
            .after_help(format!("This program serves the kinds: {} (the first is the default).", kinds.join(", ")));
        Cli::from_arg_matches(&command.try_get_matches()?)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the simulated measurements of an agent binary in nitro-cli's JSON shape
    /// ({"Measurements": {"HashAlgorithm", "PCR0", "PCR1", "PCR2"[, "PCR8"]}}).
    Measure {
        /// Binary to measure (default: this executable).
        #[arg(long)]
        binary: Option<PathBuf>,
        /// The image's signing certificate (PEM or DER): adds its PCR8.
        #[arg(long)]
        signing_cert: Option<PathBuf>,
    },
}

/// Which NSM to attest with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NsmKind {
    /// The real Nitro Security Module at /dev/nsm.
    Nitro,
    /// The dev-mode simulator: real-format documents signed by the dev CA.
    Simulated,
}

/// A role fixed by the image: the name bound into every envelope, and the logic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRole {
    pub name: String,
    pub kind: String,
}

impl std::fmt::Display for ImageRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.name, self.kind)
    }
}

impl ImageRole {
    /// `NAME:KIND`, e.g. `agent-b:interest`; empty is none (the Dockerfile sets the
    /// variable whether or not a role was given).
    pub fn parse(s: &str) -> Result<Option<ImageRole>, String> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(None);
        }
        let (name, kind) =
            s.split_once(':').ok_or_else(|| format!("'{s}' is not NAME:KIND (e.g. agent-b:interest)"))?;
        if !enclavemesh_proto::limits::is_agent_name(name) {
            return Err(format!("'{name}' is not an agent name (1 to 64 of A-Z a-z 0-9 - _)"));
        }
        if !enclavemesh_proto::limits::is_agent_name(kind) {
            return Err(format!("'{kind}' is not a kind (1 to 64 of A-Z a-z 0-9 - _)"));
        }
        Ok(Some(ImageRole { name: name.to_owned(), kind: kind.to_owned() }))
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Transport address to serve on: vsock://ANY:5000, unix:///path or tcp://host:port.
    #[arg(long, env = "AGENT_LISTEN", default_value = "vsock://ANY:5000")]
    pub listen: Address,

    /// Agent name, bound into every envelope it seals (e.g. agent-a).
    #[arg(long, env = "AGENT_NAME", default_value = "agent")]
    pub name: String,

    /// Which of this program's roles to run (default: its first; the ledger's are
    /// interest and ledger-init). A program built for one role serves only that one.
    #[arg(long, env = "AGENT_KIND")]
    pub kind: Option<String>,

    /// A KMS-sealed resource to open at boot and give to the role, as NAME=FILE
    /// (repeatable; AGENT_RESOURCES is ';'-separated). FILE is what `enclavemesh
    /// seal-resource --name NAME` wrote; it opens only in an attested enclave.
    #[arg(long = "resource", env = "AGENT_RESOURCES", value_delimiter = ';', value_name = "NAME=FILE")]
    pub resources: Vec<crate::resource::ResourceArg>,

    /// Address of the parent's kms-sidecar.
    #[arg(long, env = "KMS_SIDECAR_ADDR", default_value = "vsock://3:8000")]
    pub sidecar: Address,

    /// The parent's vsock CID where it is not Nitro's 3: QEMU's nitro-enclave machine
    /// puts the host at CID 2. The image's init sets it from the kernel command line
    /// (`enclavemesh.parent_cid=N`), which the parent chooses: it is parent input, so only
    /// 2 (host) or 3 (parent) is accepted, and it can only move a `vsock://3:PORT`
    /// sidecar address to that CID - where the parent's endpoints are, which the parent
    /// controls anyway.
    #[arg(long, env = "ENCLAVEMESH_PARENT_CID", value_parser = clap::value_parser!(u32).range(2..=3))]
    pub parent_cid: Option<u32>,

    /// The role this image was built as, NAME:KIND (e.g. `agent-b:interest`):
    /// `enclave-image/build.sh --role` bakes it into the image's measured environment, so
    /// each role's image has its own PCR0 and the key policy names exactly the roles it
    /// allows. With it, the agent takes only the TSK file from the kms-sidecar: a name or
    /// kind the parent assigns that differs is refused at boot, and --name/--kind are
    /// ignored.
    /// Empty: none (an image built without --role).
    #[arg(long, env = "AGENT_IMAGE_ROLE", value_name = "NAME:KIND")]
    pub image_role: Option<String>,

    /// Take the agent name, kind and TSK file from the kms-sidecar at boot (its
    /// GetAgentConfig, chosen by this enclave's vsock CID) instead of flags: an enclave
    /// gets no flags or environment from nitro-cli, so the enclave image sets this.
    /// --name/--kind/--tsk-file are then ignored. The KMS key and trust never come from
    /// the parent.
    #[arg(long, env = "AGENT_CONFIG_FROM_SIDECAR")]
    pub config_from_sidecar: bool,

    /// File with the KMS-encrypted TSK: one base64 CiphertextBlob (version 1) or lines
    /// `v<N>:<base64>` for several versions (written by scripts/setup-kms.sh).
    #[arg(long, env = "AGENT_TSK_FILE")]
    pub tsk_file: Option<PathBuf>,

    /// TSK versions to retire, comma-separated (e.g. `1,2`). A retired version is
    /// not even requested from KMS, so envelopes still sealed under it are refused
    /// with FAILED_PRECONDITION (unknown_key_version). Retire a version only after
    /// every workflow in flight has re-sealed its state under a newer one (each
    /// Init/Process seals with the newest version held). At least one version in
    /// --tsk-file must stay active.
    #[arg(long, env = "AGENT_RETIRED_KEY_VERSIONS", value_delimiter = ',', value_name = "N[,N...]")]
    pub retired_key_versions: Vec<u32>,

    /// Also append every audit record (JSON lines) to this local file. Dev convenience:
    /// in production the enclave has no disk, and the parent fetches the trail with the
    /// AuditLog RPC (`enclavemesh audit fetch --agent ADDR > FILE`). Either way,
    /// `enclavemesh audit verify FILE` detects removed, edited or reordered records.
    #[arg(long, env = "AGENT_AUDIT_LOG")]
    pub audit_log: Option<PathBuf>,

    /// How often new records in --audit-log are signed (a checkpoint line). Signing
    /// is kept off the request path; records newer than the last checkpoint verify
    /// once the next one is written (or with `enclavemesh audit fetch`).
    #[arg(
        long,
        env = "AGENT_AUDIT_CHECKPOINT_MS",
        default_value_t = 1000,
        value_parser = clap::value_parser!(u64).range(10..)
    )]
    pub audit_checkpoint_ms: u64,

    /// Audit records kept in enclave memory (besides the bootstrap record), ~0.5 KB
    /// each. Older ones are evicted; export with `enclavemesh audit fetch` at least
    /// this often, or `audit verify` reports the evicted records as removed.
    #[arg(long, env = "AGENT_AUDIT_MAX_RECORDS", default_value_t = enclavemesh_audit::DEFAULT_MAX_RECORDS,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub audit_max_records: usize,

    /// Memory the held audit records may take, in bytes (default 8 MiB, ~15 000
    /// records): what bounds the agent's footprint, whichever of this and
    /// --audit-max-records is reached first evicts the oldest records.
    #[arg(long, env = "AGENT_AUDIT_MAX_BYTES", default_value_t = enclavemesh_audit::DEFAULT_MAX_BYTES,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub audit_max_bytes: usize,

    /// ARN of the KMS key the TSK comes from. Part of the image's measured configuration
    /// (the enclave image bakes it in; never taken from the parent): the agent names this
    /// key in every Decrypt, accepts answers for it only, and reaches KMS in its region.
    // Required to serve; an Option only so that `measure` parses without it.
    #[arg(long, env = "AGENT_KMS_KEY_ARN", required = true)]
    pub kms_key_arn: Option<KeyPin>,

    /// ARN of the KMS key the data owner seals workflow inputs (and notes) under, if this
    /// agent opens them (Agent A). Measured, like --kms-key-arn.
    #[arg(long, env = "AGENT_INPUT_KEY_ARN")]
    pub input_key_arn: Option<KeyPin>,

    /// Roots TLS to KMS must chain to: `webpki` (the public web PKI roots compiled in:
    /// production) or the path of one root certificate (dev: the dev CA root the
    /// kms-emulator's certificate chains to, .dev/dev-ca/root.der). Measured, like
    /// --kms-key-arn.
    #[arg(long, env = "AGENT_KMS_TRUST", default_value = "webpki")]
    pub kms_trust: KmsTrust,

    /// NSM backend.
    #[arg(long, env = "AGENT_NSM", value_enum, default_value = "nitro")]
    pub nsm: NsmKind,

    /// Dev state directory holding the dev CA (simulated NSM only).
    #[arg(long, env = "ENCLAVEMESH_DEV_DIR", default_value = ".dev")]
    pub dev_dir: PathBuf,

    /// Simulated PCR0 as 96 hex chars (default: SHA-384 of this agent binary, so new code = new PCR0).
    #[arg(long, env = "AGENT_SIM_PCR0", conflicts_with = "sim_measurements")]
    pub sim_pcr0: Option<String>,

    /// Report the measurements of a built image: nitro-cli's JSON (`build/enclave.eif.json`,
    /// as `enclave-image/build.sh` writes it). PCR0, PCR1, PCR2 (and PCR8 when signed)
    /// are then the real EIF's, so the key policy holds the PCR0 the image really has.
    #[arg(long, env = "AGENT_SIM_MEASUREMENTS")]
    pub sim_measurements: Option<PathBuf>,

    /// Simulate an image signed with this certificate (PEM or DER, the one given to the EIF
    /// build): the simulated NSM then reports PCR8 as a signed enclave's, so a key policy
    /// that allows images by PCR8 (setup-kms-policy.sh --lock) is tested in dev.
    #[arg(long, env = "AGENT_SIM_SIGNING_CERT")]
    pub sim_signing_cert: Option<PathBuf>,

    /// Simulate a debug-mode enclave (all-zero PCRs), which KMS and verifiers refuse.
    #[arg(long, env = "AGENT_SIM_DEBUG_MODE")]
    pub sim_debug_mode: bool,

    /// Give up bootstrapping after this many seconds of transient failures (sidecar down, KMS unreachable).
    #[arg(long, env = "AGENT_BOOTSTRAP_TIMEOUT_SECS", default_value_t = 60)]
    pub bootstrap_timeout_secs: u64,

    /// Largest gRPC request accepted, in bytes (checked before decoding).
    #[arg(long, env = "AGENT_MAX_MESSAGE_BYTES", default_value_t = enclavemesh_proto::DEFAULT_MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,

    /// Sealed states are padded to a power of two of at least this many bytes, so a
    /// ciphertext's length does not leak the digits of a balance or a note's length.
    #[arg(long, env = "AGENT_STATE_PAD_FLOOR_BYTES", default_value_t = enclavemesh_sealing::padding::DEFAULT_PAD_FLOOR)]
    pub state_pad_floor_bytes: usize,

    /// Largest envelope ciphertext accepted, in bytes.
    #[arg(long, env = "AGENT_MAX_STATE_BYTES", default_value_t = 1024 * 1024)]
    pub max_state_bytes: usize,

    /// Per-request deadline in milliseconds.
    #[arg(long, env = "AGENT_REQUEST_TIMEOUT_MS", default_value_t = 10_000)]
    pub request_timeout_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_role_is_name_colon_kind_and_empty_is_none() {
        let r = ImageRole::parse("agent-b:interest").unwrap().unwrap();
        assert_eq!((r.name.as_str(), r.kind.as_str()), ("agent-b", "interest"));
        assert_eq!(r.to_string(), "agent-b:interest");
        assert_eq!(ImageRole::parse("a:screening").unwrap().unwrap().kind, "screening");
        assert_eq!(ImageRole::parse("").unwrap(), None);
        assert_eq!(ImageRole::parse("  ").unwrap(), None);
        for bad in ["agent-b", "agent-b:", ":interest", "a b:interest", "agent-b:sco ring"] {
            assert!(ImageRole::parse(bad).is_err(), "{bad}");
        }
    }

    fn parse(extra: &[&str]) -> Result<Cli, clap::Error> {
        let mut args = vec!["enclave-agent", "--kms-key-arn", "arn:aws:kms:us-east-1:111122223333:key/k"];
        args.extend_from_slice(extra);
        Cli::try_parse_from(args)
    }

    #[test]
    fn the_parent_cid_from_the_kernel_command_line_is_only_host_or_parent() {
        // It comes from the parent (QEMU's -append): only 2 (QEMU's host) or 3 (Nitro's parent).
        assert!(parse(&[]).is_ok(), "positive control: the base arguments parse");
        for ok in ["2", "3"] {
            assert_eq!(parse(&["--parent-cid", ok]).unwrap().serve.parent_cid, Some(ok.parse().unwrap()));
        }
        for bad in ["0", "1", "4", "16", "-1", "x"] {
            assert!(parse(&["--parent-cid", bad]).is_err(), "--parent-cid {bad} accepted");
        }
        // `measure` needs none of the serving settings.
        let m = Cli::try_parse_from(["enclave-agent", "measure", "--binary", "/bin/true"]).unwrap();
        assert!(matches!(m.command, Some(Command::Measure { .. })));
        // Simulated measurements come from one source: a PCR0 or a built image's file.
        assert!(parse(&["--sim-pcr0", &"a".repeat(96), "--sim-measurements", "build/enclave.eif.json"]).is_err());
    }
}
