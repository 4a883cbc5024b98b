//! The in-memory database and every state change, with the stream events each change fires.
//!
//! All methods are synchronous and run under one `std::sync::Mutex`, never held across an
//! `.await`. Events are queued in `pending` and delivered by the caller after unlocking.
//!
//! There is one [`Store`] behind one lock; its methods are split by concern into `impl Store`
//! blocks in the submodules: users, auth (login and tokens), permissions, rooms (with DMs and
//! membership), subscriptions, messages and events (the stream events queued for delivery).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::hub::{Event, Hub};
use crate::model::{Message, Room, RoomType, Subscription, Upload, User};
use permissions::{default_permissions, DEFAULT_ROLES};

mod auth;
mod events;
mod messages;
mod permissions;
mod rooms;
mod subscriptions;
mod users;

pub use auth::LoginSelector;
pub use events::{STREAM_NOTIFY_ROOM, STREAM_ROOM_MESSAGES, STREAM_USER};
pub use permissions::Permission;
pub use rooms::{room_not_found, NewRoom};
pub use users::NewUser;

/// The id of the seeded default channel.
pub const GENERAL: &str = "GENERAL";

/// The sim's database.
pub struct Store {
    pub base_url: String,
    hub: Arc<Hub>,
    pub users: HashMap<String, User>,
    by_username: HashMap<String, String>,
    by_email: HashMap<String, String>,
    pub rooms: HashMap<String, Room>,
    room_by_name: HashMap<String, String>,
    subs: HashMap<(String, String), Subscription>,
    user_rooms: HashMap<String, BTreeSet<String>>,
    removed_subs: Vec<(String, String, DateTime<Utc>)>,
    removed_rooms: Vec<(String, String, DateTime<Utc>)>,
    pub messages: HashMap<String, Message>,
    room_msgs: HashMap<String, Vec<String>>,
    pub uploads: HashMap<String, Upload>,
    pub settings: BTreeMap<String, Value>,
    /// Permission id -> the roles that hold it.
    pub permissions: BTreeMap<String, Permission>,
    /// Role ids (`_id` = name for the built-in ones).
    pub roles: BTreeSet<String>,
    /// Events to deliver once the lock is released.
    pub pending: Vec<Event>,
    /// Limit of DDP `sendMessage` per user (`RateLimiter.limitMethod` in the real server).
    pub ddp_send_limit: Option<crate::RateLimit>,
    /// User id -> (window start, calls) for `ddp_send_limit`.
    ddp_send_windows: HashMap<String, (DateTime<Utc>, u32)>,
    /// Token hash -> until when a passed 2FA check is remembered.
    two_factor_ok: HashMap<String, DateTime<Utc>>,
    last_ts: DateTime<Utc>,
}

fn default_settings() -> BTreeMap<String, Value> {
    let mut s = BTreeMap::new();
    // The real default is on; the sim starts with it off so tests are not throttled by accident.
    s.insert("API_Enable_Rate_Limiter".into(), json!(false));
    // Only read by a server running with NODE_ENV=development, which the sim never is.
    s.insert("API_Enable_Rate_Limiter_Dev".into(), json!(true));
    s.insert(
        "API_Enable_Rate_Limiter_Limit_Calls_Default".into(),
        json!(10),
    );
    s.insert(
        "API_Enable_Rate_Limiter_Limit_Time_Default".into(),
        json!(60000),
    );
    s.insert("API_Default_Count".into(), json!(50));
    s.insert("API_Upper_Count_Limit".into(), json!(100));
    s.insert("API_Allow_Infinite_Count".into(), json!(true));
    s.insert("Message_MaxAllowedSize".into(), json!(5000));
    s.insert("FileUpload_MaxFileSize".into(), json!(104_857_600));
    s.insert("FileUpload_ProtectFiles".into(), json!(true));
    s.insert("FileUpload_Restrict_to_room_members".into(), json!(true));
    s.insert("Accounts_LoginExpiration".into(), json!(90));
    s.insert("Site_Url".into(), json!(""));
    // The real default is on; the sim starts with it off so long demos never hit it by surprise.
    s.insert(
        "Accounts_TwoFactorAuthentication_Enabled".into(),
        json!(false),
    );
    s.insert(
        "Accounts_TwoFactorAuthentication_RememberFor".into(),
        json!(1800),
    );
    s
}

