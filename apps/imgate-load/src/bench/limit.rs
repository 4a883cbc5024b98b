//! The limit: the least a WebSocket push server can do on this machine. Every text message a
//! connection sends is written to every other connection; no authentication, no framing of
//! its own, no per-user state. What the gateway does beyond this is its overhead.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message as Frame, Utf8Bytes};

/// Messages a slow connection may fall behind before it misses some (and says so).
const BACKLOG: usize = 4096;
/// Read buffer per connection: only the publisher sends anything.
const READ_BUFFER: usize = 4 * 1024;

/// Serves on `listener` until the process ends.
pub async fn serve(listener: TcpListener) -> std::io::Result<()> {
    let (tx, _) = broadcast::channel::<(u64, Utf8Bytes)>(BACKLOG);
    let next_id = Arc::new(AtomicU64::new(1));
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let (tx, id) = (tx.clone(), next_id.fetch_add(1, Ordering::Relaxed));
        tokio::spawn(async move {
            let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
            let Ok(socket) =
                tokio_tungstenite::accept_async_with_config(stream, Some(config)).await
            else {
                return;
            };
            let mut rx = tx.subscribe();
            let (mut sink, mut stream) = socket.split();
            loop {
                tokio::select! {
                    sent = rx.recv() => match sent {
                        Ok((from, text)) if from != id => {
                            if sink.send(Frame::Text(text)).await.is_err() {
                                return;
                            }
                        }
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            eprintln!("limit: connection {id} missed {missed} messages");
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    frame = stream.next() => match frame {
                        Some(Ok(Frame::Text(text))) => {
                            let _ = tx.send((id, text));
                        }
                        Some(Ok(Frame::Close(_))) | Some(Err(_)) | None => return,
                        Some(Ok(_)) => {}
                    },
                }
            }
        });
    }
}

/// Binds `addr` and says where, in the line `scripts/bench.sh` waits for.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await?;
    println!("limit listening on ws://{}", listener.local_addr()?);
    Ok(listener)
}
