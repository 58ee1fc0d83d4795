//! A role served by a pool of two enclaves: the worker balances Agent B's calls over
//! both (tower's p2c balancer, grpc.health.v1 checks), and when one is killed under
//! load the calls move to the other. No workflow fails, none is lost, and no step is
//! applied twice.

use enclavemesh_harness::loopkit::{
    INITIAL_BALANCE, RATE_BPS, assert_history_exactly_once_by, assert_load_complete, calls_served, load_args,
    load_with_fault, reveal_through, unix,
};
use enclavemesh_harness::mesh::random_pcr0;
use enclavemesh_harness::temporal::Temporal;
use enclavemesh_harness::{DevMesh, MeshOptions};

const QUEUE: &str = "it-pool";

#[tokio::test(flavor = "multi_thread")]
async fn slow_pool_member_killed_under_load_calls_move_to_the_other() {
    let pcr0 = random_pcr0();
    let mesh = DevMesh::start(MeshOptions { policy_pcr0s: vec![pcr0.clone()] }).await;
    let (_a, sock_a) = mesh.start_agent("agent-a", "ledger-init", Some(&pcr0));
    let (mut b1, sock_b1) = mesh.start_agent("agent-b1", "interest", Some(&pcr0));
    let (_b2, sock_b2) = mesh.start_agent("agent-b2", "interest", Some(&pcr0));
    let temporal = Temporal::start(mesh.logs_dir());
    let pool = format!("{},{}", unix(&sock_b1), unix(&sock_b2));
    let _worker = temporal.start_worker(mesh.logs_dir(), QUEUE, &unix(&sock_a), &pool);

    let (n, steps) = (60u32, 20u32);
    let args = load_args("it-pool", n, steps, 10, 300, &[]);
    let env = mesh.owner_env();
    // Kill agent-b1 once it has taken a share of the calls, while the load runs.
    let (result, (b1_served, b2_at_kill)) = load_with_fault(&temporal, QUEUE, &args, &env, &sock_b1, 40, |served| {
        let b2_at_kill = tokio::runtime::Handle::current().block_on(calls_served(&sock_b2));
        b1.kill();
        (served, b2_at_kill)
    });
    assert_load_complete(&result, n);

    // Both members took calls before the kill (the balancer spreads them), and the
    // survivor took the calls after it.
    let b2_end = calls_served(&sock_b2).await;
    eprintln!("agent-b1 served {b1_served} before it was killed; agent-b2 {b2_at_kill} then, {b2_end} at the end");
    assert!(b2_at_kill > 0, "the balancer sent agent-b2 calls too before the kill");
    assert!(b2_end > b2_at_kill, "calls moved to agent-b2 after agent-b1 died");
    let logs = mesh.all_logs();
    assert!(logs.contains("agent pool member unreachable"), "the worker saw agent-b1 go: {logs}");

    // Spot checks through the owner's key: each step exactly once, by a pool member.
    for i in [0, n / 2, n - 1] {
        let wf = format!("it-pool-{i:05}");
        let by = assert_history_exactly_once_by(
            &reveal_through(&temporal, QUEUE, &mesh, &sock_b2, &wf, "history"),
            INITIAL_BALANCE,
            RATE_BPS,
            steps,
            &["agent-b1", "agent-b2"],
        );
        eprintln!("{wf}: steps by {by:?}");
    }
}