impl Store {
    /// An empty database with `#general`, `rocket.cat` and the admin account.
    pub fn new(hub: Arc<Hub>, admin: (&str, &str)) -> Self {
        let now = Utc::now();
        let mut store = Store {
            base_url: String::new(),
            hub,
            users: HashMap::new(),
            by_username: HashMap::new(),
            by_email: HashMap::new(),
            rooms: HashMap::new(),
            room_by_name: HashMap::new(),
            subs: HashMap::new(),
            user_rooms: HashMap::new(),
            removed_subs: Vec::new(),
            removed_rooms: Vec::new(),
            messages: HashMap::new(),
            room_msgs: HashMap::new(),
            uploads: HashMap::new(),
            settings: default_settings(),
            permissions: default_permissions(now),
            roles: DEFAULT_ROLES.iter().map(|r| r.to_string()).collect(),
            pending: Vec::new(),
            two_factor_ok: HashMap::new(),
            ddp_send_limit: None,
            ddp_send_windows: HashMap::new(),
            last_ts: now,
        };
        store.rooms.insert(
            GENERAL.into(),
            Room {
                id: GENERAL.into(),
                t: RoomType::Channel,
                name: Some("general".into()),
                fname: Some("general".into()),
                creator: None,
                ts: now,
                msgs: 0,
                lm: None,
                last_message: None,
                updated_at: now,
                read_only: false,
                default: true,
                sys_mes: true,
                topic: None,
                usernames: Vec::new(),
                members: BTreeSet::new(),
            },
        );
        store.room_by_name.insert("general".into(), GENERAL.into());
        let bot = NewUser {
            username: "rocket.cat".into(),
            email: "rocket.cat@rocket.chat".into(),
            password: None,
            name: "Rocket.Cat".into(),
            active: true,
            roles: Some(vec!["bot".into()]),
            verified: true,
            ..NewUser::default()
        };
        let _ = store.insert_user(bot, Some("rocket.cat".into()));
        let admin_user = NewUser {
            username: admin.0.into(),
            email: format!("{}@example.com", admin.0),
            password: Some(admin.1.into()),
            name: "Administrator".into(),
            active: true,
            roles: Some(vec!["admin".into(), "user".into()]),
            verified: true,
            join_default_channels: true,
            ..NewUser::default()
        };
        if let Err(error) = store.create_user(admin_user, None) {
            tracing::warn!(error = %error, "seeding the admin account failed");
        }
        store.pending.clear();
        store
    }

    /// A strictly increasing timestamp, so message order is total even within one millisecond.
    fn now(&mut self) -> DateTime<Utc> {
        let mut now = Utc::now();
        if now <= self.last_ts {
            now = self.last_ts + chrono::Duration::milliseconds(1);
        }
        self.last_ts = now;
        now
    }

    pub fn setting_i64(&self, id: &str, default: i64) -> i64 {
        self.settings
            .get(id)
            .and_then(Value::as_i64)
            .unwrap_or(default)
    }

    pub fn setting_bool(&self, id: &str) -> bool {
        self.settings
            .get(id)
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
}

/// Fixtures shared by the unit tests of the store modules.
#[cfg(test)]
mod fixtures {
    use super::*;

    pub(super) fn store() -> Store {
        Store::new(Arc::new(Hub::default()), ("admin", "admin"))
    }

    pub(super) fn user(s: &mut Store, name: &str) -> String {
        s.create_user(
            NewUser {
                username: name.into(),
                email: format!("{name}@x.io"),
                password: Some("pw".into()),
                name: name.into(),
                active: true,
                join_default_channels: true,
                ..NewUser::default()
            },
            None,
        )
        .unwrap()
    }
}
