//! A day in the life, over real HTTP against each provider: the host mirrors users, they
//! create rooms, talk, read, edit, delete, upload and download.

use reqwest::multipart::{Form, Part};
use serde_json::{json, Value};

use crate::helpers::{each_provider, Provider, TestGateway, API_KEY};

async fn upsert(gw: &TestGateway, id: &str, name: &str, expected: u16) {
    let body = json!({"username": id, "name": name});
    let (status, user) = gw
        .send(
            gw.put(&format!("/api/v1/users/{id}"))
                .header("X-Api-Key", API_KEY)
                .json(&body),
        )
        .await;
    assert_eq!(status, expected, "{user}");
    assert_eq!(user["id"], id);
}

each_provider!(users_rooms_messages_unread_and_files);

async fn users_rooms_messages_unread_and_files(provider: Provider) {
    let Some(gw) = TestGateway::on(provider, &[]).await else {
        return;
    };
    for expected in [201, 200] {
        upsert(&gw, "ann", "Ann", expected).await;
        upsert(&gw, "ben", "Ben", expected).await;
    }
    let ann = gw.token("ann");
    let ben = gw.token("ben");

    let (status, group) = gw
        .send(
            gw.post("/api/v1/rooms")
                .bearer_auth(&ann)
                .json(&json!({"kind": "group", "name": "planning", "members": ["ben"]})),
        )
        .await;
    assert_eq!(status, 201, "{group}");
    assert_eq!(
        (group["kind"].clone(), group["name"].clone()),
        (json!("group"), json!("planning"))
    );
    let group_id = group["id"].as_str().unwrap().to_owned();
    let (status, channel) = gw
        .send(
            gw.post("/api/v1/rooms")
                .bearer_auth(&ann)
                .json(&json!({"kind": "channel", "name": "lobby", "members": []})),
        )
        .await;
    assert_eq!((status, channel["kind"].clone()), (201, json!("channel")));
    let (status, again) = gw
        .send(
            gw.post("/api/v1/rooms")
                .bearer_auth(&ann)
                .json(&json!({"kind": "channel", "name": "lobby"})),
        )
        .await;
    assert_eq!((status, again["error"].clone()), (409, json!("conflict")));

    let (status, dm) = gw
        .send(
            gw.post("/api/v1/rooms/direct")
                .bearer_auth(&ann)
                .json(&json!({"members": ["ben"]})),
        )
        .await;
    assert_eq!((status, dm["kind"].clone()), (201, json!("direct")));
    let (status, dm_again) = gw
        .send(
            gw.post("/api/v1/rooms/direct")
                .bearer_auth(&ann)
                .json(&json!({"members": ["ben"]})),
        )
        .await;
    assert_eq!((status, dm_again["id"].clone()), (200, dm["id"].clone()));

    let messages = format!("/api/v1/rooms/{group_id}/messages");
    let send = |text: &str, client_id: Option<&str>| {
        let mut body = json!({"text": text});
        if let Some(id) = client_id {
            body["clientMessageId"] = json!(id);
        }
        gw.post(&messages).bearer_auth(&ann).json(&body)
    };
    let (status, first) = gw.send(send("first", None)).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(
        (
            first["sender"]["id"].clone(),
            first["text"].clone(),
            first["roomId"].clone()
        ),
        (json!("ann"), json!("first"), json!(group_id))
    );
    let (_, once) = gw.send(send("retried", Some("c-1"))).await;
    let (_, twice) = gw.send(send("retried", Some("c-1"))).await;
    assert_eq!(
        once["id"], twice["id"],
        "a retried clientMessageId must not post twice"
    );
    for n in 0..4 {
        gw.send(send(&format!("n{n}"), None)).await;
    }

    let (_, rooms) = gw.send(gw.get("/api/v1/rooms").bearer_auth(&ben)).await;
    let seen: &Value = rooms
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == json!(group_id))
        .expect("ben sees the group");
    assert_eq!(seen["unread"], 6);
    assert_eq!(seen["lastMessage"]["text"], "n3");
    let (_, unread) = gw.send(gw.get("/api/v1/unread").bearer_auth(&ben)).await;
    assert_eq!(unread["rooms"][&group_id], 6);

    let first_id = first["id"].as_str().unwrap();
    let (status, edited) = gw
        .send(
            gw.http
                .patch(format!("{}{messages}/{first_id}", gw.base))
                .bearer_auth(&ann)
                .json(&json!({"text": "first!"})),
        )
        .await;
    assert_eq!((status, edited["text"].clone()), (200, json!("first!")));
    assert!(edited["editedAt"].is_string());
    let once_id = once["id"].as_str().unwrap();
    let (status, _) = gw
        .send(
            gw.delete(&format!("{messages}/{once_id}"))
                .bearer_auth(&ann),
        )
        .await;
    assert_eq!(status, 204);
    // Ben may not edit Ann's message.
    let (status, body) = gw
        .send(
            gw.http
                .patch(format!("{}{messages}/{first_id}", gw.base))
                .bearer_auth(&ben)
                .json(&json!({"text": "mine now"})),
        )
        .await;
    assert!(status == 403 || status == 400, "{status} {body}");

    let (_, page) = gw
        .send(gw.get(&format!("{messages}?limit=2")).bearer_auth(&ben))
        .await;
    let texts: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        (texts, page["hasMore"].clone()),
        (vec!["n3", "n2"], json!(true))
    );
    let before = page["messages"][1]["createdAt"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, older) = gw
        .send(
            gw.get(&messages)
                .query(&[("before", before.as_str()), ("limit", "100")])
                .bearer_auth(&ben),
        )
        .await;
    let texts: Vec<&str> = older["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert!(
        texts.contains(&"first!") && !texts.contains(&"retried"),
        "{texts:?}"
    );
    assert_eq!(older["hasMore"], false);

    let (status, _) = gw
        .send(
            gw.post(&format!("/api/v1/rooms/{group_id}/read"))
                .bearer_auth(&ben),
        )
        .await;
    assert_eq!(status, 204);
    let (_, unread) = gw.send(gw.get("/api/v1/unread").bearer_auth(&ben)).await;
    assert!(unread["rooms"].get(&group_id).is_none(), "{unread}");

    let form = Form::new().text("text", "the plan").part(
        "file",
        Part::bytes(b"step 1\nstep 2\n".to_vec())
            .file_name("plan.txt")
            .mime_str("text/plain")
            .unwrap(),
    );
    let (status, file_message) = gw
        .send(
            gw.post(&format!("/api/v1/rooms/{group_id}/files"))
                .bearer_auth(&ann)
                .multipart(form),
        )
        .await;
    assert_eq!(status, 201, "{file_message}");
    assert_eq!(file_message["text"], "the plan");
    let url = file_message["file"]["url"].as_str().unwrap();
    let response = gw.get(url).bearer_auth(&ben).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains("plan.txt"));
    assert_eq!(
        response.bytes().await.unwrap().as_ref(),
        b"step 1\nstep 2\n"
    );
    // Someone outside the room cannot fetch it.
    upsert(&gw, "cyd", "Cyd", 201).await;
    let response = gw
        .get(url)
        .bearer_auth(gw.token("cyd"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);

    let (status, _) = gw
        .send(
            gw.delete(&format!("/api/v1/rooms/{group_id}/members/ben"))
                .bearer_auth(&ann),
        )
        .await;
    assert_eq!(status, 204);
    let (_, rooms) = gw.send(gw.get("/api/v1/rooms").bearer_auth(&ben)).await;
    assert!(rooms
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["id"] != json!(group_id)));

    let (status, _) = gw
        .send(gw.delete("/api/v1/users/ben").header("X-Api-Key", API_KEY))
        .await;
    assert_eq!(status, 204);
    let (status, body) = gw.send(gw.get("/api/v1/rooms").bearer_auth(&ben)).await;
    assert_eq!(
        (status, body["error"].clone()),
        (403, json!("forbidden")),
        "{body}"
    );
    // Operators see the provider's calls by outcome, under the provider's name.
    let metrics = gw.metrics().await;
    let kind = match provider {
        Provider::RocketChat => "rocketchat",
        Provider::Matrix => "matrix",
    };
    for outcome in ["ok", "not_found"] {
        let series =
            format!("imgate_upstream_requests_total{{provider=\"{kind}\",outcome=\"{outcome}\"}}");
        assert!(metrics.contains(&series), "no {series} in:\n{metrics}");
    }
    gw.stop().await;
}

