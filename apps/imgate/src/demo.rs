//! Demo mode: the embedded defaults with no host key material. Its secret is public, so it
//! must never face a network; start-up says so loudly. The embedded provider starts with the
//! demo users and a channel to open on, [`DEMO_CHANNEL`], where one of them says hello.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use imgate_domain::model::{NewMessage, NewRoom, RoomKind};
use imgate_domain::ports::ImProvider;
use imgate_domain::services::{AdminAgent, ChatService};
use imgate_domain::UserId;

/// The HS256 secret of demo mode, known to everyone reading this file.
pub const DEMO_JWT_SECRET: &str = "imgate-demo-secret-not-for-production-use";
/// The host back end's API key in demo mode.
pub const DEMO_API_KEY: &str = "imgate-demo-api-key";
/// The password of users mirrored in demo mode.
pub const DEMO_USER_PASSWORD: &str = "imgate-demo-password";
/// Host users created at start-up in demo mode: (id, username, display name).
pub const DEMO_USERS: &[(&str, &str, &str)] = &[
    ("alice", "alice", "Alice Liddell"),
    ("bob", "bob", "Bob Builder"),
    ("carol", "carol", "Carol Danvers"),
];

/// A demo JWT for `user`, valid for `ttl`.
pub fn token(user_claim: &str, user: &str, ttl: Duration) -> String {
    imgate_http::auth::mint_hs256(DEMO_JWT_SECRET.as_bytes(), user_claim, user, ttl)
}

/// The channel every demo user starts in, as Rocket.Chat opens on `#general`.
pub const DEMO_CHANNEL: &str = "general";
/// The demo user who greets everyone in [`DEMO_CHANNEL`].
pub const WELCOME_FROM: &str = "alice";
/// The greeting: the last message of [`DEMO_CHANNEL`] on a newcomer's first view.
pub const WELCOME_TEXT: &str = "Welcome to the imgate demo! bob and carol are here too: \
    sign in as one of them in another window and reply, or start a direct message.";
/// Makes the greeting idempotent: seeding again finds the first one rather than posting twice.
const WELCOME_CLIENT_ID: &str = "imgate-demo-welcome";

