//! REST v1 behaviour and error shapes (reference §1–§4, checklist §9).

mod common;

use common::{decode, sim, sim_version, sim_with, Rest};
use rocketchat_sim::{RateLimit, SimConfig, Version};
use serde_json::{json, Value};
use std::time::Duration;

fn is_iso(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() == 24 && s.ends_with('Z') && s.as_bytes()[10] == b'T')
}

#[tokio::test]
async fn starts_from_a_plain_tokio_test_and_answers_info() {
    let sim = sim().await;
    let (status, body) = decode(
        reqwest::get(format!("{}/api/info", sim.http_url()))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["version"], "7.10");
    assert_eq!(body["success"], true);
    sim.stop().await;
}

#[tokio::test]
async fn login_by_user_username_email_and_resume() {
    let sim = sim().await;
    sim.create_user("alice", "pw").unwrap();
    let rest = Rest::new(&sim);
    for body in [
        json!({"user": "alice", "password": "pw"}),
        json!({"username": "alice", "password": "pw"}),
        json!({"email": "alice@example.com", "password": "pw"}),
        json!({"user": "alice@example.com", "password": "pw"}),
    ] {
        let (status, reply) = rest.post("login", body.clone()).await;
        assert_eq!(status, 200, "{body}: {reply}");
        assert_eq!(reply["status"], "success");
        assert_eq!(reply["success"], true);
        let token = reply["data"]["authToken"].as_str().unwrap();
        assert_eq!(token.len(), 43);
        assert_eq!(reply["data"]["me"]["username"], "alice");
        assert!(reply["data"]["me"]
            .get("services")
            .unwrap()
            .get("resume")
            .is_none());
        assert!(is_iso(&reply["data"]["me"]["_updatedAt"]));
        let (status, resumed) = rest.post("login", json!({"resume": token})).await;
        assert_eq!(status, 200);
        assert_eq!(
            resumed["data"]["authToken"], token,
            "resume returns the same token"
        );
    }
}

#[tokio::test]
async fn login_failures_are_401_with_meteor_fields() {
    let sim = sim().await;
    sim.create_user("alice", "pw").unwrap();
    let rest = Rest::new(&sim);
    let (status, body) = rest
        .post("login", json!({"user": "alice", "password": "nope"}))
        .await;
    assert_eq!(status, 401);
    assert_eq!(
        body,
        json!({"status": "error", "error": 403, "message": "Incorrect password", "success": false})
    );
    let (status, body) = rest
        .post("login", json!({"user": "ghost", "password": "x"}))
        .await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "Unauthorized");
    let (status, body) = rest.post("login", json!({"foo": 1})).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], 400);
    let (status, _) = rest.post("login", json!({"resume": "not-a-token"})).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn login_failure_body_on_6x_has_no_success_key() {
    let sim = sim_version(Version::V6).await;
    let (status, body) = Rest::new(&sim)
        .post("login", json!({"user": "admin", "password": "bad"}))
        .await;
    assert_eq!(status, 401);
    assert!(body.get("success").is_none());
    let (_, ok) = Rest::new(&sim)
        .post("login", json!({"user": "admin", "password": "admin"}))
        .await;
    assert!(
        ok.get("success").is_none(),
        "6.x login success has only status + data"
    );
}

#[tokio::test]
async fn unauthenticated_401_bodies_per_version() {
    for (version, expected) in [
        (
            Version::V6,
            json!({"status": "error", "message": "You must be logged in to do this."}),
        ),
        (
            Version::V7,
            json!({"success": false, "error": "You must be logged in to do this.", "status": "error", "message": "You must be logged in to do this."}),
        ),
        (
            Version::V8,
            json!({"success": false, "error": "You must be logged in to do this.", "status": "error", "message": "You must be logged in to do this."}),
        ),
    ] {
        let sim = sim_version(version).await;
        let (status, body) = Rest::new(&sim).get("me").await;
        assert_eq!((status, body), (401, expected.clone()), "{version:?}");
        let wrong = Rest::as_user(&sim, "someone", "bad-token");
        assert_eq!(
            wrong.get("me").await,
            (401, expected),
            "{version:?} bad token"
        );
    }
}

#[tokio::test]
async fn logout_removes_only_that_token() {
    let sim = sim().await;
    sim.create_user("alice", "pw").unwrap();
    let a = Rest::login(&sim, "alice", "pw").await;
    let b = Rest::login(&sim, "alice", "pw").await;
    let (status, body) = a.post("logout", json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["message"], "You've been logged out!");
    assert_eq!(a.get("me").await.0, 401);
    let (status, me) = b.get("me").await;
    assert_eq!(status, 200);
    assert_eq!(me["username"], "alice");
    assert_eq!(me["success"], true);
}

