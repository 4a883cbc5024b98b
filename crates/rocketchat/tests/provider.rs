//! The Rocket.Chat adapter against the project's Rocket.Chat-compatible server, and against a
//! real Rocket.Chat when `ROCKETCHAT_URL` (+ `ROCKETCHAT_ADMIN_USER`, `ROCKETCHAT_ADMIN_PASSWORD`)
//! is set.

use std::time::Duration;

use bytes::Bytes;
use imgate_domain::model::{
    FileUpload, HistoryQuery, NewMessage, NewRoom, ProviderSession, RoomKind, Upserted, UserProfile,
};
use imgate_domain::ports::{
    DeploymentCheck, DeploymentReport, Finding, FindingStatus, ProviderAccounts,
    ProviderDeployment, ProviderError, ProviderFiles, ProviderMessages, ProviderRooms,
};
use imgate_domain::{MessageId, Password, UserId};
use imgate_rocketchat::{RocketChatConfig, RocketChatProvider};
use imgate_testkit::user;
use rocketchat_sim::{RestFault, RestFaultKind, Sim, SimConfig, Version};

const PASSWORD: &str = "user-password-1";

struct Fixture {
    provider: RocketChatProvider,
    admin: ProviderSession,
    // Keeps the embedded server alive for the test; `None` against a real server.
    sim: Option<Sim>,
    /// Makes names unique, so tests can share a real server.
    tag: String,
}

