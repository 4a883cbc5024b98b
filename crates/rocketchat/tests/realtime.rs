//! The upstream realtime connection against the project's Rocket.Chat-compatible server: events
//! from REST actions arrive translated, and the connection survives drops, silence and revoked
//! tokens.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use imgate_domain::event::SubscriptionChange;
use imgate_domain::model::{NewMessage, NewRoom, ProviderSession, RoomKind, UserProfile};
use imgate_domain::ports::{
    ProviderAccounts, ProviderError, ProviderMessages, ProviderRealtime, ProviderRooms,
    RealtimeSignal, RealtimeStream, SessionSource,
};
use imgate_domain::{Password, UserEvent, UserId};
use imgate_rocketchat::{RocketChatConfig, RocketChatProvider, UpstreamTiming};
use imgate_testkit::{user, within};
use rocketchat_sim::{Sim, SimConfig};

const PASSWORD: &str = "user-password-1";

/// Keeps one session, as the gateway's token cache would, and logs in again on request.
struct Logins {
    provider: Arc<RocketChatProvider>,
    user: UserId,
    cached: tokio::sync::Mutex<Option<ProviderSession>>,
    renewals: AtomicUsize,
}

impl Logins {
    async fn login(&self) -> Result<ProviderSession, ProviderError> {
        let session = self
            .provider
            .login_user(&self.user, &Password::new(PASSWORD))
            .await?;
        *self.cached.lock().await = Some(session.clone());
        Ok(session)
    }
}

#[async_trait]
impl SessionSource for Logins {
    async fn current(&self) -> Result<ProviderSession, ProviderError> {
        let cached = self.cached.lock().await.clone();
        match cached {
            Some(session) => Ok(session),
            None => self.login().await,
        }
    }

    async fn renew(&self, _: &ProviderSession) -> Result<ProviderSession, ProviderError> {
        self.renewals.fetch_add(1, Ordering::SeqCst);
        self.login().await
    }
}

struct Fixture {
    /// The project's server; `None` against a real Rocket.Chat (`ROCKETCHAT_URL`).
    sim: Option<Sim>,
    provider: Arc<RocketChatProvider>,
    admin: ProviderSession,
    /// Makes user names unique, so tests can share a real server.
    tag: String,
}

impl Fixture {
    async fn start() -> Self {
        let timing = UpstreamTiming {
            ping_after: Duration::from_millis(300),
            dead_after: Duration::from_millis(1200),
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_millis(500),
        };
        let (sim, url, admin_user, admin_password) = match std::env::var("ROCKETCHAT_URL") {
            Ok(url) => (
                None,
                url,
                std::env::var("ROCKETCHAT_ADMIN_USER").unwrap_or_else(|_| "admin".into()),
                std::env::var("ROCKETCHAT_ADMIN_PASSWORD")
                    .expect("ROCKETCHAT_ADMIN_PASSWORD with ROCKETCHAT_URL"),
            ),
            Err(_) => {
                eprintln!("ROCKETCHAT_URL is not set: the real-server run is skipped; using the project's Rocket.Chat-compatible server");
                let sim = Sim::start(SimConfig::default()).await.unwrap();
                let url = sim.http_url();
                (Some(sim), url, "admin".into(), "admin".into())
            }
        };
        let config = RocketChatConfig {
            upstream: timing,
            ..RocketChatConfig::new(url)
        };
        let provider = Arc::new(RocketChatProvider::new(&config).unwrap());
        let admin = provider
            .login_admin(&admin_user, &Password::new(admin_password))
            .await
            .unwrap();
        let tag = format!(
            "{}",
            std::process::id()
                ^ std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .subsec_nanos()
        );
        let fx = Self {
            sim,
            provider,
            admin,
            tag,
        };
        for name in ["alice", "bob"] {
            fx.add_user(name).await;
        }
        fx
    }

    async fn add_user(&self, name: &str) {
        let profile = UserProfile {
            username: name.into(),
            name: name.into(),
            email: None,
        };
        self.provider
            .upsert_user(
                &self.admin,
                &self.user(name),
                &profile,
                &Password::new(PASSWORD),
            )
            .await
            .unwrap();
    }

    /// The host id of a test user; plain names against the project's server.
    fn user(&self, name: &str) -> UserId {
        match self.sim {
            Some(_) => user(name),
            None => user(&format!("{name}-{}", self.tag)),
        }
    }

    async fn session(&self, name: &str) -> ProviderSession {
        self.provider
            .login_user(&user(name), &Password::new(PASSWORD))
            .await
            .unwrap()
    }

    async fn connect(&self, name: &str) -> (RealtimeStream, Arc<Logins>) {
        let logins = Arc::new(Logins {
            provider: self.provider.clone(),
            user: self.user(name),
            cached: tokio::sync::Mutex::new(None),
            renewals: AtomicUsize::new(0),
        });
        let stream = self
            .provider
            .connect_realtime(&user(name), logins.clone())
            .await
            .unwrap();
        (stream, logins)
    }
}

async fn next(stream: &mut RealtimeStream, what: &str) -> RealtimeSignal {
    within(what, stream.next())
        .await
        .unwrap_or_else(|| panic!("stream ended waiting for {what}"))
}

