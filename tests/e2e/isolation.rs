//! Isolation between users: with several users in overlapping rooms, each hub connection gets
//! every event of its user's rooms and nothing of any other room, and one user's token cannot
//! read or act on a room they are not in.

use std::collections::{HashMap, HashSet};

use imgate_testkit::hub_client::HubClient;
use rocketchat_sim::{Sim, SimConfig};
use serde_json::{json, Value};

use crate::helpers::TestGateway;

const USERS: [&str; 6] = ["ann", "ben", "cat", "dan", "eve", "fay"];

async fn call(gw: &TestGateway, user: &str, method: &str, path: &str, body: Value) -> (u16, Value) {
    let request = match method {
        "GET" => gw.get(path),
        "POST" => gw.post(path).json(&body),
        _ => unreachable!(),
    };
    gw.send(request.bearer_auth(gw.host_token(user))).await
}

#[tokio::test]
async fn events_reach_members_only_and_tokens_reach_their_own_rooms_only() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let gw = TestGateway::against(&sim, &[]).await;
    gw.mirror(&USERS).await;
    // Overlapping rooms: a channel, two private groups, two direct rooms.
    let mut rooms: Vec<(String, Vec<&str>)> = Vec::new();
    for (owner, kind, name, members) in [
        ("ann", "channel", "lobby", vec!["ben", "cat"]),
        ("dan", "group", "secret", vec!["eve"]),
        ("cat", "group", "crafts", vec!["dan", "fay"]),
    ] {
        let (status, room) = call(
            &gw,
            owner,
            "POST",
            "/api/v1/rooms",
            json!({"kind": kind, "name": name, "members": members}),
        )
        .await;
        assert_eq!(status, 201, "{room}");
        let mut all = members.clone();
        all.push(owner);
        rooms.push((room["id"].as_str().unwrap().to_owned(), all));
    }
    for (from, to) in [("ann", "fay"), ("eve", "ben")] {
        let (status, room) = call(
            &gw,
            from,
            "POST",
            "/api/v1/rooms/direct",
            json!({"members": [to]}),
        )
        .await;
        assert!(status == 200 || status == 201, "{room}");
        rooms.push((room["id"].as_str().unwrap().to_owned(), vec![from, to]));
    }

    let mut clients: HashMap<&str, HubClient> = HashMap::new();
    for user in USERS {
        let mut client = HubClient::spawn_node(
            &format!("{}/hub", gw.base),
            &gw.host_token(user),
            "websockets",
        );
        client.connected().await;
        clients.insert(user, client);
    }

    // A hub connection is open before its user's upstream is: each user writes a probe in a
    // room of theirs until their own connection sees it come back.
    for user in USERS {
        let (room, _) = rooms
            .iter()
            .find(|(_, members)| members.contains(&user))
            .unwrap();
        let client = clients.get_mut(user).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        for n in 0.. {
            assert!(
                std::time::Instant::now() < deadline,
                "{user}'s upstream never went live"
            );
            let probe = format!("probe {n} by {user}");
            call(
                &gw,
                user,
                "POST",
                &format!("/api/v1/rooms/{room}/messages"),
                json!({"text": probe}),
            )
            .await;
            let seen = tokio::time::timeout(
                std::time::Duration::from_millis(300),
                client.wait_for("a probe", |v| v["arg"]["text"] == probe.as_str()),
            )
            .await;
            if seen.is_ok() {
                break;
            }
        }
    }

    // Every member writes once in every room they are in; then a last marker per user, in
    // a room of theirs, so each client knows when it has everything.
    let mut expected: HashMap<&str, HashSet<String>> = HashMap::new();
    for (room, members) in &rooms {
        for author in members {
            let text = format!("{author} in {room}");
            let (status, body) = call(
                &gw,
                author,
                "POST",
                &format!("/api/v1/rooms/{room}/messages"),
                json!({"text": text}),
            )
            .await;
            assert_eq!(status, 201, "{body}");
            for member in members {
                expected.entry(member).or_default().insert(text.clone());
            }
        }
    }
    let mut markers = HashMap::new();
    for user in USERS {
        let (room, _) = rooms
            .iter()
            .find(|(_, members)| members.contains(&user))
            .unwrap();
        let text = format!("end for {user}");
        call(
            &gw,
            user,
            "POST",
            &format!("/api/v1/rooms/{room}/messages"),
            json!({"text": text}),
        )
        .await;
        markers.insert(user, (room.clone(), text));
    }
    for user in USERS {
        let (marker_room, marker) = markers[user].clone();
        for (room, members) in &rooms {
            if *room == marker_room {
                for member in members {
                    expected.entry(member).or_default().insert(marker.clone());
                }
            }
        }
    }

    for user in USERS {
        let client = clients.get_mut(user).unwrap();
        let (_, marker) = markers[user].clone();
        client
            .wait_for("the user's own marker", |v| {
                v["arg"]["text"] == marker.as_str()
            })
            .await;
        // Let anything that should not come arrive before judging.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        client.drain();
        let member_of: HashSet<&str> = rooms
            .iter()
            .filter(|(_, members)| members.contains(&user))
            .map(|(room, _)| room.as_str())
            .collect();
        let mut got = Vec::new();
        for event in client.received() {
            let room = event["arg"]["roomId"]
                .as_str()
                .or_else(|| event["arg"]["room"]["id"].as_str())
                .unwrap_or_default();
            assert!(
                member_of.contains(room),
                "{user} got an event of a room they are not in: {event}"
            );
            if event["target"] == "getRoomMessageNotification" {
                got.push(event["arg"]["text"].as_str().unwrap().to_owned());
            }
        }
        let unique: HashSet<String> = got.iter().cloned().collect();
        assert_eq!(
            unique.len(),
            got.len(),
            "{user} got a message twice: {got:?}"
        );
        // Markers of other users in shared rooms may still be on their way; everything sent
        // before this user's own marker must be there.
        let must: HashSet<String> = expected[user]
            .iter()
            .filter(|t| !t.starts_with("end for") || **t == markers[user].1)
            .cloned()
            .collect();
        assert!(
            must.is_subset(&unique),
            "{user} missed {:?}",
            must.difference(&unique).collect::<Vec<_>>()
        );
    }

    // Tokens reach their own rooms only.
    let (secret, _) = &rooms[1];
    for (method, path, body) in [
        ("GET", format!("/api/v1/rooms/{secret}"), json!(null)),
        (
            "GET",
            format!("/api/v1/rooms/{secret}/messages"),
            json!(null),
        ),
        (
            "POST",
            format!("/api/v1/rooms/{secret}/messages"),
            json!({"text": "let me in"}),
        ),
        ("POST", format!("/api/v1/rooms/{secret}/read"), json!(null)),
        (
            "POST",
            format!("/api/v1/rooms/{secret}/members"),
            json!({"members": ["fay"]}),
        ),
    ] {
        let (status, answer) = call(&gw, "ann", method, &path, body).await;
        assert!(
            status == 403 || status == 404,
            "ann {method} {path}: {status} {answer}"
        );
    }
    let ann = clients.get_mut("ann").unwrap();
    let result = ann
        .invoke("intrude", "SendMessage", json!([secret, "let me in"]))
        .await;
    assert_eq!(result["ok"], false, "{result}");
    assert!(
        !sim.messages(secret).iter().any(|m| m["msg"] == "let me in"),
        "nothing reached the room"
    );
    gw.stop().await;
}
