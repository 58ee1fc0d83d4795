//! The ledger example, served by the agent SDK: one program with two roles, chosen by
//! `--kind`, the image's measured role, or the parent's assignment.

mod ledger;

fn main() -> std::process::ExitCode {
    enclavemesh_agent_sdk::serve_kinds(&[ledger::INTEREST, ledger::LEDGER_INIT], ledger::Ledger::of_kind)
}