/// The next event, skipping subscription updates (unread counts move with every message).
async fn next_event(stream: &mut RealtimeStream, what: &str, skip_updates: bool) -> UserEvent {
    loop {
        match next(stream, what).await {
            RealtimeSignal::Event(UserEvent::SubscriptionChanged {
                method: SubscriptionChange::Updated,
                ..
            }) if skip_updates => continue,
            RealtimeSignal::Event(event) => return event,
            RealtimeSignal::Connected => panic!("unexpected reconnect waiting for {what}"),
        }
    }
}

fn text(s: &str) -> NewMessage {
    NewMessage {
        text: s.into(),
        thread_id: None,
        client_message_id: None,
    }
}

#[tokio::test]
async fn rest_actions_arrive_as_domain_events() {
    let fx = Fixture::start().await;
    let (mut alice, _) = fx.connect("alice").await;
    assert_eq!(
        next(&mut alice, "connected").await,
        RealtimeSignal::Connected
    );
    let bob = fx.session("bob").await;

    let group = fx
        .provider
        .create_room(
            &bob,
            &NewRoom {
                kind: RoomKind::Group,
                name: format!("crew-{}", fx.tag),
                members: vec![fx.user("alice")],
            },
        )
        .await
        .unwrap();
    loop {
        match next_event(&mut alice, "the room insert", false).await {
            UserEvent::SubscriptionChanged {
                method: SubscriptionChange::Inserted,
                room,
            } if room.id == group.id => {
                assert_eq!(room.kind, RoomKind::Group);
                break;
            }
            _ => continue,
        }
    }
    // Give the new room's stream subscriptions a moment to be in place server-side.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let sent = fx
        .provider
        .send_message(&bob, &group.id, &text("hello alice"))
        .await
        .unwrap();
    loop {
        if let UserEvent::RoomMessage { message } =
            next_event(&mut alice, "the message", true).await
        {
            if message.text == "hello alice" {
                assert_eq!(
                    (message.id.clone(), message.sender.id.clone()),
                    (sent.id.clone(), fx.user("bob"))
                );
                break;
            }
        }
    }
    fx.provider
        .edit_message(&bob, &group.id, &sent.id, "hello, alice")
        .await
        .unwrap();
    match next_event(&mut alice, "the edit", true).await {
        UserEvent::RoomMessage { message } => {
            assert_eq!(message.text, "hello, alice");
            assert!(message.edited_at.is_some());
        }
        other => panic!("{other:?}"),
    }
    fx.provider.set_typing(&bob, &group.id, true).await.unwrap();
    assert_eq!(
        next_event(&mut alice, "typing", true).await,
        UserEvent::Typing {
            room_id: group.id.clone(),
            username: fx.user("bob").to_string(),
            typing: true
        }
    );
    fx.provider
        .delete_message(&bob, &group.id, &sent.id)
        .await
        .unwrap();
    assert_eq!(
        next_event(&mut alice, "the delete", true).await,
        UserEvent::MessageDeleted {
            room_id: group.id.clone(),
            message_id: sent.id.clone()
        }
    );
    fx.provider
        .remove_member(&bob, &group.id, &fx.user("alice"))
        .await
        .unwrap();
    loop {
        if let UserEvent::SubscriptionChanged {
            method: SubscriptionChange::Removed,
            room,
        } = next_event(&mut alice, "the removal", true).await
        {
            assert_eq!(room.id, group.id);
            break;
        }
    }
}

#[tokio::test]
async fn a_frame_larger_than_the_read_buffer_arrives_whole() {
    let fx = Fixture::start().await;
    let (mut alice, _) = fx.connect("alice").await;
    assert_eq!(
        next(&mut alice, "connected").await,
        RealtimeSignal::Connected
    );
    let bob = fx.session("bob").await;
    let (room, _) = fx
        .provider
        .open_direct(&bob, &[fx.user("alice")])
        .await
        .unwrap();
    loop {
        match next_event(&mut alice, "the room insert", false).await {
            UserEvent::SubscriptionChanged {
                method: SubscriptionChange::Inserted,
                room: inserted,
            } if inserted.id == room.id => break,
            _ => continue,
        }
    }
    // Give the new room's stream subscriptions a moment to be in place server-side.
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The most characters a message may have by default, three UTF-8 bytes each: a frame of
    // about 15 KiB, beyond the socket's 8 KiB read buffer.
    let long = "€".repeat(5000);
    fx.provider
        .send_message(&bob, &room.id, &text(&long))
        .await
        .unwrap();
    loop {
        if let UserEvent::RoomMessage { message } =
            next_event(&mut alice, "the long message", true).await
        {
            assert_eq!(message.text, long);
            break;
        }
    }
}