#[tokio::test]
async fn users_create_joins_general_and_reports_taken_names() {
    let sim = sim().await;
    let admin = Rest::login(&sim, "admin", "admin").await;
    let (status, body) = admin
        .post(
            "users.create",
            json!({"username": "bob", "email": "bob@example.com", "password": "pw", "name": "Bob"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let bob_id = body["user"]["_id"].as_str().unwrap().to_string();
    assert_eq!(bob_id.len(), 17);
    assert!(is_iso(&body["user"]["createdAt"]));
    assert_eq!(body["user"]["roles"], json!(["user"]));
    let (_, hist) = admin.get("channels.history?roomId=GENERAL&count=5").await;
    let first = &hist["messages"][0];
    assert_eq!(first["t"], "uj");
    assert_eq!(first["u"]["_id"], bob_id.as_str());

    let (status, body) = admin
        .post("users.create", json!({"username": "bob", "email": "other@example.com", "password": "pw", "name": "Bob"}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"],
        "bob is already in use :( [error-field-unavailable]"
    );
    assert_eq!(body["errorType"], "error-field-unavailable");
    assert_eq!(body["details"]["field"], "bob");

    let (status, body) = admin
        .post("users.create", json!({"username": "carol", "email": "c@example.com", "password": "pw", "name": "C", "joinDefaultChannels": false}))
        .await;
    assert_eq!(status, 200);
    let carol = body["user"]["_id"].as_str().unwrap();
    let (_, members) = admin.get("channels.members?roomId=GENERAL&count=0").await;
    assert!(!members["members"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["_id"] == carol));

    let (status, body) = admin
        .post("users.create", json!({"username": "bad name", "email": "d@example.com", "password": "pw", "name": "D"}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["errorType"], "error-input-is-not-a-valid-field");

    let (status, body) = admin
        .post("users.create", json!({"username": "eve", "email": "e@example.com", "password": "pw", "name": "E", "bogus": 1}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["errorType"], "invalid-params");
    assert!(body["error"]
        .as_str()
        .unwrap()
        .ends_with("[invalid-params]"));
}

#[tokio::test]
async fn permissions_403_and_version_specific_unauthorized() {
    for (version, delete_status) in [(Version::V6, 403), (Version::V7, 401), (Version::V8, 401)] {
        let sim = sim_version(version).await;
        let alice = sim.create_user("alice", "pw").unwrap();
        let bob = sim.create_user("bob", "pw").unwrap();
        let rest = Rest::as_user(&sim, &alice.id, &alice.token);
        let (status, body) = rest
            .post(
                "users.create",
                json!({"username": "x", "email": "x@x.io", "password": "pw", "name": "X"}),
            )
            .await;
        assert_eq!(status, 400, "{version:?}");
        assert_eq!(
            body,
            json!({"success": false, "error": "Adding user is not allowed [error-action-not-allowed]",
                   "errorType": "error-action-not-allowed",
                   "details": {"method": "insertOrUpdateUser", "action": "Adding_user"}})
        );
        let (status, body) = rest.get("settings/API_Enable_Rate_Limiter").await;
        assert_eq!(
            status, 403,
            "{version:?}: permission-list routes answer 403"
        );
        assert_eq!(body["success"], false);
        assert!(body["error"]
            .as_str()
            .unwrap()
            .contains("[error-unauthorized]"));
        let (status, body) = rest.post("users.delete", json!({"userId": bob.id})).await;
        assert_eq!(status, delete_status, "{version:?}");
        assert_eq!(body, json!({"success": false, "error": "unauthorized"}));
        // A 401 for permissions must not look like a session problem: the session still works.
        assert_eq!(rest.get("me").await.0, 200);
    }
}

#[tokio::test]
async fn users_update_info_set_active_and_delete() {
    let sim = sim().await;
    let bob = sim.create_user("bob", "pw").unwrap();
    let admin = Rest::login(&sim, "admin", "admin").await;
    let (status, body) = admin
        .post(
            "users.update",
            json!({"userId": bob.id, "data": {"name": "Robert", "nickname": "Bobby"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["name"], "Robert");
    let (status, body) = admin.get(&format!("users.info?userId={}", bob.id)).await;
    assert_eq!(status, 200);
    assert_eq!(body["user"]["username"], "bob");
    // One of users.info's default fields, as the nickname of users.update gave it.
    assert_eq!(body["user"]["nickname"], "Bobby");
    assert!(body["user"].get("services").is_none());
    let (status, body) = admin.get("users.info?username=nobody").await;
    assert_eq!(
        (status, body),
        (400, json!({"success": false, "error": "User not found."}))
    );

    let (status, body) = admin
        .post(
            "users.setActiveStatus",
            json!({"userId": bob.id, "activeStatus": false}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["user"], json!({"_id": bob.id, "active": false}));
    assert_eq!(
        Rest::as_user(&sim, &bob.id, &bob.token).get("me").await.0,
        401,
        "deactivation removes tokens"
    );
    let (status, body) = Rest::new(&sim)
        .post("login", json!({"user": "bob", "password": "pw"}))
        .await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "error-user-is-not-activated");

    let (status, body) = admin.post("users.delete", json!({"username": "bob"})).await;
    assert_eq!((status, body), (200, json!({"success": true})));
    let (status, body) = admin.post("users.delete", json!({"userId": bob.id})).await;
    assert_eq!(status, 400);
    assert_eq!(body["errorType"], "error-invalid-user");
}

#[tokio::test]
async fn unknown_endpoint_is_404_envelope() {
    let sim = sim().await;
    let (status, body) = Rest::new(&sim).get("no.such.endpoint").await;
    assert_eq!(
        (status, body),
        (
            404,
            json!({"success": false, "error": "Resource not found"})
        )
    );
}

#[tokio::test]
async fn im_create_uses_sorted_ids_and_is_idempotent() {
    let sim = sim().await;
    let alice = sim.create_user("alice", "pw").unwrap();
    let bob = sim.create_user("bob", "pw").unwrap();
    let carol = sim.create_user("carol", "pw").unwrap();
    let a = Rest::as_user(&sim, &alice.id, &alice.token);
    let (status, body) = a.post("im.create", json!({"username": "bob"})).await;
    assert_eq!(status, 200, "{body}");
    let mut ids = [alice.id.clone(), bob.id.clone()];
    ids.sort();
    let rid = ids.concat();
    assert_eq!(body["room"]["rid"], rid.as_str());
    assert_eq!(body["room"]["_id"], rid.as_str());
    assert_eq!(body["room"]["t"], "d");
    assert_eq!(body["room"]["inserted"], true);
    assert_eq!(body["room"]["usernames"], json!(["alice", "bob"]));
    let b = Rest::as_user(&sim, &bob.id, &bob.token);
    let (_, again) = b.post("dm.create", json!({"username": "alice"})).await;
    assert_eq!(again["room"]["rid"], rid.as_str());
    assert_eq!(again["room"]["inserted"], false);
    // The other side's subscription starts closed until a message arrives.
    let (_, sub) = b.get(&format!("subscriptions.getOne?roomId={rid}")).await;
    assert_eq!(sub["subscription"]["name"], "alice");

    let (_, group) = a.post("im.create", json!({"usernames": "bob,carol"})).await;
    let group_rid = group["room"]["rid"].as_str().unwrap();
    assert_eq!(group_rid.len(), 17);
    let (_, again) = a.post("im.create", json!({"usernames": "carol,bob"})).await;
    assert_eq!(again["room"]["rid"], group_rid);
    let _ = carol;

    let (_, own) = a.post("im.create", json!({"username": "alice"})).await;
    assert_eq!(
        own["room"]["rid"],
        alice.id.as_str(),
        "DM with yourself uses your id"
    );
}

#[tokio::test]
async fn send_history_pagination_and_unread() {
    let sim = sim().await;
    let alice = sim.create_user("alice", "pw").unwrap();
    let bob = sim.create_user("bob", "pw").unwrap();
    let a = Rest::as_user(&sim, &alice.id, &alice.token);
    let b = Rest::as_user(&sim, &bob.id, &bob.token);
    let (_, dm) = a.post("im.create", json!({"username": "bob"})).await;
    let rid = dm["room"]["rid"].as_str().unwrap().to_string();
    for i in 0..5 {
        let (status, body) = a
            .post(
                "chat.sendMessage",
                json!({"message": {"rid": rid, "msg": format!("m{i}")}}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert!(is_iso(&body["message"]["ts"]));
        assert_eq!(body["message"]["u"]["username"], "alice");
    }
    let (status, hist) = b.get(&format!("im.history?roomId={rid}&count=2")).await;
    assert_eq!(status, 200);
    let msgs = hist["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0]["msg"], "m4", "newest first");
    assert!(hist.get("total").is_none());

    let (_, page) = b
        .get(&format!("im.messages?roomId={rid}&count=2&offset=1"))
        .await;
    assert_eq!(page["count"], 2);
    assert_eq!(page["offset"], 1);
    assert_eq!(page["total"], 5);
    assert_eq!(page["messages"][0]["msg"], "m3");

    let (_, sub) = b.get(&format!("subscriptions.getOne?roomId={rid}")).await;
    assert_eq!(sub["subscription"]["unread"], 5);
    assert_eq!(sub["subscription"]["alert"], true);
    assert_eq!(sub["subscription"]["open"], true);
    let (status, body) = b.post("subscriptions.read", json!({"rid": rid})).await;
    assert_eq!((status, body), (200, json!({"success": true})));
    let (_, sub) = b.get(&format!("subscriptions.getOne?roomId={rid}")).await;
    assert_eq!(sub["subscription"]["unread"], 0);
    assert_eq!(sub["subscription"]["alert"], false);
    assert!(is_iso(&sub["subscription"]["ls"]));

    let (_, subs) = b.get("subscriptions.get").await;
    assert!(subs["update"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["rid"] == rid.as_str()));
    let (_, rooms) = b.get("rooms.get").await;
    let room = rooms["update"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["_id"] == rid.as_str())
        .unwrap()
        .clone();
    assert_eq!(room["lastMessage"]["msg"], "m4");
    assert!(is_iso(&room["lm"]));

    let (status, body) = b.post("subscriptions.unread", json!({"roomId": rid})).await;
    assert_eq!((status, body), (200, json!({"success": true})));
}

#[tokio::test]
async fn send_message_validation_errors() {
    let sim = sim().await;
    let alice = sim.create_user("alice", "pw").unwrap();
    let a = Rest::as_user(&sim, &alice.id, &alice.token);
    let (status, body) = a
        .post(
            "chat.sendMessage",
            json!({"message": {"rid": "GENERAL", "msg": "x"}, "roomId": "GENERAL"}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["errorType"], "invalid-params");
    let (status, body) = a
        .post("chat.sendMessage", json!({"message": {"msg": "x"}}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"],
        "must have required property 'rid' [invalid-params]"
    );
    let (status, body) = a
        .post(
            "chat.sendMessage",
            json!({"message": {"rid": "GENERAL", "msg": "x", "ts": "2001-01-01T00:00:00.000Z"}}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["errorType"], "error-message-ts-out-of-sync");
    let (status, body) = a
        .post(
            "chat.sendMessage",
            json!({"message": {"rid": "GENERAL", "msg": "x".repeat(5001)}}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["errorType"], "error-message-size-exceeded");
    let (status, body) = a
        .post(
            "chat.sendMessage",
            json!({"message": {"rid": "GENERAL", "msg": "x", "_id": "clientid1"}}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["message"]["_id"], "clientid1");
}

#[tokio::test]
async fn channels_and_groups_membership_with_system_messages() {
    let sim = sim().await;
    let alice = sim.create_user("alice", "pw").unwrap();
    let bob = sim.create_user("bob", "pw").unwrap();
    sim.create_user("carol", "pw").unwrap();
    let a = Rest::as_user(&sim, &alice.id, &alice.token);
    let (status, body) = a
        .post(
            "channels.create",
            json!({"name": "dev", "members": ["bob"]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let rid = body["channel"]["_id"].as_str().unwrap().to_string();
    assert_eq!(body["channel"]["t"], "c");
    assert_eq!(body["channel"]["usersCount"], 2);
    assert_eq!(body["channel"]["u"]["username"], "alice");

    let (status, body) = a.post("channels.create", json!({"name": "dev"})).await;
    assert_eq!(status, 400);
    assert_eq!(body["errorType"], "error-duplicate-channel-name");
    let (status, body) = a.post("channels.create", json!({})).await;
    assert_eq!(
        (status, body),
        (
            400,
            json!({"success": false, "error": "Param \"name\" is required"})
        )
    );

    let carol = sim.user_id("carol").unwrap();
    let (status, body) = a
        .post("channels.invite", json!({"roomId": rid, "userId": carol}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["channel"]["usersCount"], 3);
    let (status, _) = a
        .post("channels.kick", json!({"roomId": rid, "userId": bob.id}))
        .await;
    assert_eq!(status, 200);
    let (_, hist) = a
        .get(&format!("channels.history?roomId={rid}&count=10"))
        .await;
    let types: Vec<&str> = hist["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["t"].as_str())
        .collect();
    assert_eq!(types, vec!["ru", "au"]);
    let (_, members) = a.get(&format!("channels.members?roomId={rid}")).await;
    assert_eq!(members["total"], 2);
    assert_eq!(members["count"], 2);
    assert_eq!(members["offset"], 0);

    let (status, body) = a
        .post(
            "groups.create",
            json!({"name": "secret", "members": ["bob"]}),
        )
        .await;
    assert_eq!(status, 200);
    let gid = body["group"]["_id"].as_str().unwrap().to_string();
    assert_eq!(body["group"]["t"], "p");
    let c = Rest::login(&sim, "carol", "pw").await;
    let (status, body) = c.get(&format!("groups.info?roomId={gid}")).await;
    assert_eq!(status, 400, "outsiders see a private group as missing");
    assert_eq!(body["errorType"], "error-room-not-found");
    let b = Rest::as_user(&sim, &bob.id, &bob.token);
    let (status, body) = b.post("groups.leave", json!({"roomId": gid})).await;
    assert_eq!((status, body), (200, json!({"success": true})));
    let (status, body) = a.get("channels.info?roomName=nowhere").await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"],
        "The required \"roomId\" or \"roomName\" param provided does not match any channel [error-room-not-found]"
    );
}

#[tokio::test]
async fn chat_update_delete_get_and_post_message() {
    let sim = sim().await;
    let alice = sim.create_user("alice", "pw").unwrap();
    let a = Rest::as_user(&sim, &alice.id, &alice.token);
    let (_, sent) = a
        .post(
            "chat.sendMessage",
            json!({"message": {"rid": "GENERAL", "msg": "one"}}),
        )
        .await;
    let mid = sent["message"]["_id"].as_str().unwrap().to_string();
    let (status, body) = a
        .post(
            "chat.update",
            json!({"roomId": "GENERAL", "msgId": mid, "text": "two"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"]["msg"], "two");
    assert!(is_iso(&body["message"]["editedAt"]));
    assert_eq!(body["message"]["editedBy"]["username"], "alice");
    let (status, body) = a
        .post(
            "chat.update",
            json!({"roomId": "OTHER", "msgId": mid, "text": "x"}),
        )
        .await;
    assert_eq!(
        (status, body),
        (
            400,
            json!({"success": false, "error": "The room id provided does not match where the message is from."})
        )
    );
    let (_, got) = a.get(&format!("chat.getMessage?msgId={mid}")).await;
    assert_eq!(got["message"]["msg"], "two");
    let (status, body) = a
        .post("chat.delete", json!({"roomId": "GENERAL", "msgId": mid}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["_id"], mid.as_str());
    assert!(
        body["ts"].is_string(),
        "chat.delete ts is a string of epoch ms"
    );
    let (status, body) = a
        .post("chat.delete", json!({"roomId": "GENERAL", "msgId": mid}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"],
        format!("No message found with the id of \"{mid}\".")
    );

    let (status, body) = a
        .post(
            "chat.postMessage",
            json!({"channel": "#general", "text": "hello"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["ts"].is_i64());
    assert_eq!(body["message"]["msg"], "hello");
    sim.create_user("bob", "pw").unwrap();
    let (status, body) = a
        .post("chat.postMessage", json!({"channel": "@bob", "text": "dm"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"]["rid"].as_str().unwrap().len(), 34);
}

#[tokio::test]
async fn media_upload_confirm_and_protected_download() {
    let sim = sim().await;
    let alice = sim.create_user("alice", "pw").unwrap();
    let a = Rest::as_user(&sim, &alice.id, &alice.token);
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(b"hello file".to_vec())
            .file_name("note.txt")
            .mime_str("text/plain")
            .unwrap(),
    );
    let resp = a
        .client
        .post(format!("{}/api/v1/rooms.media/GENERAL", sim.http_url()))
        .header("X-User-Id", &alice.id)
        .header("X-Auth-Token", &alice.token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let (status, body) = decode(resp).await;
    assert_eq!(status, 200, "{body}");
    let file_id = body["file"]["_id"].as_str().unwrap().to_string();
    let url = body["file"]["url"].as_str().unwrap().to_string();
    assert_eq!(url, format!("/file-upload/{file_id}/note.txt"));
    let (status, body) = a
        .post(
            &format!("rooms.mediaConfirm/GENERAL/{file_id}"),
            json!({"msg": "see", "description": "d"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"]["file"]["_id"], file_id.as_str());
    assert_eq!(
        body["message"]["attachments"][0]["title_link"],
        url.as_str()
    );
    assert_eq!(body["message"]["attachments"][0]["title"], "note.txt");

    let full = format!("{}{}", sim.http_url(), url);
    assert_eq!(reqwest::get(&full).await.unwrap().status(), 403);
    let ok = reqwest::get(format!(
        "{full}?rc_uid={}&rc_token={}",
        alice.id, alice.token
    ))
    .await
    .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.bytes().await.unwrap().as_ref(), b"hello file");
    let client = reqwest::Client::new();
    let by_cookie = client
        .get(&full)
        .header(
            "Cookie",
            format!("rc_uid={}; rc_token={}", alice.id, alice.token),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(by_cookie.status(), 200);
    let by_header = client
        .get(&full)
        .header("X-User-Id", &alice.id)
        .header("X-Auth-Token", &alice.token)
        .send()
        .await
        .unwrap();
    assert_eq!(by_header.status(), 200);
    assert_eq!(
        reqwest::get(format!("{}/file-upload/nope/x.txt", sim.http_url()))
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn rooms_upload_exists_until_8() {
    for (version, expect) in [(Version::V7, 200), (Version::V8, 404)] {
        let sim = sim_version(version).await;
        let alice = sim.create_user("alice", "pw").unwrap();
        let form = reqwest::multipart::Form::new().text("msg", "caption").part(
            "file",
            reqwest::multipart::Part::bytes(b"x".to_vec()).file_name("a.bin"),
        );
        let resp = reqwest::Client::new()
            .post(format!("{}/api/v1/rooms.upload/GENERAL", sim.http_url()))
            .header("X-User-Id", &alice.id)
            .header("X-Auth-Token", &alice.token)
            .multipart(form)
            .send()
            .await
            .unwrap();
        let (status, body) = decode(resp).await;
        assert_eq!(status, expect, "{version:?}: {body}");
        if expect == 200 {
            assert_eq!(body["message"]["msg"], "caption");
        }
    }
}

#[tokio::test]
async fn rate_limiter_429_with_headers_and_admin_bypass() {
    let sim = sim_with(SimConfig {
        rate_limit: Some(RateLimit {
            calls: 2,
            window: Duration::from_secs(60),
        }),
        ..SimConfig::default()
    })
    .await;
    let alice = sim.create_user("alice", "pw").unwrap();
    let a = Rest::as_user(&sim, &alice.id, &alice.token);
    let first = a.get_raw("me").await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-ratelimit-limit"], "2");
    assert_eq!(first.headers()["x-ratelimit-remaining"], "1");
    let reset: i64 = first.headers()["x-ratelimit-reset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        reset > chrono::Utc::now().timestamp_millis(),
        "reset is epoch ms in the future"
    );
    assert_eq!(a.get_raw("me").await.status(), 200);
    let limited = a.get_raw("me").await;
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["x-ratelimit-remaining"], "0");
    assert!(limited.headers().get("retry-after").is_none());
    let (_, body) = decode(limited).await;
    assert_eq!(body["success"], false);
    let text = body["error"].as_str().unwrap();
    assert!(
        text.starts_with("Error, too many requests. Please slow down. You must wait "),
        "{text}"
    );
    assert!(text.ends_with("seconds before trying this endpoint again. [error-too-many-requests]"));
    // Another route has its own bucket; a bad token is 401 before the limiter.
    assert_eq!(a.get_raw("subscriptions.get").await.status(), 200);
    assert_eq!(
        Rest::as_user(&sim, &alice.id, "bad")
            .get_raw("me")
            .await
            .status(),
        401
    );
    let admin = Rest::login(&sim, "admin", "admin").await;
    for _ in 0..5 {
        let r = admin.get_raw("me").await;
        assert_eq!(r.status(), 200);
        assert!(
            r.headers().get("x-ratelimit-limit").is_none(),
            "admins bypass the limiter"
        );
    }
}

fn header_i64(resp: &reqwest::Response, name: &str) -> i64 {
    resp.headers()[name].to_str().unwrap().parse().unwrap()
}

/// A client whose calls come from another loopback address, i.e. another client IP.
fn from_address(ip: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::from(ip))
        .build()
        .unwrap()
}

#[tokio::test]
async fn limiter_buckets_are_per_ip_route_and_method_in_one_route_window() {
    let sim = sim_with(SimConfig {
        rate_limit: Some(RateLimit {
            calls: 2,
            window: Duration::from_secs(60),
        }),
        ..SimConfig::default()
    })
    .await;
    let alice = sim.create_user("alice", "pw").unwrap();
    let a = Rest::as_user(&sim, &alice.id, &alice.token);
    let first = a.get_raw("me").await;
    let reset = header_i64(&first, "x-ratelimit-reset");
    assert_eq!(sim.rate_limit_reset("me", "GET"), Some(reset));
    assert_eq!(a.get_raw("me").await.status(), 200);
    let refused = a.get_raw("me").await;
    assert_eq!(refused.status(), 429);
    assert_eq!(
        header_i64(&refused, "x-ratelimit-reset"),
        reset,
        "same window"
    );
    let wait_ms = reset - chrono::Utc::now().timestamp_millis();
    let (_, body) = decode(refused).await;
    let seconds = (wait_ms as u64).div_ceil(1000);
    let text = body["error"].as_str().unwrap();
    assert!(
        text.contains(&format!("wait {seconds} seconds"))
            || text.contains(&format!("wait {} seconds", seconds + 1)),
        "{text} (about {seconds} s left)"
    );
    // Refused calls count too: still refused, and counted by the sim.
    assert_eq!(a.get_raw("me").await.status(), 429);
    assert_eq!(sim.rate_limit_refusals("me", "GET"), 2);

    // Another client address has its own counter, in the route's window.
    let other = from_address([127, 0, 0, 2])
        .get(format!("{}/api/v1/me", sim.http_url()))
        .header("X-User-Id", &alice.id)
        .header("X-Auth-Token", &alice.token)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
    assert_eq!(header_i64(&other, "x-ratelimit-remaining"), 1);
    assert_eq!(header_i64(&other, "x-ratelimit-reset"), reset);
    // Another method of the same route is another bucket.
    assert_eq!(a.post_raw("logout", json!({})).await.status(), 200);
    let again = sim.login("alice").unwrap();
    let a = Rest::as_user(&sim, &again.id, &again.token);
    assert_eq!(
        a.get_raw("logout").await.status(),
        200,
        "GET logout has its own bucket"
    );
}

#[tokio::test]
async fn the_bypass_permission_follows_permissions_update() {
    let sim = sim_with(SimConfig::like_default_server()).await;
    assert_eq!(sim.setting("API_Enable_Rate_Limiter"), Some(json!(true)));
    let alice = sim.create_user("alice", "pw").unwrap();
    let a = Rest::as_user(&sim, &alice.id, &alice.token);
    for _ in 0..10 {
        assert_eq!(a.get_raw("subscriptions.get").await.status(), 200);
    }
    assert_eq!(a.get_raw("subscriptions.get").await.status(), 429);

    let admin = Rest::login(&sim, "admin", "admin").await;
    let (status, body) = a.get("permissions.listAll").await;
    assert_eq!(status, 200, "any user may list permissions: {body}");
    let bypass = body["update"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["_id"] == "api-bypass-rate-limit")
        .cloned()
        .unwrap();
    assert_eq!(bypass["roles"], json!(["admin", "bot", "app"]));
    assert_eq!(body["remove"], json!([]));

    let grant = json!({"permissions": [{"_id": "api-bypass-rate-limit", "roles": ["admin", "bot", "app", "user"]}]});
    let (status, body) = a.post("permissions.update", grant.clone()).await;
    assert_eq!(
        (status, body["error"].clone()),
        (
            403,
            json!(
                "User does not have the permissions required for this action [error-unauthorized]"
            )
        )
    );
    let before_update = chrono::Utc::now();
    let (status, body) = admin.post("permissions.update", grant).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["_id"] == "api-bypass-rate-limit"
            && p["roles"] == json!(["admin", "bot", "app", "user"])));
    assert_eq!(
        sim.permission_roles("api-bypass-rate-limit"),
        Some(vec![
            "admin".into(),
            "bot".into(),
            "app".into(),
            "user".into()
        ])
    );
    let free = a.get_raw("subscriptions.get").await;
    assert_eq!(free.status(), 200, "users now bypass the limiter");
    assert!(free.headers().get("x-ratelimit-limit").is_none());

    let since = before_update - chrono::Duration::milliseconds(1);
    let (_, changed) = a
        .get(&format!(
            "permissions.listAll?updatedSince={}",
            since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        ))
        .await;
    assert_eq!(changed["update"].as_array().unwrap().len(), 1, "{changed}");

    for (body, error_type) in [
        (
            json!({"permissions": [{"_id": "no-such-permission", "roles": ["user"]}]}),
            "error-invalid-permission",
        ),
        (
            json!({"permissions": [{"_id": "api-bypass-rate-limit", "roles": ["no-such-role"]}]}),
            "error-invalid-role",
        ),
        (json!({}), "invalid-params"),
    ] {
        let (status, answer) = admin.post("permissions.update", body).await;
        assert_eq!(
            (status, answer["errorType"].clone()),
            (400, json!(error_type)),
            "{answer}"
        );
    }
    let (_, answer) = admin
        .post(
            "permissions.update",
            json!({"permissions": [{"_id": "x", "roles": []}]}),
        )
        .await;
    assert_eq!(
        answer,
        json!({"success": false, "error": "Invalid permission", "errorType": "error-invalid-permission"})
    );
}

#[tokio::test]
async fn changing_the_limiter_numbers_starts_fresh_windows() {
    let sim = sim_with(SimConfig {
        rate_limit: Some(RateLimit {
            calls: 1,
            window: Duration::from_secs(60),
        }),
        ..SimConfig::default()
    })
    .await;
    let alice = sim.create_user("alice", "pw").unwrap();
    let a = Rest::as_user(&sim, &alice.id, &alice.token);
    assert_eq!(a.get_raw("me").await.status(), 200);
    assert_eq!(a.get_raw("me").await.status(), 429);
    let admin = Rest::login(&sim, "admin", "admin").await;
    let (status, _) = admin
        .post(
            "settings/API_Enable_Rate_Limiter_Limit_Calls_Default",
            json!({"value": 3}),
        )
        .await;
    assert_eq!(status, 200);
    let fresh = a.get_raw("me").await;
    assert_eq!(fresh.status(), 200);
    assert_eq!(header_i64(&fresh, "x-ratelimit-limit"), 3);
    assert_eq!(header_i64(&fresh, "x-ratelimit-remaining"), 2);
    // Turning the limiter off stops counting; on again, the old counters are still there.
    sim.set_setting("API_Enable_Rate_Limiter", json!(false));
    for _ in 0..5 {
        assert!(a
            .get_raw("me")
            .await
            .headers()
            .get("x-ratelimit-limit")
            .is_none());
    }
    sim.set_setting("API_Enable_Rate_Limiter", json!(true));
    assert_eq!(
        header_i64(&a.get_raw("me").await, "x-ratelimit-remaining"),
        1
    );
}

#[tokio::test]
async fn limiter_settings_through_the_settings_endpoints() {
    let sim = sim().await;
    let admin = Rest::login(&sim, "admin", "admin").await;
    let (status, body) = admin.get("settings/API_Enable_Rate_Limiter").await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({"_id": "API_Enable_Rate_Limiter", "value": false, "success": true})
        )
    );
    assert_eq!(
        admin
            .post(
                "settings/API_Enable_Rate_Limiter_Limit_Calls_Default",
                json!({"value": 1})
            )
            .await
            .0,
        200
    );
    assert_eq!(
        admin
            .post("settings/API_Enable_Rate_Limiter", json!({"value": true}))
            .await
            .0,
        200
    );
    assert_eq!(sim.setting("API_Enable_Rate_Limiter"), Some(json!(true)));
    let alice = sim.create_user("alice", "pw").unwrap();
    let a = Rest::as_user(&sim, &alice.id, &alice.token);
    assert_eq!(a.get_raw("me").await.status(), 200);
    assert_eq!(a.get_raw("me").await.status(), 429);
    let (status, _) = a.get("settings/API_Enable_Rate_Limiter").await;
    assert_eq!(status, 403, "users cannot read privileged settings");
    let (status, body) = admin.get("settings/No_Such_Setting").await;
    assert_eq!((status, body), (400, json!({"success": false})));
}

#[actix_web::test]
async fn starts_inside_an_actix_system_runtime() {
    let sim = sim().await;
    let (status, _) = Rest::login(&sim, "admin", "admin").await.get("me").await;
    assert_eq!(status, 200);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_on_a_multi_thread_runtime_and_restarts() {
    let sim = sim().await;
    sim.refuse_connections().await;
    sim.accept_connections().await.unwrap();
    let (status, _) = Rest::login(&sim, "admin", "admin").await.get("me").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn two_factor_password_fallback_on_users_update() {
    let sim = sim().await;
    let bob = sim.create_user("bob", "pw").unwrap();
    sim.set_setting("Accounts_TwoFactorAuthentication_Enabled", json!(true));
    let admin = Rest::login(&sim, "admin", "admin").await;
    let body = json!({"userId": bob.id, "data": {"name": "B"}});
    // Within RememberFor of the account's creation the gate is skipped.
    assert_eq!(admin.post("users.update", body.clone()).await.0, 200);
    sim.set_setting("Accounts_TwoFactorAuthentication_RememberFor", json!(0));
    let (status, reply) = admin.post("users.update", body.clone()).await;
    assert_eq!(status, 400);
    assert_eq!(
        reply,
        json!({"success": false, "error": "TOTP Required [totp-required]", "errorType": "totp-required",
               "details": {"method": "password", "availableMethods": []}})
    );
    let url = format!("{}/api/v1/users.update", sim.http_url());
    let (id, token) = admin.auth.clone().unwrap();
    let send = |code: &'static str| {
        reqwest::Client::new()
            .post(&url)
            .header("X-User-Id", &id)
            .header("X-Auth-Token", &token)
            .header("X-2FA-Method", "password")
            .header("X-2FA-Code", code)
            .json(&body)
            .send()
    };
    let (status, reply) = decode(send("00").await.unwrap()).await;
    assert_eq!(status, 400);
    assert_eq!(reply["errorType"], "totp-invalid");
    // sha256("admin")
    let good = "8c6976e5b5410415bde908bd4dee15dfb167a9c873fc4bb8a81f6f2ab448a918";
    assert_eq!(send(good).await.unwrap().status(), 200);
}

#[tokio::test]
async fn personal_access_tokens_work_as_login_tokens() {
    let sim = sim().await;
    let alice = sim.create_user("alice", "pw").unwrap();
    let a = Rest::as_user(&sim, &alice.id, &alice.token);
    let (status, body) = a
        .post(
            "users.generatePersonalAccessToken",
            json!({"tokenName": "gateway", "bypassTwoFactor": true}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let pat = body["token"].as_str().unwrap().to_string();
    assert_eq!(pat.len(), 43);
    let (status, body) = a
        .post(
            "users.generatePersonalAccessToken",
            json!({"tokenName": "gateway"}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["errorType"], "error-token-already-exists");
    let with_pat = Rest::as_user(&sim, &alice.id, &pat);
    assert_eq!(with_pat.get("me").await.0, 200);
    let (_, list) = a.get("users.getPersonalAccessTokens").await;
    assert_eq!(list["tokens"][0]["name"], "gateway");
    assert_eq!(list["tokens"][0]["bypassTwoFactor"], true);
    let (status, _) = a
        .post(
            "users.removePersonalAccessToken",
            json!({"tokenName": "gateway"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(with_pat.get("me").await.0, 401);
}

#[tokio::test]
async fn deleting_a_channel_removes_it_for_members() {
    let sim = sim().await;
    let alice = sim.create_user("alice", "pw").unwrap();
    let bob = sim.create_user("bob", "pw").unwrap();
    let rid = sim.create_channel("gone", "alice", &["bob"]).unwrap();
    let b = Rest::as_user(&sim, &bob.id, &bob.token);
    let (status, body) = b.post("channels.delete", json!({"roomId": rid})).await;
    assert_eq!(status, 401, "only owners and admins: {body}");
    let a = Rest::as_user(&sim, &alice.id, &alice.token);
    assert_eq!(
        a.post("channels.delete", json!({"roomId": rid})).await,
        (200, json!({"success": true}))
    );
    let (status, body) = b.get(&format!("channels.info?roomId={rid}")).await;
    assert_eq!(status, 400);
    assert_eq!(body["errorType"], "error-room-not-found");
    let (_, subs) = b.get("subscriptions.get").await;
    assert!(!subs["update"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["rid"] == rid.as_str()));
}

#[tokio::test]
async fn downloads_are_restricted_to_room_members() {
    let sim = sim().await;
    let alice = sim.create_user("alice", "pw").unwrap();
    sim.create_user("bob", "pw").unwrap();
    let carol = sim.create_user("carol", "pw").unwrap();
    let rid = sim.create_dm("alice", "bob").unwrap();
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(b"secret".to_vec()).file_name("s.txt"),
    );
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/rooms.media/{rid}", sim.http_url()))
        .header("X-User-Id", &alice.id)
        .header("X-Auth-Token", &alice.token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let (_, body) = decode(resp).await;
    let url = format!(
        "{}{}",
        sim.http_url(),
        body["file"]["url"].as_str().unwrap()
    );
    let as_carol = format!("{url}?rc_uid={}&rc_token={}", carol.id, carol.token);
    assert_eq!(
        reqwest::get(&as_carol).await.unwrap().status(),
        403,
        "carol is not in the DM"
    );
    let as_alice = format!("{url}?rc_uid={}&rc_token={}", alice.id, alice.token);
    assert_eq!(reqwest::get(&as_alice).await.unwrap().status(), 200);
}
