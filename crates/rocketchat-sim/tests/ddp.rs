//! Realtime API behaviour (reference §5 and the DDP rules of checklist §9).

mod common;

use std::time::Duration;

use common::{sim, sim_version, sim_with, Ddp, Rest};
use rocketchat_sim::{SimConfig, Version};
use serde_json::{json, Value};

fn is_ejson_date(v: &Value) -> bool {
    v.get("$date").is_some_and(Value::is_i64)
}

#[tokio::test]
async fn connect_handshake_and_server_id_quirk_per_version() {
    let sim6 = sim_version(Version::V6).await;
    let mut ddp = Ddp::open(&sim6).await;
    let first = ddp.next().await.unwrap();
    assert_eq!(
        first,
        json!({"server_id": "0"}),
        "6.x greets with a bare server_id"
    );
    ddp.send(json!({"msg": "connect", "version": "1", "support": ["1"]}))
        .await;
    let connected = ddp.next().await.unwrap();
    assert_eq!(connected["msg"], "connected");
    assert_eq!(connected["session"].as_str().unwrap().len(), 17);

    let sim7 = sim().await;
    let mut ddp = Ddp::open(&sim7).await;
    ddp.send(json!({"msg": "connect", "version": "1", "support": ["1", "pre2", "pre1"]}))
        .await;
    assert_eq!(
        ddp.next().await.unwrap()["msg"],
        "connected",
        "7.x sends nothing before connected"
    );
}

#[tokio::test]
async fn frames_before_connect_and_unsupported_versions() {
    let sim = sim().await;
    let mut ddp = Ddp::open(&sim).await;
    ddp.send(json!({"msg": "ping"})).await;
    let err = ddp.next().await.unwrap();
    assert_eq!(err["msg"], "error");
    assert_eq!(err["reason"], "Must connect first");
    let mut ddp = Ddp::open(&sim).await;
    ddp.send(json!({"msg": "connect", "version": "2", "support": ["2"]}))
        .await;
    assert_eq!(
        ddp.next().await.unwrap(),
        json!({"msg": "failed", "version": "1"})
    );
    assert!(ddp.closed_within(common::WAIT).await);
}

#[tokio::test]
async fn resume_login_result_then_updated_with_ejson_expiry() {
    let sim = sim().await;
    let alice = sim.create_user("alice", "pw").unwrap();
    let mut ddp = Ddp::connect(&sim).await;
    let res = ddp.call("login", json!([{"resume": alice.token}])).await;
    let result = &res["result"];
    assert_eq!(result["id"], alice.id.as_str());
    assert_eq!(result["token"], alice.token.as_str());
    assert_eq!(result["type"], "resume");
    assert!(is_ejson_date(&result["tokenExpires"]));
    assert_eq!(sim.open_ddp_connections("alice"), 1);
}

#[tokio::test]
async fn password_login_with_sha256_digest() {
    let sim = sim().await;
    sim.create_user("alice", "pw").unwrap();
    let mut ddp = Ddp::connect(&sim).await;
    let digest = "30c952fab122c3f9759f02a6d95c3758b246b4fee239957b2d4fee46e26170c4"; // sha256("pw")
    let res = ddp
        .call("login", json!([{"user": {"username": "alice"}, "password": {"digest": digest, "algorithm": "sha-256"}}]))
        .await;
    assert_eq!(res["result"]["type"], "password");
    assert_eq!(res["result"]["token"].as_str().unwrap().len(), 43);
    let token = res["result"]["token"].as_str().unwrap();
    let rest = Rest::as_user(&sim, res["result"]["id"].as_str().unwrap(), token);
    assert_eq!(
        rest.get("me").await.0,
        200,
        "a DDP password login token works over REST"
    );
}