impl Fixture {
    async fn start(version: Version) -> Self {
        let tag = format!("t{}", rand_suffix());
        if let Ok(url) = std::env::var("ROCKETCHAT_URL") {
            let admin_user =
                std::env::var("ROCKETCHAT_ADMIN_USER").unwrap_or_else(|_| "admin".into());
            let admin_password = std::env::var("ROCKETCHAT_ADMIN_PASSWORD")
                .expect("ROCKETCHAT_ADMIN_PASSWORD with ROCKETCHAT_URL");
            let provider = RocketChatProvider::new(&RocketChatConfig::new(url)).unwrap();
            let admin = provider
                .login_admin(&admin_user, &Password::new(admin_password))
                .await
                .unwrap();
            return Self {
                provider,
                admin,
                sim: None,
                tag,
            };
        }
        eprintln!("ROCKETCHAT_URL is not set: the real-server run is skipped; using the project's Rocket.Chat-compatible server");
        let sim = Sim::start(SimConfig {
            version,
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let provider = RocketChatProvider::new(&RocketChatConfig::new(sim.http_url())).unwrap();
        let admin = provider
            .login_admin("admin", &Password::new("admin"))
            .await
            .unwrap();
        Self {
            provider,
            admin,
            sim: Some(sim),
            tag,
        }
    }

    fn id(&self, name: &str) -> UserId {
        user(&format!("{name}_{}", self.tag))
    }

    async fn mirror(&self, name: &str) -> (UserId, ProviderSession) {
        let id = self.id(name);
        let profile = UserProfile {
            username: name.into(),
            name: format!("{name} Example"),
            email: None,
        };
        self.provider
            .upsert_user(&self.admin, &id, &profile, &Password::new(PASSWORD))
            .await
            .unwrap();
        let session = self
            .provider
            .login_user(&id, &Password::new(PASSWORD))
            .await
            .unwrap();
        (id, session)
    }

    fn sim(&self) -> Option<&Sim> {
        self.sim.as_ref()
    }
}

fn rand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    u64::from(nanos) ^ u64::from(std::process::id())
}

fn text(s: &str) -> NewMessage {
    NewMessage {
        text: s.into(),
        thread_id: None,
        client_message_id: None,
    }
}

#[tokio::test]
async fn users_are_mirrored_idempotently_and_log_in_with_their_password() {
    let fx = Fixture::start(Version::V7).await;
    let id = fx.id("alice_x");
    let profile = UserProfile {
        username: "alice".into(),
        name: "Alice".into(),
        email: None,
    };
    let password = Password::new(PASSWORD);
    let (created, how) = fx
        .provider
        .upsert_user(&fx.admin, &id, &profile, &password)
        .await
        .unwrap();
    assert_eq!(how, Upserted::Created);
    assert_eq!(
        (
            created.id.clone(),
            created.username.as_str(),
            created.name.as_str()
        ),
        (id.clone(), "alice", "Alice")
    );
    let renamed = UserProfile {
        name: "Alice Liddell".into(),
        ..profile.clone()
    };
    let (updated, how) = fx
        .provider
        .upsert_user(&fx.admin, &id, &renamed, &password)
        .await
        .unwrap();
    assert_eq!(how, Upserted::Updated);
    assert_eq!(updated.provider_user_id, created.provider_user_id);
    assert_eq!(
        fx.provider.get_user(&fx.admin, &id).await.unwrap().name,
        "Alice Liddell"
    );

    let session = fx.provider.login_user(&id, &password).await.unwrap();
    assert_eq!(session.user_id, created.provider_user_id);
    assert_eq!(
        fx.provider
            .login_user(&id, &Password::new("wrong-password"))
            .await,
        Err(ProviderError::InvalidCredentials)
    );

    fx.provider.delete_user(&fx.admin, &id).await.unwrap();
    assert!(matches!(
        fx.provider.get_user(&fx.admin, &id).await,
        Err(ProviderError::NotFound(_))
    ));
    assert!(matches!(
        fx.provider.delete_user(&fx.admin, &id).await,
        Err(ProviderError::NotFound(_))
    ));
    assert_eq!(
        fx.provider.login_user(&id, &password).await,
        Err(ProviderError::InvalidCredentials)
    );
}

#[tokio::test]
async fn a_user_cannot_do_admin_work_and_a_logged_out_session_is_expired() {
    let fx = Fixture::start(Version::V7).await;
    let (_, alice) = fx.mirror("alice").await;
    let result = fx.provider.delete_user(&alice, &fx.id("nobody")).await;
    assert!(
        matches!(
            result,
            Err(ProviderError::Forbidden(_) | ProviderError::NotFound(_))
        ),
        "{result:?}"
    );
    fx.provider.logout(&alice).await.unwrap();
    assert_eq!(
        fx.provider.list_rooms(&alice).await,
        Err(ProviderError::SessionExpired)
    );
    // Logging out twice is not an error.
    fx.provider.logout(&alice).await.unwrap();
}

#[tokio::test]
async fn rooms_messages_and_unread_counts_work_end_to_end() {
    let fx = Fixture::start(Version::V7).await;
    let (alice_id, alice) = fx.mirror("alice").await;
    let (bob_id, bob) = fx.mirror("bob").await;

    let group = fx
        .provider
        .create_room(
            &alice,
            &NewRoom {
                kind: RoomKind::Group,
                name: format!("team-{}", fx.tag),
                members: vec![bob_id.clone()],
            },
        )
        .await
        .unwrap();
    assert_eq!(group.kind, RoomKind::Group);
    let taken = fx
        .provider
        .create_room(
            &alice,
            &NewRoom {
                kind: RoomKind::Group,
                name: format!("team-{}", fx.tag),
                members: vec![],
            },
        )
        .await;
    assert!(
        matches!(taken, Err(ProviderError::Conflict(_))),
        "{taken:?}"
    );
    let bad_name = fx
        .provider
        .create_room(
            &alice,
            &NewRoom {
                kind: RoomKind::Channel,
                name: "has spaces".into(),
                members: vec![],
            },
        )
        .await;
    assert!(
        matches!(bad_name, Err(ProviderError::Invalid { ref field, .. }) if field == "name"),
        "{bad_name:?}"
    );

    let (dm, created) = fx
        .provider
        .open_direct(&alice, std::slice::from_ref(&bob_id))
        .await
        .unwrap();
    assert!(created);
    assert_eq!(dm.kind, RoomKind::Direct);
    let (again, created_again) = fx
        .provider
        .open_direct(&alice, std::slice::from_ref(&bob_id))
        .await
        .unwrap();
    assert_eq!((again.id.clone(), created_again), (dm.id.clone(), false));

    let first = fx
        .provider
        .send_message(&alice, &group.id, &text("hello bob"))
        .await
        .unwrap();
    assert_eq!(first.sender.id, alice_id);
    assert_eq!(first.text, "hello bob");
    let retry = NewMessage {
        client_message_id: Some("client-1".into()),
        ..text("once only")
    };
    let once = fx
        .provider
        .send_message(&alice, &group.id, &retry)
        .await
        .unwrap();
    let twice = fx
        .provider
        .send_message(&alice, &group.id, &retry)
        .await
        .unwrap();
    assert_eq!(
        once.id, twice.id,
        "a retried clientMessageId must not post twice"
    );

    let rooms = fx.provider.list_rooms(&bob).await.unwrap();
    let seen = rooms
        .iter()
        .find(|r| r.id == group.id)
        .expect("bob sees the group");
    assert_eq!(seen.unread, 2);
    assert_eq!(
        seen.last_message.as_ref().map(|m| m.text.as_str()),
        Some("once only")
    );
    let unread = fx.provider.unread(&bob).await.unwrap();
    assert_eq!(unread.rooms.get(group.id.as_str()), Some(&2));
    assert!(unread.total >= 2);

    let edited = fx
        .provider
        .edit_message(&alice, &group.id, &first.id, "hello, bob")
        .await
        .unwrap();
    assert_eq!(edited.text, "hello, bob");
    assert!(edited.edited_at.is_some());
    fx.provider
        .delete_message(&alice, &group.id, &once.id)
        .await
        .unwrap();
    let gone = fx
        .provider
        .delete_message(
            &alice,
            &group.id,
            &MessageId::parse("NoSuchMessage1234").unwrap(),
        )
        .await;
    assert!(matches!(gone, Err(ProviderError::NotFound(_))), "{gone:?}");

    for n in 0..5 {
        fx.provider
            .send_message(&bob, &group.id, &text(&format!("page {n}")))
            .await
            .unwrap();
    }
    let page = fx
        .provider
        .history(
            &bob,
            &group.id,
            &HistoryQuery {
                before: None,
                after: None,
                limit: 3,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        page.messages
            .iter()
            .map(|m| m.text.as_str())
            .collect::<Vec<_>>(),
        ["page 4", "page 3", "page 2"]
    );
    assert!(page.has_more);
    let older = HistoryQuery {
        before: Some(page.messages[2].created_at),
        after: None,
        limit: 100,
    };
    let rest = fx.provider.history(&bob, &group.id, &older).await.unwrap();
    assert!(!rest.has_more);
    assert!(rest.messages.iter().any(|m| m.text == "hello, bob"));
    assert!(
        rest.messages.iter().all(|m| m.text != "once only"),
        "deleted messages stay deleted"
    );

    fx.provider.mark_read(&bob, &group.id).await.unwrap();
    let unread = fx.provider.unread(&bob).await.unwrap();
    assert_eq!(unread.rooms.get(group.id.as_str()), None);

    fx.provider
        .remove_member(&alice, &group.id, &bob_id)
        .await
        .unwrap();
    assert!(fx
        .provider
        .list_rooms(&bob)
        .await
        .unwrap()
        .iter()
        .all(|r| r.id != group.id));
    fx.provider
        .add_members(&alice, &group.id, std::slice::from_ref(&bob_id))
        .await
        .unwrap();
    fx.provider.leave_room(&bob, &group.id).await.unwrap();
    assert!(fx
        .provider
        .list_rooms(&bob)
        .await
        .unwrap()
        .iter()
        .all(|r| r.id != group.id));
}

async fn upload_and_download(version: Version) {
    let fx = Fixture::start(version).await;
    let (_, alice) = fx.mirror("alice").await;
    let (bob_id, bob) = fx.mirror("bob").await;
    let (dm, _) = fx.provider.open_direct(&alice, &[bob_id]).await.unwrap();
    let content = Bytes::from_static(b"hello, file\n");
    let upload = FileUpload {
        name: "notes.txt".into(),
        mime: "text/plain".into(),
        size: Some(content.len() as u64),
        body: Box::pin(futures::stream::iter([Ok(content.clone())])),
        text: Some("see attached".into()),
    };
    let message = fx
        .provider
        .upload_file(&alice, &dm.id, upload)
        .await
        .unwrap();
    assert_eq!(message.text, "see attached");
    let file = message.file.expect("the message carries the file");
    assert_eq!(
        (file.name.as_str(), file.size),
        ("notes.txt", content.len() as u64)
    );
    let download = fx
        .provider
        .download_file(&bob, &file.id, &file.name)
        .await
        .unwrap();
    assert!(download.mime.starts_with("text/plain"), "{}", download.mime);
    let bytes: Vec<Bytes> = futures::TryStreamExt::try_collect(download.body)
        .await
        .unwrap();
    assert_eq!(bytes.concat(), content.to_vec());
}

#[tokio::test]
async fn files_upload_and_download_on_7x() {
    upload_and_download(Version::V7).await;
}

#[tokio::test]
async fn files_upload_and_download_on_8x() {
    upload_and_download(Version::V8).await;
}

#[tokio::test]
async fn files_upload_and_download_on_6x() {
    upload_and_download(Version::V6).await;
}

#[tokio::test]
async fn faults_become_typed_errors() {
    let fx = Fixture::start(Version::V7).await;
    let Some(sim) = fx.sim() else {
        eprintln!("skipped: fault injection needs the embedded server");
        return;
    };
    let (_, alice) = fx.mirror("alice").await;
    for (kind, check) in [
        (
            RestFaultKind::InternalError,
            (|e: &ProviderError| matches!(e, ProviderError::Unavailable(_)))
                as fn(&ProviderError) -> bool,
        ),
        (RestFaultKind::BadGateway, |e| {
            matches!(e, ProviderError::Unavailable(_))
        }),
        (RestFaultKind::Garbage, |e| {
            matches!(e, ProviderError::BadResponse(_))
        }),
    ] {
        sim.add_rest_fault(RestFault {
            kind: kind.clone(),
            path_contains: Some("rooms.get".into()),
            times: Some(1),
        });
        let err = fx.provider.list_rooms(&alice).await.unwrap_err();
        assert!(check(&err), "{kind:?} gave {err:?}");
        fx.provider
            .list_rooms(&alice)
            .await
            .expect("the next call works again");
    }
    sim.revoke_tokens(&imgate_rocketchat::naming::username_for(&fx.id("alice")))
        .unwrap();
    assert_eq!(
        fx.provider.list_rooms(&alice).await,
        Err(ProviderError::SessionExpired)
    );
}

#[tokio::test]
async fn a_429_holds_its_endpoint_until_the_reset_without_calling_again() {
    let fx = Fixture::start(Version::V7).await;
    let Some(sim) = fx.sim() else {
        return;
    };
    let (_, alice) = fx.mirror("alice").await;
    let room = fx
        .provider
        .create_room(
            &alice,
            &NewRoom {
                kind: RoomKind::Channel,
                name: format!("held-{}", fx.tag),
                members: vec![],
            },
        )
        .await
        .unwrap();
    // One refusal whose window resets in a minute, far past the two seconds a call may wait.
    sim.add_rest_fault(RestFault {
        kind: RestFaultKind::TooManyRequests,
        path_contains: Some("rooms.get".into()),
        times: Some(1),
    });
    let limited = |r: Result<_, ProviderError>| match r {
        Err(ProviderError::RateLimited { retry_after }) => retry_after,
        other => panic!("{other:?}"),
    };
    let first = limited(fx.provider.list_rooms(&alice).await);
    assert!(first > Duration::from_secs(55) && first <= Duration::from_secs(61));
    let started = std::time::Instant::now();
    let second = limited(fx.provider.list_rooms(&alice).await);
    assert!(
        second <= first && started.elapsed() < Duration::from_millis(500),
        "answered from what the gateway knows, at once"
    );
    // The fault was for one call: the server was not asked again, or it would have answered.
    // Other endpoints are other buckets.
    fx.provider
        .send_message(&alice, &room.id, &text("hi"))
        .await
        .expect("another endpoint is not held");
}

/// Calls of one endpoint from many users at once against a limiter of 3 calls per 2 s, each
/// allowed to wait 3 s: some go at once, some after the reset, the rest give up with the wait
/// until the server's next reset; nothing is stored unless reported sent, nothing twice, and
/// the server sees no storm of refused calls.
#[tokio::test]
async fn calls_queue_behind_the_limiter_within_their_budget() {
    let fx = Fixture::start(Version::V7).await;
    let Some(sim) = fx.sim() else {
        return;
    };
    let provider = std::sync::Arc::new(
        RocketChatProvider::new(&RocketChatConfig {
            rate_limit_wait: Duration::from_secs(3),
            ..RocketChatConfig::new(sim.http_url())
        })
        .unwrap(),
    );
    let mut senders = Vec::new();
    let mut members = Vec::new();
    for name in ["alice", "bob", "carol", "dave"] {
        let (id, session) = fx.mirror(name).await;
        senders.push(session);
        members.push(id);
    }
    let room = provider
        .create_room(
            &senders[0],
            &NewRoom {
                kind: RoomKind::Channel,
                name: format!("burst-{}", fx.tag),
                members: members[1..].to_vec(),
            },
        )
        .await
        .unwrap()
        .id;
    sim.set_rate_limit(Some(rocketchat_sim::RateLimit {
        calls: 3,
        window: Duration::from_secs(2),
    }));
    let mut calls = Vec::new();
    for (i, session) in senders.iter().cycle().take(12).enumerate() {
        let provider = provider.clone();
        let session = session.clone();
        let room = room.clone();
        calls.push(tokio::spawn(async move {
            let sent = provider
                .send_message(&session, &room, &text(&format!("burst {i}")))
                .await;
            (i, sent, chrono::Utc::now().timestamp_millis())
        }));
    }
    let mut sent = Vec::new();
    for call in calls {
        let (i, result, at_ms) = call.await.unwrap();
        match result {
            Ok(message) => sent.push((i, message.id)),
            Err(ProviderError::RateLimited { retry_after }) => {
                let reset = sim
                    .rate_limit_reset("chat.sendMessage", "POST")
                    .expect("a window is running");
                let told = at_ms + retry_after.as_millis() as i64;
                assert!(
                    told >= reset && told <= reset + 200,
                    "call {i}: retry after {retry_after:?} from {at_ms} vs the server's reset {reset}"
                );
            }
            Err(other) => panic!("call {i}: {other:?}"),
        }
    }
    assert!(
        sent.len() >= 6,
        "two windows' worth went through: {}",
        sent.len()
    );
    let stored: Vec<String> = sim
        .messages(room.as_str())
        .iter()
        .filter_map(|m| {
            m["msg"]
                .as_str()
                .filter(|t| t.starts_with("burst "))
                .map(String::from)
        })
        .collect();
    let mut expected: Vec<String> = sent.iter().map(|(i, _)| format!("burst {i}")).collect();
    let mut stored_sorted = stored.clone();
    expected.sort();
    stored_sorted.sort();
    assert_eq!(
        stored_sorted, expected,
        "stored exactly the calls reported sent"
    );
    let refusals = sim.rate_limit_refusals("chat.sendMessage", "POST");
    assert!(
        refusals <= 12,
        "each call was refused at most once or so, not retried in a loop: {refusals}"
    );
}

#[tokio::test]
async fn a_dead_or_slow_provider_is_unavailable_quickly() {
    let fx = Fixture::start(Version::V7).await;
    let Some(sim) = fx.sim() else {
        return;
    };
    let (_, alice) = fx.mirror("alice").await;
    let config = RocketChatConfig {
        timeout: Duration::from_millis(500),
        ..RocketChatConfig::new(sim.http_url())
    };
    let impatient = RocketChatProvider::new(&config).unwrap();
    sim.set_delay(Some(Duration::from_secs(5)));
    let started = std::time::Instant::now();
    assert!(matches!(
        impatient.list_rooms(&alice).await,
        Err(ProviderError::Unavailable(_))
    ));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    sim.set_delay(None);
    sim.refuse_connections().await;
    assert!(matches!(
        impatient.list_rooms(&alice).await,
        Err(ProviderError::Unavailable(_))
    ));
    sim.accept_connections().await.unwrap();
    impatient.list_rooms(&alice).await.unwrap();
}

fn finding<'a>(report: &'a DeploymentReport, name: &str) -> &'a Finding {
    report
        .findings
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no {name} finding in {report:?}"))
}

