//! The TCP listener: accepts connections and runs the protocol on each until shutdown.

use crate::sql::session::Database;
use crate::wire::handler::{ConnectionHandler, ConnectionHandlers};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Serves connections from `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    db: Arc<Database>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
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
                tokio::spawn(async move {
                    tracing::debug!(%peer, "connection opened");
                    if let Err(e) = pgwire::tokio::process_socket(socket, None, handlers).await {
                        tracing::debug!(%peer, error = %e, "connection ended with error");
                    }
                });
            }
            _ = shutdown.changed() => {
                if *shutdown.borrow() {
                    return Ok(());
                }
            }
        }
    }
}