#[tokio::test]
async fn bad_resume_token_is_error_403() {
    let sim = sim().await;
    let mut ddp = Ddp::connect(&sim).await;
    let res = ddp.call("login", json!([{"resume": "nope"}])).await;
    let err = &res["error"];
    assert_eq!(err["error"], 403);
    assert_eq!(
        err["reason"],
        "You've been logged out by the server. Please log in again."
    );
    assert_eq!(
        err["message"],
        "You've been logged out by the server. Please log in again. [403]"
    );
    assert_eq!(err["isClientSafe"], true);
    assert_eq!(err["errorType"], "Meteor.Error");
}

#[tokio::test]
async fn ping_pong_echoes_ids() {
    let sim = sim().await;
    let mut ddp = Ddp::connect(&sim).await;
    ddp.send(json!({"msg": "ping", "id": "abc"})).await;
    assert_eq!(
        ddp.next().await.unwrap(),
        json!({"msg": "pong", "id": "abc"})
    );
    ddp.send(json!({"msg": "ping"})).await;
    assert_eq!(ddp.next().await.unwrap(), json!({"msg": "pong"}));
}

#[tokio::test]
async fn server_pings_idle_clients_and_drops_silent_ones() {
    let sim = sim_with(SimConfig {
        ddp_ping_interval: Duration::from_millis(200),
        ddp_ping_timeout: Duration::from_millis(200),
        ..SimConfig::default()
    })
    .await;
    // A client that answers stays connected.
    let mut polite = Ddp::connect(&sim).await;
    for _ in 0..3 {
        let ping = polite.next().await.unwrap();
        assert_eq!(ping, json!({"msg": "ping"}), "server pings carry no id");
        polite.send(json!({"msg": "pong"})).await;
    }
    // A client that never answers is dropped.
    let mut silent = Ddp::connect(&sim).await;
    assert_eq!(silent.next().await.unwrap(), json!({"msg": "ping"}));
    assert!(silent.closed_within(Duration::from_secs(3)).await);
}

#[tokio::test]
async fn notify_user_checks_only_the_uid_prefix() {
    let sim = sim().await;
    let alice = sim.create_user("alice", "pw").unwrap();
    let bob = sim.create_user("bob", "pw").unwrap();
    let mut anon = Ddp::connect(&sim).await;
    let nosub = anon
        .sub("stream-notify-user", &format!("{}/rooms-changed", alice.id))
        .await;
    assert_eq!(nosub["msg"], "nosub");
    assert_eq!(nosub["error"]["error"], "not-allowed");

    let mut ddp = Ddp::logged_in(&sim, &alice.token).await;
    let ready = ddp
        .sub("stream-notify-user", &format!("{}/rooms-changed", alice.id))
        .await;
    assert_eq!(ready["msg"], "ready");
    let other = ddp
        .sub("stream-notify-user", &format!("{}/rooms-changed", bob.id))
        .await;
    assert_eq!(other["msg"], "nosub");
    assert_eq!(other["error"]["error"], "not-allowed");
    assert_eq!(
        other["error"],
        json!({"isClientSafe": true, "error": "not-allowed", "message": "[not-allowed]", "errorType": "Meteor.Error"})
    );
    let odd = ddp
        .sub("stream-notify-user", &format!("{}/$message", alice.id))
        .await;
    assert_eq!(odd["msg"], "ready", "unknown suffixes are accepted");
    let empty = ddp.sub("stream-notify-user", "").await;
    assert_eq!(empty["error"]["error"], "invalid-event-name");
    let unknown = ddp.sub("stream-nope", "x").await;
    assert_eq!(unknown["error"]["error"], 404);
    assert_eq!(
        unknown["error"]["reason"],
        "Subscription 'stream-nope' not found"
    );
}

#[tokio::test]
async fn unsub_is_answered_with_nosub() {
    let sim = sim().await;
    let alice = sim.create_user("alice", "pw").unwrap();
    let mut ddp = Ddp::logged_in(&sim, &alice.token).await;
    let ready = ddp.sub("stream-room-messages", "GENERAL").await;
    let sub_id = ready["subs"][0].clone();
    ddp.send(json!({"msg": "unsub", "id": sub_id})).await;
    assert_eq!(
        ddp.next().await.unwrap(),
        json!({"msg": "nosub", "id": sub_id})
    );
    // Nothing arrives after unsub.
    let a = Rest::as_user(&sim, &alice.id, &alice.token);
    a.post(
        "chat.sendMessage",
        json!({"message": {"rid": "GENERAL", "msg": "x"}}),
    )
    .await;
    assert!(ddp.next_within(Duration::from_millis(300)).await.is_none());
}