#[tokio::test]
async fn the_deployment_check_reads_the_rate_limiter_without_changing_anything() {
    let fx = Fixture::start(Version::V7).await;
    let report = fx
        .provider
        .check_deployment(
            &fx.admin,
            &DeploymentCheck {
                fix: false,
                user_role: "user".into(),
            },
        )
        .await
        .unwrap();
    assert!(report.changes.is_empty());
    let limiter = finding(&report, "rate_limiter");
    if let Some(sim) = fx.sim() {
        // The project's server starts with its limiter off.
        assert_eq!(limiter.status, FindingStatus::Ok, "{}", limiter.message);
        sim.set_rate_limit(Some(rocketchat_sim::RateLimit::ROCKETCHAT_DEFAULT));
        let report = fx
            .provider
            .check_deployment(
                &fx.admin,
                &DeploymentCheck {
                    fix: false,
                    user_role: "user".into(),
                },
            )
            .await
            .unwrap();
        let limiter = finding(&report, "rate_limiter");
        assert_eq!(limiter.status, FindingStatus::Warning);
        assert!(limiter
            .message
            .contains("API_Enable_Rate_Limiter_Limit_Calls_Default = 10"));
        assert_eq!(
            finding(&report, "login_rate_limit").status,
            FindingStatus::Warning
        );
        assert_eq!(
            sim.permission_roles("api-bypass-rate-limit").unwrap(),
            ["admin", "bot", "app"],
            "a report changes nothing"
        );
    } else {
        eprintln!(
            "real server: rate_limiter is {:?}: {}",
            limiter.status, limiter.message
        );
    }
}

