//! Two parent stacks on one Temporal, as two hosts would run them: each has its own
//! worker and its own Agent A and Agent B, all polling one task queue. Steps are handed
//! from one host's enclave to the other's (both are released the same TSK), and when one
//! host dies mid-run the other finishes every workflow: none lost, no step applied twice.

use enclavemesh_harness::loopkit::{
    INITIAL_BALANCE, RATE_BPS, assert_history_exactly_once_by, assert_load_complete, load_args, load_with_fault,
    reveal_through, unix,
};
use enclavemesh_harness::mesh::random_pcr0;
use enclavemesh_harness::temporal::{Temporal, history_haystack};
use enclavemesh_harness::{DevMesh, MeshOptions};

const QUEUE: &str = "it-hosts";

#[tokio::test(flavor = "multi_thread")]
async fn slow_two_hosts_hand_steps_across_and_one_dies_none_lost() {
    let pcr0 = random_pcr0();
    let mesh = DevMesh::start(MeshOptions { policy_pcr0s: vec![pcr0.clone()] }).await;
    let temporal = Temporal::start(mesh.logs_dir());
    // Host 1 and host 2: the same image (PCR0), so the same TSK; their own agents and worker.
    let (mut h1_a, h1_sock_a) = mesh.start_agent("h1-agent-a", "ledger-init", Some(&pcr0));
    let (mut h1_b, h1_sock_b) = mesh.start_agent("h1-agent-b", "interest", Some(&pcr0));
    let (_h2_a, h2_sock_a) = mesh.start_agent("h2-agent-a", "ledger-init", Some(&pcr0));
    let (_h2_b, h2_sock_b) = mesh.start_agent("h2-agent-b", "interest", Some(&pcr0));
    let mut h1_worker =
        temporal.start_worker_named("worker-h1", mesh.logs_dir(), QUEUE, &unix(&h1_sock_a), &unix(&h1_sock_b));
    let _h2_worker =
        temporal.start_worker_named("worker-h2", mesh.logs_dir(), QUEUE, &unix(&h2_sock_a), &unix(&h2_sock_b));

    let (n, steps) = (100u32, 6u32);
    // Remote handoffs: each step is an activity any host's worker may take.
    let args = load_args("it-hosts", n, steps, 40, 400, &["--handoff", "remote"]);
    let env = mesh.owner_env();
    let (result, h1_served) = load_with_fault(&temporal, QUEUE, &args, &env, &h1_sock_b, 60, |served| {
        // Host 1 dies: its worker and its enclaves, at once.
        h1_worker.kill();
        h1_a.kill();
        h1_b.kill();
        served
    });
    eprintln!("host 1 served {h1_served} steps before it died");
    assert_load_complete(&result, n);

    // State handed across: a workflow whose history holds envelopes sealed on both hosts
    // (an envelope names its sealer in clear: Init's agent-a or a step's agent-b). Every
    // history, eight at a time.
    let names = |i: u32| format!("it-hosts-{i:05}");
    let crossed: Vec<String> = tokio::task::block_in_place(|| {
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..8u32)
                .map(|k| {
                    let temporal = &temporal;
                    s.spawn(move || {
                        (k..n)
                            .step_by(8)
                            .map(names)
                            .filter(|wf| {
                                let hay = history_haystack(&temporal.history_json(wf));
                                let has = |needle: &str| hay.windows(needle.len()).any(|w| w == needle.as_bytes());
                                has("\"h1-agent-") && has("\"h2-agent-")
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
        })
    });
    eprintln!("{} workflows had steps on both hosts: {crossed:?}", crossed.len());
    assert!(!crossed.is_empty(), "no workflow had its state handed from one host to the other");

    // Through the owner's key: each step exactly once, by either host's Agent B.
    for wf in [crossed[0].clone(), names(0), names(n / 2), names(n - 1)] {
        let by = assert_history_exactly_once_by(
            &reveal_through(&temporal, QUEUE, &mesh, &h2_sock_b, &wf, "history"),
            INITIAL_BALANCE,
            RATE_BPS,
            steps,
            &["h1-agent-b", "h2-agent-b"],
        );
        eprintln!("{wf}: steps by {by:?}");
    }
}