#[tokio::test]
async fn rest_send_reaches_room_stream_with_ejson_dates() {
    let sim = sim().await;
    let alice = sim.create_user("alice", "pw").unwrap();
    let bob = sim.create_user("bob", "pw").unwrap();
    let mut b1 = Ddp::logged_in(&sim, &bob.token).await;
    let mut b2 = Ddp::logged_in(&sim, &bob.token).await;
    for ddp in [&mut b1, &mut b2] {
        assert_eq!(
            ddp.sub("stream-room-messages", "GENERAL").await["msg"],
            "ready"
        );
        assert_eq!(
            ddp.sub("stream-room-messages", "__my_messages__").await["msg"],
            "ready"
        );
    }
    let a = Rest::as_user(&sim, &alice.id, &alice.token);
    let (_, sent) = a
        .post(
            "chat.sendMessage",
            json!({"message": {"rid": "GENERAL", "msg": "hello"}}),
        )
        .await;
    for ddp in [&mut b1, &mut b2] {
        let ev = ddp.event("stream-room-messages", "GENERAL").await;
        assert_eq!(ev["id"], "id");
        let m = &ev["fields"]["args"][0];
        assert_eq!(m["_id"], sent["message"]["_id"]);
        assert_eq!(m["msg"], "hello");
        assert!(is_ejson_date(&m["ts"]), "DDP dates are EJSON: {m}");
        assert!(is_ejson_date(&m["_updatedAt"]));
        let mine = ddp.event("stream-room-messages", "__my_messages__").await;
        assert_eq!(mine["fields"]["args"][0]["msg"], "hello");
        assert_eq!(
            mine["fields"]["args"][1],
            json!({"roomParticipant": true, "roomType": "c", "roomName": "general"})
        );
    }
}

#[tokio::test]
async fn room_stream_requires_access() {
    let sim = sim().await;
    let alice = sim.create_user("alice", "pw").unwrap();
    let bob = sim.create_user("bob", "pw").unwrap();
    let a = Rest::as_user(&sim, &alice.id, &alice.token);
    let (_, group) = a.post("groups.create", json!({"name": "secret"})).await;
    let gid = group["group"]["_id"].as_str().unwrap();
    let mut ddp = Ddp::logged_in(&sim, &bob.token).await;
    assert_eq!(
        ddp.sub("stream-room-messages", gid).await["error"]["error"],
        "not-allowed"
    );
    assert_eq!(
        ddp.sub("stream-room-messages", "NOROOM").await["error"]["error"],
        "not-allowed"
    );
    assert_eq!(
        ddp.sub("stream-notify-room", &format!("{gid}/deleteMessage"))
            .await["error"]["error"],
        "not-allowed"
    );
    assert_eq!(
        ddp.sub("stream-room-messages", "GENERAL").await["msg"],
        "ready"
    );
}

