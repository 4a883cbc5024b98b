//! The three kinds of server a bench run drives, each with one receiving connection type and
//! one way to publish an event: the gateway (SignalR hub; events posted to the provider), the
//! limit (plain WebSocket broadcast) and the Socket.IO peer (Engine.IO v4 over WebSocket).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_util::sync::CancellationToken;
use url::Url;

use super::probe::Recorder;
use super::provider::ProviderUser;
use crate::signalr::{HubClient, HubClientError};
use crate::ws::{self, Socket};

/// How a connection's events reach the bench.
pub enum Receiver {
    /// A SignalR hub connection of the gateway.
    Hub(HubClient),
    /// A plain WebSocket: every text message is an event.
    Plain(Socket),
    /// A Socket.IO connection of the default namespace.
    SocketIo(Socket),
}

/// Why a receiving connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The hub refused or failed.
    #[error("hub connection")]
    Hub(#[from] HubClientError),
    /// The WebSocket failed.
    #[error("websocket")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    /// The Socket.IO server answered something unexpected.
    #[error("socket.io: {0}")]
    SocketIo(String),
    /// A step took longer than allowed.
    #[error("timed out")]
    Timeout,
}

/// The Engine.IO v4 WebSocket URL of a Socket.IO server at `base` (`ws://host:port`).
pub fn socketio_url(base: &Url) -> Url {
    let mut url = base
        .join("/socket.io/")
        .expect("a fixed path joins any base");
    url.set_query(Some("EIO=4&transport=websocket"));
    url
}

/// Opens a Socket.IO connection to the default namespace: Engine.IO open, then the namespace
/// connect (`40`) and its acknowledgement.
pub async fn open_socketio(url: &Url, source: Option<IpAddr>) -> Result<Socket, OpenError> {
    let mut socket = ws::open(url, source).await?;
    let open = next_text(&mut socket).await?;
    if !open.starts_with('0') {
        return Err(OpenError::SocketIo(format!(
            "expected an open packet: {open}"
        )));
    }
    socket.send(Frame::text("40")).await?;
    let connected = next_text(&mut socket).await?;
    if !connected.starts_with("40") {
        return Err(OpenError::SocketIo(format!(
            "expected the namespace connect: {connected}"
        )));
    }
    Ok(socket)
}

async fn next_text(socket: &mut Socket) -> Result<String, OpenError> {
    loop {
        match socket.next().await {
            Some(Ok(Frame::Text(text))) => return Ok(text.as_str().to_owned()),
            Some(Ok(Frame::Close(_))) | None => {
                return Err(OpenError::SocketIo("closed during the handshake".into()))
            }
            Some(Err(err)) => return Err(err.into()),
            Some(Ok(_)) => {}
        }
    }
}

impl Receiver {
    /// Reads until `cancel` or the end of the connection, counting every event in `probe`
    /// as delivered to connection `index`, and the payload bytes of every message read;
    /// `first` hears when the first event of the current round arrived. On the hub only the
    /// invocations of the recorder's target count (for the fan-out the message
    /// notifications, not the room updates, which quote the last message too).
    pub async fn run<R: Recorder + ?Sized>(
        self,
        index: usize,
        probe: Arc<R>,
        cancel: CancellationToken,
        mut first: impl FnMut(u64) + Send,
    ) {
        let target = probe.hub_target();
        let mut seen = |text: &str| {
            if let Some(at) = probe.record(index, text) {
                first(at);
            }
        };
        match self {
            Self::Hub(mut client) => loop {
                let message = tokio::select! {
                    _ = cancel.cancelled() => return,
                    message = client.next_message() => match message {
                        Ok(Some(message)) => message,
                        Ok(None) | Err(_) => return,
                    },
                };
                probe.read(message.as_bytes().len());
                message.each_invocation(target, &mut seen);
            },
            Self::Plain(mut socket) => loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    frame = socket.next() => match frame {
                        Some(Ok(Frame::Text(text))) => {
                            probe.read(text.len());
                            seen(text.as_str());
                        }
                        Some(Ok(Frame::Close(_))) | Some(Err(_)) | None => return,
                        Some(Ok(_)) => {}
                    },
                }
            },
            Self::SocketIo(mut socket) => loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    frame = socket.next() => match frame {
                        // Engine.IO's heartbeat: the server pings, the client answers.
                        Some(Ok(Frame::Text(text))) if text.as_str() == "2" => {
                            probe.read(text.len());
                            if socket.send(Frame::text("3")).await.is_err() {
                                return;
                            }
                        }
                        Some(Ok(Frame::Text(text))) => {
                            probe.read(text.len());
                            seen(text.as_str());
                        }
                        Some(Ok(Frame::Close(_))) | Some(Err(_)) | None => return,
                        Some(Ok(_)) => {}
                    },
                }
            },
        }
    }
}

