//! Opening client WebSockets cheaply: small read buffers, and optionally from a chosen local
//! address, since one loopback address offers only some 28 000 ephemeral ports.

use std::net::{IpAddr, SocketAddr};

use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Error;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use url::Url;

/// A client WebSocket, plain or TLS.
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Read buffer per socket. The messages measured are small, and with thousands of
/// connections tungstenite's default of 128 KiB each would make the driver heavier than what
/// it measures.
pub const READ_BUFFER: usize = 8 * 1024;

/// The socket settings every client connection of the driver uses.
pub fn config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(READ_BUFFER)
}

/// Opens `url`; from local address `source` when given (plain `ws://` only).
pub async fn open(url: &Url, source: Option<IpAddr>) -> Result<Socket, Error> {
    let Some(source) = source else {
        let open =
            tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config()), false);
        return open.await.map(|(socket, _)| socket);
    };
    let addr = url
        .socket_addrs(|| None)
        .map_err(Error::Io)?
        .into_iter()
        .next()
        .ok_or(Error::Url(
            tokio_tungstenite::tungstenite::error::UrlError::NoHostName,
        ))?;
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(Error::Io)?;
    socket.bind(SocketAddr::new(source, 0)).map_err(Error::Io)?;
    let stream = socket.connect(addr).await.map_err(Error::Io)?;
    stream.set_nodelay(true).map_err(Error::Io)?;
    let (socket, _) = tokio_tungstenite::client_async_with_config(
        url.as_str(),
        MaybeTlsStream::Plain(stream),
        Some(config()),
    )
    .await?;
    Ok(socket)
}

/// The `i`-th of `count` loopback source addresses, 127.0.0.2 onwards; `None` when `count`
/// is 0 (the system picks).
pub fn loopback_source(i: usize, count: usize) -> Option<IpAddr> {
    if count == 0 {
        return None;
    }
    let n = (i % count) as u32 + 2;
    Some(IpAddr::V4(std::net::Ipv4Addr::from(0x7f00_0000 | n)))
}