#[tokio::test]
async fn user_stream_events_for_dm_message_and_read() {
    let sim = sim().await;
    let alice = sim.create_user("alice", "pw").unwrap();
    let bob = sim.create_user("bob", "pw").unwrap();
    let mut ddp = Ddp::logged_in(&sim, &bob.token).await;
    for ev in [
        "subscriptions-changed",
        "rooms-changed",
        "notification",
        "message",
    ] {
        assert_eq!(
            ddp.sub("stream-notify-user", &format!("{}/{ev}", bob.id))
                .await["msg"],
            "ready"
        );
    }
    let a = Rest::as_user(&sim, &alice.id, &alice.token);
    let (_, dm) = a.post("im.create", json!({"username": "bob"})).await;
    let rid = dm["room"]["rid"].as_str().unwrap().to_string();
    let ins = ddp
        .event(
            "stream-notify-user",
            &format!("{}/subscriptions-changed", bob.id),
        )
        .await;
    assert_eq!(ins["fields"]["args"][0], "inserted");
    assert_eq!(ins["fields"]["args"][1]["rid"], rid.as_str());
    assert!(is_ejson_date(&ins["fields"]["args"][1]["ts"]));
    let room = ddp
        .event("stream-notify-user", &format!("{}/rooms-changed", bob.id))
        .await;
    assert_eq!(room["fields"]["args"][0], "inserted");

    a.post(
        "chat.sendMessage",
        json!({"message": {"rid": rid, "msg": "psst"}}),
    )
    .await;
    let upd = ddp
        .expect(|f| {
            f["fields"]["eventName"]
                .as_str()
                .is_some_and(|e| e.ends_with("/subscriptions-changed"))
                && f["fields"]["args"][1]["unread"] == 1
        })
        .await;
    assert_eq!(upd["fields"]["args"][0], "updated");
    assert_eq!(upd["fields"]["args"][1]["alert"], true);
    let rc = ddp
        .expect(|f| {
            f["fields"]["eventName"]
                .as_str()
                .is_some_and(|e| e.ends_with("/rooms-changed"))
                && f["fields"]["args"][1]["lastMessage"]["msg"] == "psst"
        })
        .await;
    assert_eq!(rc["fields"]["args"][0], "updated");
    assert!(is_ejson_date(&rc["fields"]["args"][1]["lastMessage"]["ts"]));
    let note = ddp
        .event("stream-notify-user", &format!("{}/notification", bob.id))
        .await;
    let n = &note["fields"]["args"][0];
    assert_eq!(n["text"], "psst");
    assert_eq!(n["payload"]["rid"], rid.as_str());
    assert_eq!(n["payload"]["type"], "d");
    assert_eq!(n["payload"]["sender"]["username"], "alice");

    let b = Rest::as_user(&sim, &bob.id, &bob.token);
    b.post("subscriptions.read", json!({"rid": rid})).await;
    let read = ddp
        .expect(|f| {
            f["fields"]["eventName"]
                .as_str()
                .is_some_and(|e| e.ends_with("/subscriptions-changed"))
                && f["fields"]["args"][1]["unread"] == 0
        })
        .await;
    assert_eq!(read["fields"]["args"][0], "updated");
    // `<uid>/message` never carried the normal message.
    let mut seen_message_event = false;
    while let Some(f) = ddp.next_within(Duration::from_millis(200)).await {
        seen_message_event |= f["fields"]["eventName"] == format!("{}/message", bob.id).as_str();
    }
    assert!(!seen_message_event);
}

#[tokio::test]
async fn failed_send_pushes_an_ephemeral_notice_on_user_message() {
    let sim = sim().await;
    let alice = sim.create_user("alice", "pw").unwrap();
    let bob = sim.create_user("bob", "pw").unwrap();
    let a = Rest::as_user(&sim, &alice.id, &alice.token);
    let (_, group) = a.post("groups.create", json!({"name": "closed"})).await;
    let gid = group["group"]["_id"].as_str().unwrap();
    let mut ddp = Ddp::logged_in(&sim, &bob.token).await;
    ddp.sub("stream-notify-user", &format!("{}/message", bob.id))
        .await;
    let b = Rest::as_user(&sim, &bob.id, &bob.token);
    let (status, _) = b
        .post(
            "chat.sendMessage",
            json!({"message": {"rid": gid, "msg": "let me in"}}),
        )
        .await;
    assert_eq!(status, 400);
    let ev = ddp
        .event("stream-notify-user", &format!("{}/message", bob.id))
        .await;
    let m = &ev["fields"]["args"][0];
    assert_eq!(m["private"], true);
    assert_eq!(m["u"]["username"], "rocket.cat");
}

