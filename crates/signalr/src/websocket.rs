//! The WebSocket transport: moves bytes between an actix-ws socket and the session task.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::BytesMut;
use imgate_domain::sync::lock;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::hub::{Connection, Eviction, Inbound, Outbound};
use crate::protocol::{Frame, Outgoing};
use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, Session};

/// The largest WebSocket message accepted: several records may share one message (the JS
/// client coalesces queued sends), each record is checked against `max_message_size` later.
pub(crate) fn max_ws_message(max_message_size: usize) -> usize {
    max_message_size.saturating_mul(4).max(64 * 1024)
}

/// Most bytes joined into one WebSocket message.
const MAX_BATCH: usize = 64 * 1024;

/// The next queued frame if `size` bytes leave room for it and it is of `first`'s kind; a
/// counted one (see [`Outbound::Frame`]) is handed to `track` as it is taken. Another item
/// taken from the queue (the end marker, a frame of the other kind) is left in `next` for
/// the caller.
fn next_like(
    first: &Frame,
    size: usize,
    outbound: &mut mpsc::Receiver<Outbound>,
    next: &mut Option<Outbound>,
    track: &mut impl FnMut(&Frame),
) -> Option<Frame> {
    if size >= MAX_BATCH || next.is_some() {
        return None;
    }
    match outbound.try_recv() {
        Ok(Outbound::Frame(frame)) if frame.is_binary() == first.is_binary() => {
            track(&frame);
            Some(frame)
        }
        Ok(Outbound::Control(frame)) if frame.is_binary() == first.is_binary() => Some(frame),
        Ok(other) => {
            *next = Some(other);
            None
        }
        Err(_) => None,
    }
}

/// `first` and the frames of its kind queued behind it, joined into one WebSocket message
/// (JSON records end with their separator, MessagePack records start with their length, and
/// clients split them): under load one write and one wake-up of the socket carry many records.
/// Also returns the item that ended the batch unjoined, for the caller to handle next.
fn coalesce(
    first: Frame,
    outbound: &mut mpsc::Receiver<Outbound>,
    track: &mut impl FnMut(&Frame),
) -> (Frame, Option<Outbound>) {
    let mut next = None;
    let joined = match &first {
        Frame::Text(head) => {
            let mut joined: Option<String> = None;
            while let Some(Frame::Text(text)) = next_like(
                &first,
                joined.as_ref().map_or(head.len(), String::len),
                outbound,
                &mut next,
                track,
            ) {
                joined
                    .get_or_insert_with(|| {
                        let mut joined = String::with_capacity(2 * head.len() + text.len());
                        joined.push_str(head);
                        joined
                    })
                    .push_str(&text);
            }
            joined.map(|text| Frame::Text(text.into()))
        }
        Frame::Binary(head) => {
            let mut joined: Option<BytesMut> = None;
            while let Some(Frame::Binary(bytes)) = next_like(
                &first,
                joined.as_ref().map_or(head.len(), BytesMut::len),
                outbound,
                &mut next,
                track,
            ) {
                joined
                    .get_or_insert_with(|| {
                        let mut joined = BytesMut::with_capacity(2 * head.len() + bytes.len());
                        joined.extend_from_slice(head);
                        joined
                    })
                    .extend_from_slice(&bytes);
            }
            joined.map(|bytes| Frame::Binary(bytes.freeze()))
        }
    };
    (joined.unwrap_or(first), next)
}

/// Writes `frame` as a text (JSON) or binary (MessagePack) WebSocket message.
async fn write(socket: &mut Session, frame: Frame) -> Result<(), actix_ws::Closed> {
    match frame {
        Frame::Text(text) => socket.text(text).await,
        Frame::Binary(bytes) => socket.binary(bytes).await,
    }
}

/// Sends the WebSocket close and marks this transport gone.
async fn close(
    socket: Session,
    connection: &Connection,
    link: &CancellationToken,
    code: CloseCode,
) {
    tokio::select! {
        _ = socket.close(Some(CloseReason { code, description: None })) => {}
        _ = connection.closed.cancelled() => {}
    }
    link.cancel();
}

/// Keeps a counted message for stateful reconnect, when it is on; a client that lets more
/// pile up unacknowledged than the buffer holds is cut off.
fn track(connection: &Connection, frame: &Frame) {
    if let Some(replay) = connection.replay() {
        if lock(replay).record(frame).is_err() {
            connection.evict(Eviction::Unacknowledged);
        }
    }
}

/// What a resumed transport sends before anything else: the Sequence record with the id of
/// the oldest unacknowledged message, then those messages again, in order.
fn resumption(connection: &Connection) -> Vec<Frame> {
    let Some(replay) = connection.replay() else {
        return Vec::new();
    };
    let (first, frames) = lock(replay).unacknowledged();
    let mut resumption = vec![Outgoing::Sequence(first).encode(connection.protocol())];
    resumption.extend(frames);
    resumption
}

