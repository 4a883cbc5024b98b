//! The WebSocket transport: moves bytes between an actix-ws socket and the session task.

use std::sync::Arc;

use bytestring::ByteString;
use tokio::sync::mpsc;

use crate::hub::{Connection, Inbound, Outbound};
use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, Session};

/// The largest WebSocket message accepted: several records may share one message (the JS
/// client coalesces queued sends), each record is checked against `max_message_size` later.
pub(crate) fn max_ws_message(max_message_size: usize) -> usize {
    max_message_size.saturating_mul(4).max(64 * 1024)
}

/// Most bytes joined into one WebSocket message.
const MAX_BATCH: usize = 64 * 1024;

/// `first` and the frames queued behind it, joined into one WebSocket message (each JSON
/// record carries its own separator, and clients split them): under load one write and one
/// wake-up of the socket carry many records. Whether the end marker was among them.
fn coalesce(first: ByteString, outbound: &mut mpsc::Receiver<Outbound>) -> (ByteString, bool) {
    let mut joined: Option<String> = None;
    let mut ended = false;
    while joined.as_ref().map_or(first.len(), String::len) < MAX_BATCH {
        match outbound.try_recv() {
            Ok(Outbound::Frame(next)) => joined
                .get_or_insert_with(|| {
                    let mut text = String::with_capacity(2 * first.len() + next.len());
                    text.push_str(&first);
                    text
                })
                .push_str(&next),
            Ok(Outbound::End) => {
                ended = true;
                break;
            }
            Err(_) => break,
        }
    }
    (joined.map_or(first, ByteString::from), ended)
}

/// Sends the WebSocket close and marks the transport gone.
async fn close(socket: Session, connection: &Connection, code: CloseCode) {
    tokio::select! {
        _ = socket.close(Some(CloseReason { code, description: None })) => {}
        _ = connection.closed.cancelled() => {}
    }
    connection.transport_gone.cancel();
}

/// Runs until the socket closes, the session ends, or the connection is cut.
///
/// Text frames only go out: the JSON protocol in a binary frame breaks the JS client. Client
/// WebSocket pings are answered; we never send our own (signalrcore cannot handle them), the
/// session's `{"type":6}` records are the keep-alive.
pub(crate) async fn run(
    connection: Arc<Connection>,
    mut socket: Session,
    mut stream: AggregatedMessageStream,
) {
    let outbound = connection.outbound.clone();
    let mut outbound = outbound.lock().await;
    let inbound = connection.inbound.clone();
    // A message read from the socket that the session has not taken yet. While it waits we
    // stop reading (back-pressure on the client) but keep writing: the session may be waiting
    // for room in the outbound channel, so writing must never wait on reading.
    let mut pending: Option<Inbound> = None;
    // After a refused message we stop reading but still deliver the session's Close message.
    let mut reading = true;
    let mut close_code = CloseCode::Normal;
    loop {
        tokio::select! {
            biased;
            _ = connection.closed.cancelled() => break,
            item = outbound.recv() => match item {
                Some(Outbound::Frame(text)) => {
                    let (text, ended) = coalesce(text, &mut outbound);
                    let sent = tokio::select! {
                        sent = socket.text(text) => sent.is_ok(),
                        _ = connection.closed.cancelled() => false,
                    };
                    if !sent {
                        break;
                    }
                    if ended {
                        close(socket, &connection, close_code).await;
                        return;
                    }
                }
                Some(Outbound::End) | None => {
                    close(socket, &connection, close_code).await;
                    return;
                }
            },
            permit = inbound.reserve(), if pending.is_some() => match (permit, pending.take()) {
                (Ok(permit), Some(item)) => permit.send(item),
                _ => break,
            },
            message = stream.recv(), if reading && pending.is_none() => {
                connection.touch();
                pending = match message {
                    Some(Ok(AggregatedMessage::Text(text))) => Some(Inbound::Data(text.into_bytes())),
                    Some(Ok(AggregatedMessage::Binary(bytes))) => Some(Inbound::Data(bytes)),
                    Some(Ok(AggregatedMessage::Ping(payload))) => {
                        if socket.pong(&payload).await.is_err() {
                            break;
                        }
                        None
                    }
                    Some(Ok(AggregatedMessage::Pong(_))) => None,
                    Some(Ok(AggregatedMessage::Close(_))) | None => break,
                    Some(Err(actix_ws::ProtocolError::Overflow)) => {
                        reading = false;
                        close_code = CloseCode::Size;
                        Some(Inbound::TooLarge)
                    }
                    Some(Err(err)) => {
                        tracing::info!(error = %err, "websocket protocol error");
                        break;
                    }
                };
            }
        }
    }
    connection.transport_gone.cancel();
    // Dropping the socket ends the response stream; actix closes the TCP connection.
    drop(socket);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(text: &str) -> Outbound {
        Outbound::Frame(ByteString::from(text.to_owned()))
    }

    #[test]
    fn queued_frames_go_out_as_one_message_until_the_end_marker() {
        let (tx, mut rx) = mpsc::channel(8);
        for text in ["b\u{1e}", "c\u{1e}"] {
            tx.try_send(frame(text)).unwrap();
        }
        tx.try_send(Outbound::End).unwrap();
        tx.try_send(frame("after\u{1e}")).unwrap();
        let (joined, ended) = coalesce(ByteString::from_static("a\u{1e}"), &mut rx);
        assert_eq!((&*joined, ended), ("a\u{1e}b\u{1e}c\u{1e}", true));

        assert!(matches!(rx.try_recv(), Ok(Outbound::Frame(text)) if &*text == "after\u{1e}"));
        // Alone, a frame goes out as it is.
        let (alone, ended) = coalesce(ByteString::from_static("x\u{1e}"), &mut rx);
        assert_eq!((&*alone, ended), ("x\u{1e}", false));
    }

    #[test]
    fn a_message_stops_growing_at_the_batch_limit() {
        let (tx, mut rx) = mpsc::channel(8);
        let big = "x".repeat(MAX_BATCH / 2);
        for _ in 0..3 {
            tx.try_send(frame(&big)).unwrap();
        }
        let (joined, ended) = coalesce(ByteString::from(big.clone()), &mut rx);
        assert_eq!((joined.len(), ended), (MAX_BATCH, false));
        assert!(rx.try_recv().is_ok(), "the rest waits for the next message");
    }
}
