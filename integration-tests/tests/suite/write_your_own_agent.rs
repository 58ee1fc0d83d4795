//! The README's "Write your own agent", followed as a new user would: its files, taken
//! from the README as written, make a crate next to a clone of this repository; it builds
//! against the SDK's documented API, measures itself, is allowed by the key policy, and
//! runs the README's manifest end to end through a real Temporal, the owner sealing the
//! input and opening the one field the role discloses.

use std::path::{Path, PathBuf};
use std::process::Command;

use enclavemesh_harness::loopkit::{trigger_pipeline, unix};
use enclavemesh_harness::mesh::contains_secret;
use enclavemesh_harness::proc::{measured_pcr0, repo_root};
use enclavemesh_harness::temporal::{Temporal, history_haystack};
use enclavemesh_harness::{DevMesh, MeshOptions};
use prost::Message;

/// The owner's side of the README's `Plan`: the same message, as the owner's own client
/// defines it.
#[derive(Clone, PartialEq, prost::Message)]
struct Plan {
    #[prost(int64, tag = "1")]
    start: i64,
    #[prost(int64, tag = "2")]
    monthly: i64,
    #[prost(int64, tag = "3")]
    goal: i64,
}

/// The README's block after `<!-- write-your-own-agent: NAME -->`.
fn readme_file(readme: &str, name: &str) -> String {
    let marker = format!("<!-- write-your-own-agent: {name} -->");
    let after = &readme[readme.find(&marker).unwrap_or_else(|| panic!("README has no {marker}"))..];
    let start = after.find("```").expect("a fenced block after the marker");
    let body = &after[start..];
    let body = &body[body.find('\n').expect("a fence line") + 1..];
    body[..body.find("\n```").expect("the block's closing fence")].to_string() + "\n"
}

/// Steps 1 and 2: the crate, next to "the clone" (a link to this checkout), built
/// offline with the versions this repository locks.
fn build_the_readme_crate(readme: &str, dir: &Path) -> PathBuf {
    std::os::unix::fs::symlink(repo_root().canonicalize().unwrap(), dir.join("enclavemesh")).unwrap();
    let krate = dir.join("savings-agent");
    std::fs::create_dir_all(krate.join("src")).unwrap();
    for file in ["Cargo.toml", "src/main.rs"] {
        std::fs::write(krate.join(file), readme_file(readme, file)).unwrap();
    }
    std::fs::copy(repo_root().join("Cargo.lock"), krate.join("Cargo.lock")).unwrap();
    // Its own target dir (kept between runs of the suite: the first build compiles the SDK's
    // dependency tree once more, for this crate's feature set).
    let target = repo_root().join("target/write-your-own-agent");
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--offline", "--quiet"])
        .current_dir(&krate)
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .output()
        .expect("cargo runs");
    assert!(out.status.success(), "the README's crate does not build:\n{}", String::from_utf8_lossy(&out.stderr));
    target.join("debug/savings-agent")
}

fn run(bin: &Path, args: &[&str]) -> (bool, String) {
    let o = Command::new(bin).args(args).output().expect("the agent runs");
    (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_the_readme_agent_builds_is_allowed_and_runs_a_pipeline_disclosing_one_field() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bin = build_the_readme_crate(&readme, dir.path());

    // Step 3: --help lists the SDK's settings under the program's name; measure prints
    // the binary's own measurements, which the key policy then allows.
    let (ok, help) = run(&bin, &["--help"]);
    assert!(ok && help.contains("savings-agent") && help.contains("--resource") && help.contains("saver"), "{help}");
    let pcr0 = measured_pcr0(bin.to_str().unwrap());
    let mesh = DevMesh::start(MeshOptions { policy_pcr0s: vec![pcr0] }).await;

    // Step 4: serve it, and give the worker its address.
    let (cmd, sock) =
        mesh.program_command(bin.to_str().unwrap(), "saver", "saver", "saver", None, &mesh.sidecar_addr, 20);
    let mut agent = enclavemesh_harness::proc::Proc::spawn("saver", cmd, mesh.logs_dir());
    enclavemesh_harness::proc::wait_for("saver socket", std::time::Duration::from_secs(60), || {
        agent.assert_running();
        sock.exists()
    });
    let temporal = Temporal::start(mesh.logs_dir());
    let queue = "it-readme";
    let saver = unix(&sock);
    let roles = vec![("AGENT_ROLES".to_string(), format!("saver={saver}"))];
    let _worker = temporal.start_worker_with_env(mesh.logs_dir(), queue, &saver, &saver, &roles);

    // Step 5: the README's manifest, the owner's encoded Plan, the README's trigger.
    let manifest = dir.path().join("saver.toml");
    std::fs::write(&manifest, readme_file(&readme, "saver.toml")).unwrap();
    // 100000 + 11 x 25000 = 375000 after eleven months: 350000 is reached, 400000 is not.
    for (wf, goal, reached) in [("wf-readme-yes", 350_000, "yes"), ("wf-readme-no", 400_000, "no")] {
        let plan = Plan { start: 100_000, monthly: 25_000, goal }.encode_to_vec();
        let input = dir.path().join("plan.bin");
        std::fs::write(&input, &plan).unwrap();
        let run = trigger_pipeline(&temporal, queue, &mesh, wf, &manifest, &input, &saver, "goal_reached");
        assert_eq!(run.steps, 11, "Init, then eleven months");
        assert_eq!(run.revealed, reached, "{wf}");
        // The owner's plan is in no history (positive control: the scan finds it when there).
        let hay = history_haystack(&temporal.history_json(wf));
        assert!(!contains_secret(&hay, &plan), "the plan in the history of {wf}");
        assert!(contains_secret(&[&hay[..], &plan[..]].concat(), &plan));
    }

    // Anything else is refused, typed: only goal_reached leaves.
    let args = ["reveal", "--agent", &saver, "--workflow-id", "wf-readme-yes", "--field", "saved"];
    let (ok, _, all) = temporal.cli_with_env(queue, &args, &mesh.owner_env());
    assert!(!ok && all.contains("invalid_request") && all.contains("only goal_reached"), "{all}");
}
