//! Arbitrary text through an upstream DDP session (frame decoding, stream events, the
//! Rocket.Chat document mapping), one frame per line, as the socket delivers text frames.
//!
//! Properties: nothing panics; `Connected` is signalled once, before any event; the session
//! only ever sends `sub`/`unsub` frames back and pongs for pings; every event survives the
//! Redis backplane (JSON there and back) unchanged and reaches hub clients as exactly one
//! record; every document that maps survives the same round trip.

#![no_main]

use imgate_domain::ports::RealtimeSignal;
use imgate_domain::UserEvent;
use imgate_rocketchat::fuzzing::{documents, DdpSession};
use imgate_signalr::backend::event_frame;
use imgate_signalr::protocol::{HubProtocol, RecordBuffer};
use libfuzzer_sys::fuzz_target;
use serde::{de::DeserializeOwned, Serialize};
use serde_json::{json, Value};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return; // WebSocket text frames are UTF-8 by the time the session sees them.
    };
    let subscriptions = json!({"update": [{"rid": "GENERAL", "t": "c"}, {"rid": "r1", "t": "d"}]});
    let (mut session, opening) = DdpSession::start("alice", "u1", &subscriptions);
    opening.iter().for_each(|frame| check_sent(frame, "sub"));
    let mut connected = false;
    for line in text.lines() {
        let outcome = session.feed(line);
        let parsed = serde_json::from_str::<Value>(line);
        // A line reported as not JSON is not; the converse does not hold, because the session
        // skips over what it does not need without building it, so a line a `Value` cannot
        // hold (nested too deep, a number out of range) may still be read as a frame.
        if outcome.not_json {
            assert!(parsed.is_err(), "{line}");
        }
        if let Some(pong) = &outcome.pong {
            assert_eq!(pong["msg"], "pong");
        }
        for reply in &outcome.replies {
            check_sent(reply, reply["msg"].as_str().unwrap_or_default());
        }
        for signal in &outcome.signals {
            match signal {
                RealtimeSignal::Connected => {
                    assert!(!connected, "Connected signalled twice");
                    connected = true;
                }
                RealtimeSignal::Event(event) => {
                    assert!(connected, "an event before Connected");
                    check_event(event);
                }
            }
        }
        if let Ok(value) = parsed {
            check_documents(&value);
            let args = value["fields"]["args"].as_array().into_iter().flatten();
            args.for_each(check_documents);
        }
    }
});

/// Frames the session writes: `sub` or `unsub` with a string id.
fn check_sent(frame: &Value, msg: &str) {
    assert!(matches!(msg, "sub" | "unsub"), "the session sent {frame}");
    assert_eq!(frame["msg"], msg);
    assert!(frame["id"].is_string(), "{frame}");
}

fn check_event(event: &UserEvent) {
    round_trip(event);
    let Some(frame) = event_frame(event) else {
        // The one event that closes the connection instead of reaching the client.
        assert_eq!(event, &UserEvent::AccountDeleted);
        return;
    };
    let mut buffer = RecordBuffer::new(HubProtocol::Json, usize::MAX);
    let records = buffer
        .push(frame.as_bytes())
        .expect("hub records are readable");
    assert!(!buffer.has_partial());
    assert_eq!(records.len(), 1);
    let written: Value = serde_json::from_slice(&records[0]).expect("hub records are JSON");
    assert_eq!(written["type"], 1, "{written}");
    assert!(written["target"].is_string(), "{written}");
    assert_eq!(
        written["arguments"].as_array().map(Vec::len),
        Some(1),
        "{written}"
    );
}

fn check_documents(value: &Value) {
    let docs = documents(value);
    if let Ok(message) = &docs.message {
        round_trip(message);
    }
    if let Ok(room) = &docs.room {
        round_trip(room);
    }
    docs.subscribed_room.iter().for_each(round_trip);
    docs.bare_subscription.iter().for_each(round_trip);
}

/// What one node publishes, another reads back (Redis backplane, REST answers).
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(value: &T) {
    let json = serde_json::to_string(value).expect("domain types serialize");
    let back: T = serde_json::from_str(&json)
        .unwrap_or_else(|err| panic!("{value:?} does not read back from {json}: {err}"));
    assert_eq!(&back, value, "{json}");
}
