//! The intake role, served by the agent SDK (its own binary, so its own measurement).

fn main() -> std::process::ExitCode {
    enclavemesh_agent_sdk::serve(screening_pipeline::Intake)
}