each_provider!(bad_requests_name_the_field);

async fn bad_requests_name_the_field(provider: Provider) {
    let Some(gw) = TestGateway::on(provider, &[]).await else {
        return;
    };
    let alice = gw.token("alice");
    let cases = [
        (
            gw.post("/api/v1/rooms")
                .json(&json!({"kind": "direct", "name": "x"})),
            "kind",
        ),
        (
            gw.post("/api/v1/rooms")
                .json(&json!({"kind": "group", "name": " "})),
            "name",
        ),
        (
            gw.post("/api/v1/rooms")
                .json(&json!({"kind": "party", "name": "x"})),
            "kind",
        ),
        (
            gw.post("/api/v1/rooms/direct")
                .json(&json!({"members": []})),
            "members",
        ),
        (
            gw.post("/api/v1/rooms/direct")
                .json(&json!({"members": [""]})),
            "members[0]",
        ),
        (
            gw.post("/api/v1/rooms/GENERAL/messages")
                .json(&json!({"text": ""})),
            "text",
        ),
        (
            gw.post("/api/v1/rooms/GENERAL/messages")
                .json(&json!({"text": "x".repeat(5001)})),
            "text",
        ),
        (gw.get("/api/v1/rooms/GENERAL/messages?limit=0"), "limit"),
        (
            gw.get("/api/v1/rooms/GENERAL/messages?before=yesterday"),
            "before",
        ),
        (
            gw.post("/api/v1/rooms/GENERAL/files")
                .multipart(Form::new().text("note", "x")),
            "note",
        ),
    ];
    for (request, needle) in cases {
        let (status, body) = gw.send(request.bearer_auth(&alice)).await;
        assert_eq!(
            (status, body["error"].clone()),
            (400, json!("invalid_request")),
            "{needle}: {body}"
        );
        assert!(
            body["message"].as_str().unwrap().contains(needle),
            "{body} should name {needle}"
        );
    }
    let (status, body) = gw
        .send(
            gw.get("/api/v1/rooms/NoSuchRoom123/messages")
                .bearer_auth(&alice),
        )
        .await;
    assert_eq!(
        (status, body["error"].clone()),
        (404, json!("not_found")),
        "{body}"
    );
    gw.stop().await;
}