/// Sends events the way each server takes them.
pub enum Publisher {
    /// Posts the event as a message to a room of the provider, which the gateway relays.
    Provider {
        /// The sender's provider session.
        sender: ProviderUser,
        /// The provider's room id.
        room: String,
    },
    /// Sends the event on a WebSocket of its own: a plain text message for the limit,
    /// a `publish` event for the Socket.IO peer.
    Socket {
        /// The sending half.
        sink: Arc<tokio::sync::Mutex<SplitSink<Socket, Frame>>>,
        /// Whether to wrap events as Socket.IO `publish` events.
        socketio: bool,
        /// Stops the task that reads (and for Socket.IO answers pings on) the socket.
        reader: CancellationToken,
    },
}

/// Why an event could not be published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The provider refused or failed.
    #[error("provider")]
    Provider(#[from] super::provider::ProviderError),
    /// The WebSocket failed.
    #[error("websocket")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
}

impl Publisher {
    /// A publisher on `socket`, whose incoming messages are read and dropped (and Socket.IO
    /// pings answered) until it is dropped.
    pub fn on_socket(socket: Socket, socketio: bool) -> Self {
        let (sink, mut stream) = socket.split();
        let sink = Arc::new(tokio::sync::Mutex::new(sink));
        let reader = CancellationToken::new();
        let (pong, stop) = (sink.clone(), reader.clone());
        tokio::spawn(async move {
            loop {
                let frame = tokio::select! {
                    _ = stop.cancelled() => return,
                    frame = stream.next() => frame,
                };
                match frame {
                    Some(Ok(Frame::Text(text))) if socketio && text.as_str() == "2" => {
                        if pong.lock().await.send(Frame::text("3")).await.is_err() {
                            return;
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return,
                }
            }
        });
        Self::Socket {
            sink,
            socketio,
            reader,
        }
    }

    /// Publishes one event text.
    pub async fn publish(&self, http: &reqwest::Client, text: &str) -> Result<(), PublishError> {
        match self {
            Self::Provider { sender, room } => {
                sender.send_message(http, room, text).await?;
            }
            Self::Socket { sink, socketio, .. } => {
                let frame = if *socketio {
                    format!(r#"42["publish","{text}"]"#)
                } else {
                    text.to_owned()
                };
                sink.lock().await.send(Frame::text(frame)).await?;
            }
        }
        Ok(())
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        if let Self::Socket { reader, .. } = self {
            reader.cancel();
        }
    }
}

/// Opens a connection with `open(i)` for each `i` of `range`, `concurrency` at a time, each
/// within `timeout`; any failure ends the set-up with their count and the first one's text.
pub async fn open_many<T, F, Fut>(
    range: std::ops::Range<usize>,
    concurrency: usize,
    timeout: Duration,
    open: F,
) -> Result<Vec<(usize, T)>, String>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<T, OpenError>>,
{
    let results: Vec<_> = futures::stream::iter(range)
        .map(|i| {
            let attempt = open(i);
            async move {
                match tokio::time::timeout(timeout, attempt).await {
                    Ok(Ok(opened)) => Ok((i, opened)),
                    Ok(Err(err)) => Err(format!("{err}: {:?}", std::error::Error::source(&err))),
                    Err(_) => Err(OpenError::Timeout.to_string()),
                }
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let failed = results.iter().filter(|r| r.is_err()).count();
    if let Some(Err(first)) = results.iter().find(|r| r.is_err()) {
        return Err(format!(
            "{failed} of {} connections failed, e.g. {first}",
            results.len()
        ));
    }
    Ok(results.into_iter().filter_map(Result::ok).collect())
}