/// Changes the server's permissions, so it runs against the project's server only.
#[tokio::test]
async fn the_deployment_check_grants_the_bypass_to_the_mirrored_users_role() {
    let sim = Sim::start(SimConfig::like_default_server()).await.unwrap();
    sim.add_role("imgate-user");
    let provider = RocketChatProvider::new(&RocketChatConfig {
        user_role: "imgate-user".into(),
        ..RocketChatConfig::new(sim.http_url())
    })
    .unwrap();
    let admin = provider
        .login_admin("admin", &Password::new("admin"))
        .await
        .unwrap();
    let fix = DeploymentCheck {
        fix: true,
        user_role: "imgate-user".into(),
    };
    let report = provider.check_deployment(&admin, &fix).await.unwrap();
    assert_eq!(report.changes.len(), 1, "{report:?}");
    assert!(report.changes[0].contains("api-bypass-rate-limit"));
    assert_eq!(
        finding(&report, "rate_limiter").status,
        FindingStatus::Ok,
        "the findings describe the server after the change"
    );
    assert_eq!(
        sim.permission_roles("api-bypass-rate-limit").unwrap(),
        ["admin", "bot", "app", "imgate-user"]
    );
    let again = provider.check_deployment(&admin, &fix).await.unwrap();
    assert!(again.changes.is_empty(), "nothing left to change");

    // Mirrored users get the role, and with it calls the limiter does not count.
    let alice = user("alice_bypass");
    provider
        .upsert_user(
            &admin,
            &alice,
            &UserProfile {
                username: "alice".into(),
                name: "Alice".into(),
                email: None,
            },
            &Password::new(PASSWORD),
        )
        .await
        .unwrap();
    let session = provider
        .login_user(&alice, &Password::new(PASSWORD))
        .await
        .unwrap();
    for _ in 0..15 {
        provider.list_rooms(&session).await.unwrap();
    }
    assert_eq!(sim.rate_limit_refusals("rooms.get", "GET"), 0);

    // A role the server does not have, and an admin that may not change permissions.
    let report = provider
        .check_deployment(
            &admin,
            &DeploymentCheck {
                fix: true,
                user_role: "no-such-role".into(),
            },
        )
        .await
        .unwrap();
    let limiter = finding(&report, "rate_limiter");
    assert_eq!(limiter.status, FindingStatus::Warning);
    assert!(
        limiter.message.contains("has no role `no-such-role`"),
        "{}",
        limiter.message
    );
    let weak = sim.create_user("weak-admin", "pw").unwrap();
    let weak = ProviderSession {
        user_id: imgate_domain::ProviderUserId::parse(weak.id).unwrap(),
        token: imgate_domain::AuthToken::new(weak.token),
        issued_at: chrono::Utc::now(),
    };
    let report = provider
        .check_deployment(
            &weak,
            &DeploymentCheck {
                fix: true,
                user_role: "user".into(),
            },
        )
        .await
        .unwrap();
    assert!(report.changes.is_empty());
    let limiter = finding(&report, "rate_limiter");
    assert_eq!(limiter.status, FindingStatus::Warning);
    assert!(
        limiter.message.contains("view-privileged-setting")
            && limiter.message.contains("access-permissions"),
        "{}",
        limiter.message
    );
}