each_provider!(uploads_over_the_limit_are_refused);

async fn uploads_over_the_limit_are_refused(provider: Provider) {
    let Some(gw) = TestGateway::on(provider, &[("server.max_upload_bytes", "1000")]).await else {
        return;
    };
    let alice = gw.token("alice");
    let (_, dm) = gw
        .send(
            gw.post("/api/v1/rooms/direct")
                .bearer_auth(&alice)
                .json(&json!({"members": ["bob"]})),
        )
        .await;
    let room = dm["id"].as_str().unwrap();
    let big = Form::new().part("file", Part::bytes(vec![7u8; 50_000]).file_name("big.bin"));
    let (status, body) = gw
        .send(
            gw.post(&format!("/api/v1/rooms/{room}/files"))
                .bearer_auth(&alice)
                .multipart(big),
        )
        .await;
    assert_eq!(
        (status, body["error"].clone()),
        (413, json!("payload_too_large")),
        "{body}"
    );
    let small = Form::new().part("file", Part::bytes(vec![7u8; 10]).file_name("small.bin"));
    let (status, _) = gw
        .send(
            gw.post(&format!("/api/v1/rooms/{room}/files"))
                .bearer_auth(&alice)
                .multipart(small),
        )
        .await;
    assert_eq!(status, 201);
    gw.stop().await;
}

each_provider!(frontend_mode_hands_out_provider_credentials_only_when_enabled);

/// Asks the provider itself who the frontend session's credentials belong to; the status.
async fn provider_whoami(provider: Provider, provider_url: &str, session: &Value) -> u16 {
    let user_id = session["userId"].as_str().unwrap();
    let token = session["authToken"].as_str().unwrap();
    let request = match provider {
        Provider::RocketChat => reqwest::Client::new()
            .get(format!("{provider_url}/api/v1/me"))
            .header("X-User-Id", user_id)
            .header("X-Auth-Token", token),
        Provider::Matrix => reqwest::Client::new()
            .get(format!("{provider_url}/_matrix/client/v3/account/whoami"))
            .bearer_auth(token),
    };
    request.send().await.unwrap().status().as_u16()
}

async fn frontend_mode_hands_out_provider_credentials_only_when_enabled(provider: Provider) {
    let Some(gw) = TestGateway::on(provider, &[]).await else {
        return;
    };
    let (status, body) = gw
        .send(gw.post("/api/v1/session").bearer_auth(gw.token("alice")))
        .await;
    assert_eq!((status, body["error"].clone()), (403, json!("forbidden")));
    gw.stop().await;

    let Some(gw) = TestGateway::on(provider, &[("realtime.mode", "both")]).await else {
        return;
    };
    let (status, session) = gw
        .send(gw.post("/api/v1/session").bearer_auth(gw.token("alice")))
        .await;
    assert_eq!(status, 200, "{session}");
    let provider_url = gw.gateway.provider_url.clone();
    let realtime_url = session["realtimeUrl"].as_str().unwrap();
    match provider {
        Provider::RocketChat => {
            assert_eq!(session["provider"], "rocketchat");
            assert!(realtime_url.ends_with("/websocket"), "{realtime_url}");
        }
        Provider::Matrix => {
            assert_eq!(session["provider"], "matrix");
            assert_eq!(
                realtime_url, provider_url,
                "a Matrix client syncs with the homeserver"
            );
        }
    }
    // The credentials work against the provider itself.
    assert_eq!(
        provider_whoami(provider, &provider_url, &session).await,
        200
    );
    let (status, _) = gw
        .send(gw.delete("/api/v1/session").bearer_auth(gw.token("alice")))
        .await;
    assert_eq!(status, 204);
    assert_eq!(
        provider_whoami(provider, &provider_url, &session).await,
        401,
        "logout must end the provider session"
    );
    gw.stop().await;
}
