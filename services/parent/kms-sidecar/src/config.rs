//! The sidecar's whole configuration: one struct, from flags or environment.

use std::collections::HashMap;
use std::time::Duration;

use clap::Parser;
use enclavemesh_transport::Address;

use crate::tunnel::{Endpoint, TunnelSettings};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "kms-sidecar",
    about = "The parent's side of an enclave's KMS access: carries bytes, never keys.",
    long_about = "Runs on the parent instance, which the enclave does not trust. The enclave runs the KMS \
client itself, signs its own requests and terminates TLS to KMS inside the enclave; this sidecar only \
(1) carries the bytes through a Tunnel to an allowlisted KMS endpoint, (2) hands out this host's AWS \
credentials (the instance role, through IMDSv2 on EC2), and (3) hands each enclave its role and the \
encrypted TSK file at boot. Nothing it sees or sends can read or forge a key release.\n\n\
Credentials come from the standard AWS chain (env, profile, IMDSv2). In dev mode point --connect-to at \
the kms-emulator."
)]
pub struct Config {
    /// Transport address to serve KmsForwarder on: vsock://ANY:8000, unix:///path or tcp://host:port.
    #[arg(long, env = "KMS_SIDECAR_LISTEN", default_value = "vsock://ANY:8000")]
    pub listen: Address,

    /// AWS region: the tunnel allows kms.<region>.amazonaws.com:443 by default.
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    pub region: String,

    /// Endpoints a tunnel may reach, HOST:PORT (comma-separated or repeated). Default:
    /// kms.<region>.amazonaws.com:443. The enclave names one; anything else is refused.
    #[arg(long = "allow", env = "KMS_SIDECAR_ALLOW", value_delimiter = ',', value_name = "HOST:PORT")]
    pub allow: Vec<Endpoint>,

    /// Connect to TARGET for an allowed endpoint, HOST:PORT=TARGET_HOST:TARGET_PORT (like
    /// curl's --connect-to). Dev: kms.us-east-1.amazonaws.com:443=127.0.0.1:4599 reaches the
    /// kms-emulator, which serves a certificate for that name. TLS is the enclave's, so
    /// this changes where bytes go, never what the enclave accepts.
    #[arg(long = "connect-to", env = "KMS_SIDECAR_CONNECT_TO", value_delimiter = ',', value_name = "ENDPOINT=TARGET")]
    pub connect_to: Vec<String>,

    /// Tunnels open at once; more are refused (overloaded) until one closes.
    #[arg(long, env = "KMS_SIDECAR_MAX_TUNNELS", default_value_t = 64)]
    pub max_tunnels: usize,

    /// Close a tunnel after this many seconds without a byte either way.
    #[arg(long, env = "KMS_SIDECAR_TUNNEL_IDLE_SECS", default_value_t = 120)]
    pub tunnel_idle_secs: u64,

    /// Role of the enclave at a vsock CID, handed to it at boot (GetAgentConfig):
    /// `CID=NAME:KIND`, e.g. `16=agent-a:ledger-init`; `*=NAME:KIND` for any caller no
    /// CID entry matches. KIND is one the agent program serves (the ledger's ledger-init
    /// or interest; an SDK agent's own, e.g. screening). Repeat the flag, or comma-separate
    /// in the env var. An enclave cannot take flags or environment, so this is how one
    /// image plays several agents.
    #[arg(long = "agent-role", env = "KMS_SIDECAR_AGENT_ROLES", value_delimiter = ',', value_name = "CID=NAME:KIND")]
    pub agent_roles: Vec<crate::agent_config::AgentRole>,

    /// Encrypted-TSK file (scripts/setup-kms.sh's encrypted-tsk.b64) handed to enclaves
    /// with their role. KMS ciphertext only: releasing it still takes an attestation.
    #[arg(long, env = "KMS_SIDECAR_AGENT_TSK_FILE")]
    pub agent_tsk_file: Option<std::path::PathBuf>,
}

impl Config {
    /// What GetAgentConfig hands out.
    pub fn agent_directory(&self) -> crate::agent_config::AgentDirectory {
        crate::agent_config::AgentDirectory { roles: self.agent_roles.clone(), tsk_file: self.agent_tsk_file.clone() }
    }

    /// The allowlist and limits of the Tunnel.
    pub fn tunnel_settings(&self) -> Result<TunnelSettings, String> {
        let allowed: Vec<Endpoint> = if self.allow.is_empty() {
            vec![Endpoint { host: format!("kms.{}.amazonaws.com", self.region), port: 443 }]
        } else {
            self.allow.clone()
        };
        let mut allow: HashMap<String, Endpoint> = allowed.iter().map(|e| (e.to_string(), e.clone())).collect();
        for redirect in &self.connect_to {
            let (from, to) = redirect
                .split_once('=')
                .ok_or_else(|| format!("--connect-to '{redirect}': expected HOST:PORT=TARGET_HOST:TARGET_PORT"))?;
            let from: Endpoint = from.parse().map_err(|e| format!("--connect-to: {e}"))?;
            let to: Endpoint = to.parse().map_err(|e| format!("--connect-to: {e}"))?;
            let slot = allow.get_mut(&from.to_string()).ok_or_else(|| {
                format!("--connect-to {from}: that endpoint is not allowed (--allow, default kms.<region>.amazonaws.com:443)")
            })?;
            *slot = to;
        }
        Ok(TunnelSettings {
            allow,
            max_tunnels: self.max_tunnels.max(1),
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(self.tunnel_idle_secs.max(1)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_region_decides_the_default_allowlist_and_connect_to_redirects_it() {
        let c = Config::try_parse_from(["kms-sidecar", "--region", "eu-west-1"]).unwrap();
        let t = c.tunnel_settings().unwrap();
        assert_eq!(t.allow.keys().collect::<Vec<_>>(), vec!["kms.eu-west-1.amazonaws.com:443"]);
        let c =
            Config::try_parse_from(["kms-sidecar", "--connect-to", "kms.us-east-1.amazonaws.com:443=127.0.0.1:4599"])
                .unwrap();
        let t = c.tunnel_settings().unwrap();
        assert_eq!(t.allow["kms.us-east-1.amazonaws.com:443"], Endpoint { host: "127.0.0.1".into(), port: 4599 });
        let c = Config::try_parse_from(["kms-sidecar", "--connect-to", "evil.example:443=127.0.0.1:1"]).unwrap();
        assert!(c.tunnel_settings().unwrap_err().contains("not allowed"));
    }
}
