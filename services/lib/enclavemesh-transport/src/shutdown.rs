//! The single graceful-shutdown future every binary passes to its server.

/// Resolves on the first SIGINT (Ctrl-C) or SIGTERM (`docker stop`, systemd, ECS).
///
/// If a handler cannot be installed, that signal is simply never observed (logged
/// once) rather than shutting the program down immediately.
pub async fn shutdown_signal() {
    let interrupt = async {
        match tokio::signal::ctrl_c().await {
            Ok(()) => "SIGINT",
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGINT");
                std::future::pending().await
            }
        }
    };
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
                "SIGTERM"
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending().await
            }
        }
    };
    let which = tokio::select! {
        s = interrupt => s,
        s = terminate => s,
    };
    tracing::info!(signal = which, "shutdown signal received, shutting down gracefully");
}