/// Gives the demo users a conversation to open on: [`DEMO_CHANNEL`] with all of them in it
/// and [`WELCOME_TEXT`] from [`WELCOME_FROM`]. The admin agent finds the channel (the bundled
/// server starts with one, as Rocket.Chat does) or creates it, and adds the demo users; the
/// greeting is sent as its author. Running it again changes nothing. For the embedded
/// provider only: a real provider's rooms are its operator's.
pub async fn seed_channel(
    admin: &AdminAgent,
    provider: &Arc<dyn ImProvider>,
    chat: &ChatService,
) -> anyhow::Result<()> {
    let p = provider;
    let rooms = admin
        .run(|session| async move { p.list_rooms(&session).await })
        .await
        .context("listing the admin agent's rooms")?;
    let found = rooms
        .into_iter()
        .find(|room| room.kind == RoomKind::Channel && room.name == DEMO_CHANNEL);
    let channel = match found {
        Some(channel) => channel,
        None => {
            let new = &NewRoom {
                kind: RoomKind::Channel,
                name: DEMO_CHANNEL.to_owned(),
                members: Vec::new(),
            };
            admin
                .run(|session| async move { p.create_room(&session, new).await })
                .await
                .with_context(|| format!("creating #{DEMO_CHANNEL}"))?
        }
    };
    let members = &DEMO_USERS
        .iter()
        .map(|(id, _, _)| UserId::parse(*id).expect("demo ids are valid"))
        .collect::<Vec<_>>();
    // Adding a member who is in already changes nothing, so a second run adds nobody.
    let room = &channel.id;
    admin
        .run(|session| async move { p.add_members(&session, room, members).await })
        .await
        .with_context(|| format!("adding the demo users to #{DEMO_CHANNEL}"))?;
    let author = UserId::parse(WELCOME_FROM).expect("demo ids are valid");
    let welcome = NewMessage {
        text: WELCOME_TEXT.to_owned(),
        thread_id: None,
        client_message_id: Some(WELCOME_CLIENT_ID.to_owned()),
    };
    chat.send(&author, room, &welcome)
        .await
        .with_context(|| format!("posting the welcome message in #{DEMO_CHANNEL}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use imgate_domain::model::{HistoryQuery, UserProfile};
    use imgate_domain::ports::{EventDelivery, Reach};
    use imgate_domain::services::{
        Ownership, PasswordPolicy, SessionService, UpstreamService, UserService,
    };
    use imgate_domain::{Password, UserEvent};
    use imgate_memory::{MemoryLease, MemoryPasswordStore, MemoryTokenCache};
    use imgate_rocketchat::{RocketChatConfig, RocketChatProvider};
    use rocketchat_sim::{Sim, SimConfig};

    use super::*;

    // Seeding opens no hub connection: nobody receives events.
    struct NoConnections;
    impl EventDelivery for NoConnections {
        fn deliver(&self, _: &UserId, _: &UserEvent, _: Reach) {}
        fn hold(&self, _: &UserId) {}
        fn release(&self, _: &UserId) {}
    }

    #[tokio::test]
    async fn seeding_again_changes_nothing() {
        let sim = Sim::start(SimConfig {
            admin_username: "admin".into(),
            admin_password: "admin-password".into(),
            ..SimConfig::default()
        })
        .await
        .expect("the sim starts");
        let provider: Arc<dyn ImProvider> = Arc::new(
            RocketChatProvider::new(&RocketChatConfig::new(sim.http_url()))
                .expect("the sim's URL is valid"),
        );
        let sessions = Arc::new(SessionService::new(
            provider.clone(),
            Arc::new(MemoryTokenCache::default()),
            PasswordPolicy::new(
                Password::new(DEMO_USER_PASSWORD),
                Arc::new(MemoryPasswordStore::default()),
            ),
            Duration::from_secs(3600),
        ));
        let admin = Arc::new(AdminAgent::new(
            provider.clone(),
            "admin".into(),
            Password::new("admin-password"),
        ));
        let upstreams = UpstreamService::new(
            provider.clone(),
            sessions.clone(),
            Arc::new(NoConnections),
            Ownership {
                lease: Arc::new(MemoryLease::default()),
                node: "test".into(),
                ttl: Duration::from_secs(15),
            },
            Duration::from_secs(1),
        );
        let users = UserService::new(
            provider.clone(),
            admin.clone(),
            sessions.clone(),
            upstreams.clone(),
        );
        for (id, username, name) in DEMO_USERS {
            let profile = UserProfile {
                username: (*username).into(),
                name: (*name).into(),
                email: None,
            };
            let user = UserId::parse(*id).unwrap();
            users.upsert(&user, &profile, None).await.unwrap();
        }
        let chat = ChatService::new(provider.clone(), sessions, upstreams);

        seed_channel(&admin, &provider, &chat).await.unwrap();
        seed_channel(&admin, &provider, &chat)
            .await
            .expect("a second run finds the channel, its members and the greeting");

        for (id, _, _) in DEMO_USERS {
            let user = UserId::parse(*id).unwrap();
            let rooms = chat.rooms(&user).await.unwrap();
            let channels: Vec<_> = rooms.iter().filter(|r| r.name == DEMO_CHANNEL).collect();
            assert_eq!(
                channels.len(),
                1,
                "{id} is in #{DEMO_CHANNEL} once: {rooms:?}"
            );
            let last = channels[0].last_message.as_ref().expect("a last message");
            assert_eq!(
                (last.sender.id.as_str(), last.text.as_str()),
                (WELCOME_FROM, WELCOME_TEXT)
            );
            let unread = if *id == WELCOME_FROM { 0 } else { 1 };
            assert_eq!(
                channels[0].unread, unread,
                "{id}: one greeting, read by its author"
            );
            let page = chat
                .history(
                    &user,
                    &channels[0].id,
                    &HistoryQuery {
                        before: None,
                        after: None,
                        limit: 100,
                    },
                )
                .await
                .unwrap();
            let greetings = page
                .messages
                .iter()
                .filter(|m| m.text == WELCOME_TEXT)
                .count();
            assert_eq!(greetings, 1, "{id}: {:?}", page.messages);
        }
        sim.stop().await;
    }
}