#[tokio::test]
async fn kick_sends_removed_and_system_message() {
    let sim = sim().await;
    let alice = sim.create_user("alice", "pw").unwrap();
    let bob = sim.create_user("bob", "pw").unwrap();
    let a = Rest::as_user(&sim, &alice.id, &alice.token);
    let (_, ch) = a
        .post(
            "channels.create",
            json!({"name": "dev", "members": ["bob"]}),
        )
        .await;
    let rid = ch["channel"]["_id"].as_str().unwrap().to_string();
    let mut ddp = Ddp::logged_in(&sim, &bob.token).await;
    ddp.sub(
        "stream-notify-user",
        &format!("{}/subscriptions-changed", bob.id),
    )
    .await;
    let mut watcher = Ddp::logged_in(&sim, &alice.token).await;
    watcher.sub("stream-room-messages", &rid).await;
    a.post("channels.kick", json!({"roomId": rid, "userId": bob.id}))
        .await;
    let ev = ddp
        .event(
            "stream-notify-user",
            &format!("{}/subscriptions-changed", bob.id),
        )
        .await;
    assert_eq!(ev["fields"]["args"][0], "removed");
    assert_eq!(ev["fields"]["args"][1]["rid"], rid.as_str());
    let sys = watcher.event("stream-room-messages", &rid).await;
    assert_eq!(sys["fields"]["args"][0]["t"], "ru");
    assert_eq!(sys["fields"]["args"][0]["msg"], "bob");
}

#[tokio::test]
async fn delete_and_typing_on_notify_room() {
    let sim = sim().await;
    let alice = sim.create_user("alice", "pw").unwrap();
    let bob = sim.create_user("bob", "pw").unwrap();
    let mut ddp = Ddp::logged_in(&sim, &bob.token).await;
    ddp.sub("stream-notify-room", "GENERAL/deleteMessage").await;
    ddp.sub("stream-notify-room", "GENERAL/user-activity").await;
    ddp.sub("stream-notify-room", "GENERAL/typing").await;
    let a = Rest::as_user(&sim, &alice.id, &alice.token);
    let (_, sent) = a
        .post(
            "chat.sendMessage",
            json!({"message": {"rid": "GENERAL", "msg": "oops"}}),
        )
        .await;
    let mid = sent["message"]["_id"].clone();
    a.post("chat.delete", json!({"roomId": "GENERAL", "msgId": mid}))
        .await;
    let del = ddp
        .event("stream-notify-room", "GENERAL/deleteMessage")
        .await;
    assert_eq!(del["fields"]["args"], json!([{"_id": mid}]));

    let mut typer = Ddp::logged_in(&sim, &alice.token).await;
    let res = typer
        .call(
            "stream-notify-room",
            json!(["GENERAL/user-activity", "alice", ["user-typing"], {}]),
        )
        .await;
    assert!(res.get("error").is_none(), "{res}");
    let act = ddp
        .event("stream-notify-room", "GENERAL/user-activity")
        .await;
    assert_eq!(act["fields"]["args"], json!(["alice", ["user-typing"], {}]));
    let typing = ddp.event("stream-notify-room", "GENERAL/typing").await;
    assert_eq!(typing["fields"]["args"], json!(["alice", true]));
}

