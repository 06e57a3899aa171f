//! Graceful shutdown: SIGINT / SIGTERM cancel one token that every server and
//! background task of the process watches.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Resolves on the first SIGINT (Ctrl-C) or SIGTERM (Kubernetes, compose).
pub async fn signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(terminate) => terminate,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only SIGINT stops the process");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => tracing::info!("received SIGINT, shutting down"),
            _ = terminate.recv() => tracing::info!("received SIGTERM, shutting down"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
        tracing::info!("received Ctrl-C, shutting down");
    }
}

/// A token cancelled by the first shutdown signal.
pub fn token_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        signal().await;
        cancel.cancel();
    });
    token
}

/// Runs `server` until it finishes; once `shutdown` fires, allows it `grace`
/// to drain in-flight work and then gives up on it.
///
/// Returns `None` if the grace period ran out before the server finished.
pub async fn drain<F: Future>(
    what: &str,
    server: F,
    shutdown: &CancellationToken,
    grace: Duration,
) -> Option<F::Output> {
    tokio::pin!(server);
    tokio::select! {
        output = &mut server => return Some(output),
        () = shutdown.cancelled() => {}
    }
    match tokio::time::timeout(grace, &mut server).await {
        Ok(output) => Some(output),
        Err(_) => {
            tracing::warn!(
                server = what,
                grace_ms = grace.as_millis() as u64,
                "drain timed out; dropping remaining connections"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn drain_waits_for_in_flight_work_within_the_grace_period() {
        let shutdown = CancellationToken::new();
        let inner = shutdown.clone();
        let server = async move {
            inner.cancelled().await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            "drained"
        };
        shutdown.cancel();
        let output = drain("test", server, &shutdown, Duration::from_secs(5)).await;
        assert_eq!(output, Some("drained"));
    }

    #[tokio::test(start_paused = true)]
    async fn drain_gives_up_after_the_grace_period() {
        let shutdown = CancellationToken::new();
        let server = std::future::pending::<()>();
        shutdown.cancel();
        let output = drain("test", server, &shutdown, Duration::from_secs(5)).await;
        assert_eq!(output, None);
    }
}
