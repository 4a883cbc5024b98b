//! A TCP proxy whose connections can be cut for a while, as a flaky network does: what stateful
//! reconnect is for.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

/// Forwards every connection to `target`; [`BlipProxy::cut`] drops the open ones and holds
/// new ones (accepted, not yet forwarded) until the blip is over.
pub struct BlipProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    /// Bumped on each cut: forwarding tasks of an older generation drop their sockets.
    generation: watch::Sender<u64>,
    /// Until when new connections wait before being forwarded.
    held_until: Arc<Mutex<Instant>>,
    accept: tokio::task::JoinHandle<()>,
}

impl BlipProxy {
    /// A proxy on 127.0.0.1 in front of `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let addr = listener.local_addr().expect("a bound address");
        let (generation, _) = watch::channel(0u64);
        let held_until = Arc::new(Mutex::new(Instant::now()));
        let accept = {
            let generation = generation.clone();
            let held_until = held_until.clone();
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let mut cut = generation.subscribe();
                    let until = *held_until.lock().expect("not poisoned");
                    tokio::spawn(async move {
                        tokio::time::sleep_until(until).await;
                        // A connection held through a cut belongs to the generation after it.
                        cut.mark_unchanged();
                        let Ok(server) = TcpStream::connect(target).await else {
                            return;
                        };
                        let (mut client, mut server) = (client, server);
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            _ = cut.changed() => {}
                        }
                    });
                }
            })
        };
        Self {
            addr,
            generation,
            held_until,
            accept,
        }
    }

    /// Drops every forwarded connection at once (both sides see the socket close without a
    /// WebSocket Close), and holds connections made in the next `pause` until it is over.
    pub fn cut(&self, pause: Duration) {
        *self.held_until.lock().expect("not poisoned") = Instant::now() + pause;
        self.generation.send_modify(|generation| *generation += 1);
    }
}

impl Drop for BlipProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}