#[tokio::test]
async fn methods_send_read_logout_and_unknown() {
    let sim = sim().await;
    let alice = sim.create_user("alice", "pw").unwrap();
    let mut ddp = Ddp::connect(&sim).await;
    let res = ddp
        .call("sendMessage", json!([{"rid": "GENERAL", "msg": "x"}]))
        .await;
    assert!(res.get("error").is_some(), "methods need a login");
    let res = ddp.call("login", json!([{"resume": alice.token}])).await;
    assert!(res.get("result").is_some());
    let res = ddp
        .call(
            "sendMessage",
            json!([{"_id": "clientside1", "rid": "GENERAL", "msg": "via ddp"}]),
        )
        .await;
    assert_eq!(res["result"]["_id"], "clientside1");
    assert!(is_ejson_date(&res["result"]["ts"]));
    let a = Rest::as_user(&sim, &alice.id, &alice.token);
    let (_, hist) = a.get("channels.history?roomId=GENERAL&count=1").await;
    assert_eq!(hist["messages"][0]["msg"], "via ddp");
    let res = ddp.call("readMessages", json!(["GENERAL"])).await;
    assert!(res.get("error").is_none());
    let res = ddp.call("rooms/get", json!([])).await;
    assert!(res["result"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["_id"] == "GENERAL"));
    let res = ddp.call("no/such/method", json!([])).await;
    assert_eq!(res["error"]["error"], 404);
    assert_eq!(res["error"]["reason"], "Method 'no/such/method' not found");
    let res = ddp.call("logout", json!([])).await;
    assert!(res.get("error").is_none());
    assert_eq!(a.get("me").await.0, 401, "DDP logout removes the token");
}

#[tokio::test]
async fn ddp_send_message_is_limited_to_5_per_second_for_users() {
    let default = SimConfig::default().ddp_send_limit.unwrap();
    assert_eq!((default.calls, default.window), (5, Duration::from_secs(1)));
    // A long window keeps the check deterministic on a slow machine.
    let sim = sim_with(SimConfig {
        ddp_send_limit: Some(rocketchat_sim::RateLimit {
            calls: 5,
            window: Duration::from_secs(60),
        }),
        ..SimConfig::default()
    })
    .await;
    let alice = sim.create_user("alice", "pw").unwrap();
    let mut ddp = Ddp::logged_in(&sim, &alice.token).await;
    let mut errors = Vec::new();
    for i in 0..6 {
        let res = ddp
            .call(
                "sendMessage",
                json!([{"rid": "GENERAL", "msg": format!("n{i}")}]),
            )
            .await;
        if let Some(e) = res.get("error") {
            errors.push(e.clone());
        }
    }
    assert_eq!(
        errors.len(),
        1,
        "the sixth call within the window is refused"
    );
    assert_eq!(errors[0]["error"], "error-too-many-requests");
    assert!(errors[0]["reason"]
        .as_str()
        .unwrap()
        .ends_with("seconds before trying again."));
    assert!(errors[0]["details"]["timeToReset"].is_i64());
    // Bots (send-many-messages) are not limited.
    let bot = sim
        .create_user_with_roles("helper", "pw", &["bot"])
        .unwrap();
    let mut ddp = Ddp::logged_in(&sim, &bot.token).await;
    for i in 0..8 {
        let res = ddp
            .call(
                "sendMessage",
                json!([{"rid": "GENERAL", "msg": format!("b{i}")}]),
            )
            .await;
        assert!(res.get("error").is_none(), "{res}");
    }
}

#[tokio::test]
async fn rest_edits_arrive_as_the_same_message_with_edited_at() {
    let sim = sim().await;
    let alice = sim.create_user("alice", "pw").unwrap();
    let bob = sim.create_user("bob", "pw").unwrap();
    let rid = sim.create_dm("alice", "bob").unwrap();
    let mut ddp = Ddp::logged_in(&sim, &bob.token).await;
    assert_eq!(ddp.sub("stream-room-messages", &rid).await["msg"], "ready");
    let a = Rest::as_user(&sim, &alice.id, &alice.token);
    let (_, sent) = a
        .post(
            "chat.sendMessage",
            json!({"message": {"rid": rid, "msg": "v1"}}),
        )
        .await;
    let mid = sent["message"]["_id"].clone();
    ddp.event("stream-room-messages", &rid).await;
    a.post(
        "chat.update",
        json!({"roomId": rid, "msgId": mid, "text": "v2"}),
    )
    .await;
    let edit = ddp.event("stream-room-messages", &rid).await;
    let m = &edit["fields"]["args"][0];
    assert_eq!(m["_id"], mid);
    assert_eq!(m["msg"], "v2");
    assert!(is_ejson_date(&m["editedAt"]));
    assert_eq!(m["editedBy"]["username"], "alice");
}