#[tokio::test]
async fn the_connection_comes_back_after_a_drop_a_silence_and_a_revoked_token() {
    let fx = Fixture::start().await;
    let Some(sim) = fx.sim.as_ref() else {
        eprintln!("skipped against a real server: needs the test server's fault injection");
        return;
    };
    let (mut alice, logins) = fx.connect("alice").await;
    assert_eq!(
        next(&mut alice, "connected").await,
        RealtimeSignal::Connected
    );
    assert_eq!(sim.open_ddp_connections("alice"), 1);

    sim.drop_ddp("alice").unwrap();
    assert_eq!(
        next(&mut alice, "reconnect after a drop").await,
        RealtimeSignal::Connected
    );

    // A frozen socket stays open but says nothing; the gateway must notice and give it up.
    let open_before: Vec<u64> = sim
        .ddp_connection_log()
        .into_iter()
        .filter(|c| c.username.as_deref() == Some("alice") && c.closed_at.is_none())
        .map(|c| c.connection_id)
        .collect();
    sim.freeze_ddp("alice", true).unwrap();
    within("the silent socket to be given up", async {
        while sim
            .ddp_connection_log()
            .iter()
            .any(|c| open_before.contains(&c.connection_id) && c.closed_at.is_none())
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    sim.freeze_ddp("alice", false).unwrap();
    assert_eq!(
        next(&mut alice, "reconnect after silence").await,
        RealtimeSignal::Connected
    );

    sim.revoke_tokens("alice").unwrap();
    sim.drop_ddp("alice").unwrap();
    assert_eq!(
        next(&mut alice, "reconnect with a revoked token").await,
        RealtimeSignal::Connected
    );
    assert!(
        logins.renewals.load(Ordering::SeqCst) >= 1,
        "the rejected token was renewed"
    );

    let bob = fx.session("bob").await;
    let (dm, _) = fx
        .provider
        .open_direct(&bob, &[user("alice")])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    fx.provider
        .send_message(&bob, &dm.id, &text("still there?"))
        .await
        .unwrap();
    loop {
        if let UserEvent::RoomMessage { message } =
            next_event(&mut alice, "a message after reconnects", true).await
        {
            assert_eq!(message.text, "still there?");
            break;
        }
    }

    drop(alice);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while sim.open_ddp_connections("alice") > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "dropping the stream must close the upstream"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_message_to_many_online_members_is_decoded_once_on_the_node() {
    let fx = Fixture::start().await;
    let names = ["alice", "bob", "carol", "dave", "erin"];
    for name in &names[2..] {
        fx.add_user(name).await;
    }
    let bob = fx.session("bob").await;
    let channel = fx
        .provider
        .create_room(
            &bob,
            &NewRoom {
                kind: RoomKind::Channel,
                name: format!("all-hands-{}", fx.tag),
                members: names
                    .iter()
                    .filter(|name| **name != "bob")
                    .map(|name| fx.user(name))
                    .collect(),
            },
        )
        .await
        .unwrap();
    // Everyone is online with their own upstream, already subscribed to the channel.
    let mut streams = Vec::new();
    for name in names {
        let (mut stream, _) = fx.connect(name).await;
        assert_eq!(
            next(&mut stream, &format!("{name} connected")).await,
            RealtimeSignal::Connected
        );
        streams.push(stream);
    }
    let before = fx.provider.frames_decoded();

    let sent = fx
        .provider
        .send_message(&bob, &channel.id, &text("hello, all hands"))
        .await
        .unwrap();
    let mut received = Vec::new();
    for (name, stream) in names.iter().zip(&mut streams) {
        loop {
            let event = next_event(stream, &format!("the message at {name}"), true).await;
            if let UserEvent::RoomMessage { message } = &event {
                assert_eq!(
                    (&message.id, message.text.as_str(), &message.sender.id),
                    (&sent.id, "hello, all hands", &fx.user("bob")),
                    "{name}"
                );
                received.push(event);
                break;
            }
        }
    }
    assert!(
        received.iter().all(|event| event == &received[0]),
        "every member sees the same event: {received:?}"
    );
    let after = fx.provider.frames_decoded();
    assert_eq!(
        after.message - before.message,
        1,
        "five members online, one decode of the message"
    );

    if fx.sim.is_none() {
        // A real server may serialise each member's room document on its own.
        return;
    }
    // Typing comes after the message's room documents on every socket, so once everyone has
    // seen someone type, every member has read the room document the message changed.
    let alice = fx.session("alice").await;
    fx.provider
        .set_typing(&alice, &channel.id, true)
        .await
        .unwrap();
    fx.provider
        .set_typing(&bob, &channel.id, true)
        .await
        .unwrap();
    for (name, stream) in names.iter().zip(&mut streams) {
        let typist = if *name == "alice" { "bob" } else { "alice" };
        loop {
            let event = next_event(stream, &format!("typing at {name}"), true).await;
            if matches!(&event, UserEvent::Typing { username, .. } if *username == fx.user(typist).to_string())
            {
                break;
            }
        }
    }
    let after = fx.provider.frames_decoded();
    assert_eq!(
        after.room - before.room,
        1,
        "five members online, one decode of the room document"
    );
    assert_eq!(after.message - before.message, 1);
}

#[tokio::test]
async fn a_user_who_cannot_log_in_ends_the_stream() {
    let fx = Fixture::start().await;
    let (mut ghost, _) = fx.connect("ghost").await;
    assert_eq!(within("the stream to end", ghost.next()).await, None);
}
