//! The TCP listener: accepts connections and runs the protocol on each until shutdown.

use crate::sql::session::Database;
use crate::wire::handler::{ConnectionHandler, ConnectionHandlers};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Serves connections from `listener` until `shutdown` turns true, then closes every open
/// connection and returns once their tasks are gone, so that no task still holds the database
/// (whose engines release their directory locks when the last reference is dropped).
///
/// Closing is immediate, like PostgreSQL's fast shutdown: a connection is dropped at its next
/// await point. Statements run synchronously between await points, so none is cut in half, and
/// anything acknowledged is already durable.
pub async fn serve(
    listener: TcpListener,
    db: Arc<Database>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (socket, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                };
                let handlers = Arc::new(ConnectionHandlers {
                    handler: Arc::new(ConnectionHandler::new(db.clone())),
                });
                connections.spawn(async move {
                    tracing::debug!(%peer, "connection opened");
                    if let Err(e) = pgwire::tokio::process_socket(socket, None, handlers).await {
                        tracing::debug!(%peer, error = %e, "connection ended with error");
                    }
                });
            }
            // Reap finished connections so the set does not grow with the server's lifetime.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    drop(listener);
                    connections.abort_all();
                    while connections.join_next().await.is_some() {}
                    return Ok(());
                }
            }
        }
    }
}
