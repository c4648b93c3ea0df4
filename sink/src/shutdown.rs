//! Stopping: the runners take a `tokio::sync::watch::Receiver<bool>`; `true` (or the sender
//! going away) asks them to finish the batch in hand and return.

use tokio::sync::watch;

/// Resolves once shutdown is requested (at once if it already was).
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // An error means the sender is gone: nobody can ask any more, so stop.
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Whether shutdown has been requested.
pub fn is_stopped(shutdown: &watch::Receiver<bool>) -> bool {
    *shutdown.borrow() || shutdown.has_changed().is_err()
}
