//! A KMS the parent controls: a second kms-emulator, in an AWS account of the parent's
//! own, that the parent's sidecar can tunnel the enclave to.
//!
//! With `same_ca` it serves TLS under the mesh's dev CA, as real KMS in the parent's own
//! account would serve authentic TLS for `kms.<region>.amazonaws.com`: only the enclave's
//! key pin stands between such a parent and a TSK it knows. Without it, it stands for an
//! impostor endpoint, which TLS alone stops.

use std::path::{Path, PathBuf};

use crate::kms::{self, Creds};
use crate::mesh::{DevMesh, spawn_emulator_in};
use crate::{Proc, free_port};

pub struct RogueKms {
    pub proc: Proc,
    pub port: u16,
    /// Its dev directory (identities, credentials, state; a dev CA of its own unless `same_ca`).
    pub dev: PathBuf,
    pub admin: Creds,
    pub instance: Creds,
}

impl RogueKms {
    /// Starts it in account `account_id`, next to `mesh`.
    pub fn start(mesh: &DevMesh, name: &str, account_id: &str, same_ca: bool) -> RogueKms {
        let dev = mesh.logs_dir().join(name);
        std::fs::create_dir_all(dev.join("kms")).expect("rogue dev dir");
        if same_ca {
            copy_dir(
                &mesh.dev_dir().join(enclavemesh_attestation::DEV_CA_DIR),
                &dev.join(enclavemesh_attestation::DEV_CA_DIR),
            );
        }
        let port = free_port();
        let proc = spawn_emulator_in(name, &dev, mesh.logs_dir(), port, &[], &["--account-id", account_id]);
        let admin = Creds::load(&dev, "admin");
        let instance = Creds::load(&dev, "instance");
        RogueKms { proc, port, dev, admin, instance }
    }

    pub fn endpoint(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    /// `--connect-to` for a sidecar that sends the enclave's KMS tunnel here.
    pub fn connect_to(&self) -> String {
        format!("kms.us-east-1.amazonaws.com:443=127.0.0.1:{}", self.port)
    }

    /// A client of this KMS as `creds`, trusting its own dev CA.
    pub async fn client(&self, creds: &Creds) -> aws_sdk_kms::Client {
        kms::client(&self.endpoint(), &self.dev, creds).await
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dev CA dir").flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy dev CA file");
    }
}