/// Runs until the socket closes or drops, the session ends, the connection is cut, or (with
/// stateful reconnect) a newer WebSocket takes the connection over. A `resumed` one starts
/// with what the client has not acknowledged.
///
/// JSON goes out in text messages and MessagePack in binary ones: the clients read each
/// protocol only from its own kind (JSON in a binary message breaks the JS client). Client
/// WebSocket pings are answered; we never send our own (signalrcore cannot handle them), the
/// session's `{"type":6}` records are the keep-alive.
pub(crate) async fn run(
    connection: Arc<Connection>,
    mut socket: Session,
    mut stream: AggregatedMessageStream,
    resumed: bool,
) {
    let link = connection.link();
    let outbound = connection.outbound.clone();
    // A transport this one replaces lets go of the queue once it has seen `link` change.
    let mut outbound = tokio::select! {
        outbound = outbound.lock() => outbound,
        _ = link.cancelled() => return,
        _ = connection.closed.cancelled() => return,
    };
    if resumed {
        for frame in resumption(&connection) {
            if write(&mut socket, frame).await.is_err() {
                link.cancel();
                return;
            }
        }
    }
    let inbound = connection.inbound.clone();
    // A message read from the socket that the session has not taken yet. While it waits we
    // stop reading (back-pressure on the client) but keep writing: the session may be waiting
    // for room in the outbound channel, so writing must never wait on reading.
    let mut pending: Option<Inbound> = None;
    // After a refused message we stop reading but still deliver the session's Close message.
    let mut reading = true;
    let mut close_code = CloseCode::Normal;
    // An item `coalesce` took from the queue but did not join: handled before the queue.
    let mut carried: Option<Outbound> = None;
    let mut track = |frame: &Frame| track(&connection, frame);
    loop {
        tokio::select! {
            biased;
            _ = connection.closed.cancelled() => break,
            _ = link.cancelled() => break,
            item = async { match carried.take() {
                Some(item) => Some(item),
                None => outbound.recv().await,
            } } => {
                let frame = match item {
                    Some(Outbound::Frame(frame)) => {
                        track(&frame);
                        frame
                    }
                    Some(Outbound::Control(frame)) => frame,
                    Some(Outbound::End) | None => {
                        close(socket, &connection, &link, close_code).await;
                        return;
                    }
                };
                let (frame, next) = coalesce(frame, &mut outbound, &mut track);
                carried = next;
                let sent = tokio::select! {
                    sent = write(&mut socket, frame) => sent.is_ok(),
                    _ = connection.closed.cancelled() => false,
                };
                if !sent {
                    break;
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
                    Some(Ok(AggregatedMessage::Close(_))) => {
                        // Closed on purpose, not dropped: nothing to resume.
                        connection.client_left.store(true, Ordering::Release);
                        break;
                    }
                    // The socket dropped without a Close: a client with stateful reconnect
                    // comes back.
                    None => break,
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
    link.cancel();
    // Dropping the socket ends the response stream; actix closes the TCP connection.
    drop(socket);
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use bytestring::ByteString;

    fn text(text: &str) -> Frame {
        Frame::Text(ByteString::from(text.to_owned()))
    }

    fn binary(bytes: &[u8]) -> Frame {
        Frame::Binary(Bytes::copy_from_slice(bytes))
    }

    #[test]
    fn queued_frames_go_out_as_one_message_until_the_end_marker() {
        let (tx, mut rx) = mpsc::channel(8);
        for record in ["b\u{1e}", "c\u{1e}"] {
            tx.try_send(Outbound::Frame(text(record))).unwrap();
        }
        tx.try_send(Outbound::End).unwrap();
        tx.try_send(Outbound::Frame(text("after\u{1e}"))).unwrap();
        let (joined, next) = coalesce(text("a\u{1e}"), &mut rx, &mut |_| {});
        assert_eq!(joined, text("a\u{1e}b\u{1e}c\u{1e}"));
        assert!(matches!(next, Some(Outbound::End)));

        assert!(
            matches!(rx.try_recv(), Ok(Outbound::Frame(frame)) if frame == text("after\u{1e}"))
        );
        // Alone, a frame goes out as it is.
        let (alone, next) = coalesce(text("x\u{1e}"), &mut rx, &mut |_| {});
        assert_eq!((alone, next.is_none()), (text("x\u{1e}"), true));
    }

    #[test]
    fn binary_frames_join_only_binary_frames() {
        let (tx, mut rx) = mpsc::channel(8);
        tx.try_send(Outbound::Frame(binary(&[2, 0x91, 6]))).unwrap();
        tx.try_send(Outbound::Frame(text("{}\u{1e}"))).unwrap();
        let (joined, next) = coalesce(binary(&[1, 0xc0]), &mut rx, &mut |_| {});
        assert_eq!(joined, binary(&[1, 0xc0, 2, 0x91, 6]));
        assert!(matches!(next, Some(Outbound::Frame(frame)) if frame == text("{}\u{1e}")));
    }

    #[test]
    fn a_message_stops_growing_at_the_batch_limit() {
        let (tx, mut rx) = mpsc::channel(8);
        let big = "x".repeat(MAX_BATCH / 2);
        for _ in 0..3 {
            tx.try_send(Outbound::Frame(text(&big))).unwrap();
        }
        let (joined, next) = coalesce(text(&big), &mut rx, &mut |_| {});
        assert_eq!((joined.len(), next.is_none()), (MAX_BATCH, true));
        assert!(rx.try_recv().is_ok(), "the rest waits for the next message");
    }
}
