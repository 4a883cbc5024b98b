//! The in-memory database and every state change, with the stream events each change fires.
//!
//! All methods are synchronous and run under one `std::sync::Mutex`, never held across an
//! `.await`. Events are queued in `pending` and delivered by the caller after unlocking.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::error::ApiError;
use crate::hub::{Event, Hub};
use crate::ids::{hash_token, password_digest, random_id, random_token};
use crate::model::{
    Dates, LoginToken, Message, Room, RoomType, Subscription, Upload, User, UserRef,
};

/// Meteor's `MAX_RESUME_LOGIN_TOKENS` default.
const MAX_LOGIN_TOKENS: usize = 50;
/// The id of the seeded default channel.
pub const GENERAL: &str = "GENERAL";

pub const STREAM_USER: &str = "stream-notify-user";
pub const STREAM_ROOM_MESSAGES: &str = "stream-room-messages";
pub const STREAM_NOTIFY_ROOM: &str = "stream-notify-room";

/// Input of `users.create`.
#[derive(Debug, Default, Clone)]
pub struct NewUser {
    pub username: String,
    pub email: String,
    pub password: Option<String>,
    pub name: String,
    pub active: bool,
    pub roles: Option<Vec<String>>,
    pub verified: bool,
    pub join_default_channels: bool,
    pub require_password_change: bool,
    pub custom_fields: Option<Value>,
    pub nickname: Option<String>,
}

/// Input of `channels.create` / `groups.create`.
pub struct NewRoom<'a> {
    pub t: RoomType,
    pub name: &'a str,
    /// Member usernames.
    pub members: &'a [String],
    pub read_only: bool,
    pub exclude_self: bool,
    pub topic: Option<String>,
}

/// Who a login names.
#[derive(Debug, Clone)]
pub enum LoginSelector {
    Username(String),
    Email(String),
    /// `user` field: e-mail when it contains `@`, else username.
    Either(String),
}

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

/// The permissions the sim checks and the roles Rocket.Chat grants them to on a fresh server
/// (its permission seed list); `permissions.update` changes them at run time.
const DEFAULT_PERMISSIONS: &[(&str, &[&str])] = &[
    ("access-permissions", &["admin"]),
    ("add-user-to-any-c-room", &["admin"]),
    ("add-user-to-any-p-room", &[]),
    ("add-user-to-joined-room", &["admin", "owner", "moderator"]),
    ("api-bypass-rate-limit", &["admin", "bot", "app"]),
    ("assign-roles", &["admin"]),
    ("create-c", &["admin", "user", "bot", "app"]),
    ("create-d", &["admin", "user", "bot", "app"]),
    ("create-p", &["admin", "user", "bot", "app"]),
    ("create-personal-access-tokens", &["admin", "user"]),
    ("create-user", &["admin"]),
    ("delete-c", &["admin", "owner"]),
    ("delete-message", &["admin", "owner", "moderator"]),
    ("delete-p", &["admin", "owner"]),
    ("delete-user", &["admin"]),
    ("edit-message", &["admin", "owner", "moderator"]),
    ("edit-other-user-active-status", &["admin"]),
    ("edit-other-user-info", &["admin"]),
    ("edit-other-user-password", &["admin"]),
    ("edit-privileged-setting", &["admin"]),
    ("preview-c-room", &["admin", "user", "bot", "app"]),
    ("remove-user", &["admin", "owner", "moderator"]),
    ("send-many-messages", &["admin", "bot", "app"]),
    ("view-c-room", &["admin", "user", "bot", "app"]),
    ("view-d-room", &["admin", "user", "bot", "app"]),
    ("view-full-other-user-info", &["admin"]),
    ("view-p-room", &["admin", "user", "bot", "app"]),
    ("view-privileged-setting", &["admin"]),
    ("view-room-administration", &["admin"]),
    ("view-statistics", &["admin"]),
];

/// The roles of a fresh server (Rocket.Chat seeds them with `_id` = name).
const DEFAULT_ROLES: &[&str] = &[
    "admin",
    "moderator",
    "leader",
    "owner",
    "user",
    "bot",
    "app",
    "guest",
    "anonymous",
    "livechat-agent",
    "livechat-manager",
    "livechat-monitor",
];

/// One entry of the permissions collection.
#[derive(Clone, Debug)]
pub struct Permission {
    /// Roles holding the permission.
    pub roles: Vec<String>,
    pub updated_at: DateTime<Utc>,
}

fn default_permissions(now: DateTime<Utc>) -> BTreeMap<String, Permission> {
    DEFAULT_PERMISSIONS
        .iter()
        .map(|(id, roles)| {
            let roles = roles.iter().map(|r| r.to_string()).collect();
            (
                id.to_string(),
                Permission {
                    roles,
                    updated_at: now,
                },
            )
        })
        .collect()
}

/// `[0-9a-zA-Z-_.]+`, Rocket.Chat's default user and channel name rule.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
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

    // ----------------------------------------------------------------------------- users

    pub fn user(&self, uid: &str) -> Result<&User, ApiError> {
        self.users.get(uid).ok_or(ApiError::NotLoggedIn)
    }

    pub fn uid_by_username(&self, username: &str) -> Option<&String> {
        self.by_username.get(&username.to_lowercase())
    }

    pub fn user_by_username(&self, username: &str) -> Option<&User> {
        self.uid_by_username(username)
            .and_then(|id| self.users.get(id))
    }

    pub fn user_by_email(&self, email: &str) -> Option<&User> {
        self.by_email
            .get(&email.to_lowercase())
            .and_then(|id| self.users.get(id))
    }

    /// Whether a user holds a permission, globally or through their roles in `rid`.
    pub fn has_permission(&self, uid: &str, permission: &str, rid: Option<&str>) -> bool {
        // A permission missing from the table is an admin's, as the sim always treated it.
        let admin_only = ["admin".to_string()];
        let allowed: &[String] = self
            .permissions
            .get(permission)
            .map_or(&admin_only, |p| &p.roles);
        let Some(user) = self.users.get(uid) else {
            return false;
        };
        if user.roles.iter().any(|r| allowed.contains(r)) {
            return true;
        }
        if let Some(rid) = rid {
            if let Some(sub) = self.subs.get(&(uid.to_string(), rid.to_string())) {
                return sub.roles.iter().any(|r| allowed.contains(r));
            }
        }
        false
    }

    /// The permissions as `permissions.listAll` renders them, changed after `since` if given.
    pub fn permissions_json(&self, since: Option<DateTime<Utc>>) -> Vec<Value> {
        self.permissions
            .iter()
            .filter(|(_, p)| since.is_none_or(|since| p.updated_at > since))
            .map(|(id, p)| json!({"_id": id, "roles": p.roles, "_updatedAt": crate::model::iso(p.updated_at)}))
            .collect()
    }

    /// `permissions.update`: replaces the roles of each listed permission, all or nothing.
    pub fn set_permission_roles(
        &mut self,
        changes: &[(String, Vec<String>)],
    ) -> Result<(), ApiError> {
        if changes
            .iter()
            .any(|(id, _)| !self.permissions.contains_key(id))
        {
            return Err(ApiError::Typed {
                error: "Invalid permission".into(),
                error_type: "error-invalid-permission".into(),
            });
        }
        if changes
            .iter()
            .flat_map(|(_, roles)| roles)
            .any(|role| !self.roles.contains(role))
        {
            return Err(ApiError::Typed {
                error: "Invalid role".into(),
                error_type: "error-invalid-role".into(),
            });
        }
        let now = self.now();
        for (id, roles) in changes {
            if let Some(permission) = self.permissions.get_mut(id) {
                permission.roles = roles.clone();
                permission.updated_at = now;
            }
        }
        Ok(())
    }

    fn insert_user(&mut self, new: NewUser, id: Option<String>) -> Result<String, ApiError> {
        let now = self.now();
        let id = id.unwrap_or_else(random_id);
        let user = User {
            id: id.clone(),
            username: new.username.clone(),
            name: new.name,
            emails: vec![(new.email.clone(), new.verified)],
            password_digest: new.password.as_deref().map(password_digest),
            active: new.active,
            roles: new.roles.unwrap_or_else(|| vec!["user".into()]),
            tokens: Vec::new(),
            created_at: now,
            updated_at: now,
            user_type: if new.username == "rocket.cat" {
                "bot".into()
            } else {
                "user".into()
            },
            status: "offline".into(),
            utc_offset: 0,
            custom_fields: new.custom_fields,
            require_password_change: new.require_password_change,
            nickname: new.nickname.filter(|n| !n.trim().is_empty()),
        };
        self.by_username
            .insert(new.username.to_lowercase(), id.clone());
        self.by_email.insert(new.email.to_lowercase(), id.clone());
        self.users.insert(id.clone(), user);
        Ok(id)
    }

    /// `users.create`; `by` is the caller (`None` for seeding through the library).
    pub fn create_user(&mut self, new: NewUser, by: Option<&str>) -> Result<String, ApiError> {
        if let Some(by) = by {
            // saveUser throws this Meteor error (400), the route has no permission list.
            if !self.has_permission(by, "create-user", None) {
                return Err(ApiError::meteor_with(
                    "error-action-not-allowed",
                    "Adding user is not allowed",
                    json!({"method": "insertOrUpdateUser", "action": "Adding_user"}),
                ));
            }
        }
        if new.password.as_deref().unwrap_or("").is_empty() {
            return Err(ApiError::meteor(
                "error-the-field-is-required",
                "The field Password is required",
            ));
        }
        if !valid_name(&new.username) {
            return Err(ApiError::meteor_with(
                "error-input-is-not-a-valid-field",
                format!("{} is not a valid username", new.username),
                json!({"method": "insertOrUpdateUser", "input": new.username, "field": "Username"}),
            ));
        }
        if self.uid_by_username(&new.username).is_some() {
            return Err(field_unavailable(&new.username));
        }
        if self.user_by_email(&new.email).is_some() {
            return Err(field_unavailable(&new.email));
        }
        if let Some(roles) = &new.roles {
            if roles.iter().any(|r| !self.roles.contains(r)) {
                return Err(ApiError::meteor(
                    "error-action-not-allowed",
                    "The field Roles consist invalid role id",
                ));
            }
        }
        let join = new.join_default_channels;
        let uid = self.insert_user(new, None)?;
        if join {
            let defaults: Vec<String> = self
                .rooms
                .values()
                .filter(|r| r.default)
                .map(|r| r.id.clone())
                .collect();
            for rid in defaults {
                self.add_member(&rid, &uid, None, false)?;
            }
        }
        Ok(uid)
    }

    /// `users.update`.
    pub fn update_user(
        &mut self,
        by: &str,
        uid: &str,
        data: &Map<String, Value>,
    ) -> Result<(), ApiError> {
        if by != uid && !self.has_permission(by, "edit-other-user-info", None) {
            return Err(ApiError::meteor_with(
                "error-action-not-allowed",
                "Editing user is not allowed",
                json!({"method": "insertOrUpdateUser", "action": "Editing_user"}),
            ));
        }
        if !self.users.contains_key(uid) {
            return Err(ApiError::meteor("error-invalid-user", "Invalid user"));
        }
        if let Some(Value::String(username)) = data.get("username") {
            if !valid_name(username) {
                return Err(ApiError::meteor(
                    "error-input-is-not-a-valid-field",
                    format!("{username} is not a valid username"),
                ));
            }
            if self.uid_by_username(username).is_some_and(|o| o != uid) {
                return Err(field_unavailable(username));
            }
        }
        if let Some(Value::String(email)) = data.get("email") {
            if self.user_by_email(email).is_some_and(|o| o.id != uid) {
                return Err(field_unavailable(email));
            }
        }
        if data.contains_key("roles") && !self.has_permission(by, "assign-roles", None) {
            return Err(ApiError::meteor(
                "error-action-not-allowed",
                "Assign roles is not allowed",
            ));
        }
        let now = self.now();
        let user = self.users.get_mut(uid).ok_or(ApiError::Internal)?;
        let old_username = user.username.clone();
        let old_email = user.emails.first().map(|e| e.0.clone());
        if let Some(Value::String(name)) = data.get("name") {
            user.name = name.clone();
        }
        if let Some(Value::String(username)) = data.get("username") {
            user.username = username.clone();
        }
        if let Some(Value::String(email)) = data.get("email") {
            let verified = data
                .get("verified")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            user.emails = vec![(email.clone(), verified)];
        } else if let Some(verified) = data.get("verified").and_then(Value::as_bool) {
            if let Some(e) = user.emails.first_mut() {
                e.1 = verified;
            }
        }
        if let Some(Value::String(pw)) = data.get("password") {
            user.password_digest = Some(password_digest(pw));
        }
        if let Some(active) = data.get("active").and_then(Value::as_bool) {
            user.active = active;
        }
        if let Some(Value::Array(roles)) = data.get("roles") {
            user.roles = roles
                .iter()
                .filter_map(|r| r.as_str().map(String::from))
                .collect();
        }
        if let Some(cf) = data.get("customFields") {
            user.custom_fields = Some(cf.clone());
        }
        if let Some(b) = data.get("requirePasswordChange").and_then(Value::as_bool) {
            user.require_password_change = b;
        }
        if let Some(Value::String(nickname)) = data.get("nickname") {
            user.nickname = Some(nickname.trim().to_owned()).filter(|n| !n.is_empty());
        }
        user.updated_at = now;
        let new_username = user.username.clone();
        let new_email = user.emails.first().map(|e| e.0.clone());
        let deactivated = !user.active;
        if old_username != new_username {
            self.by_username.remove(&old_username.to_lowercase());
            self.by_username
                .insert(new_username.to_lowercase(), uid.into());
        }
        if old_email != new_email {
            if let Some(e) = old_email {
                self.by_email.remove(&e.to_lowercase());
            }
            if let Some(e) = new_email {
                self.by_email.insert(e.to_lowercase(), uid.into());
            }
        }
        if deactivated {
            self.revoke_tokens(uid);
        }
        Ok(())
    }

    /// `users.setActiveStatus`.
    pub fn set_active(&mut self, by: &str, uid: &str, active: bool) -> Result<(), ApiError> {
        if !self.has_permission(by, "edit-other-user-active-status", None) {
            return Err(ApiError::Unauthorized);
        }
        let now = self.now();
        let user = self
            .users
            .get_mut(uid)
            .ok_or_else(|| ApiError::meteor("error-invalid-user", "Invalid user"))?;
        user.active = active;
        user.updated_at = now;
        if !active {
            self.revoke_tokens(uid);
        }
        Ok(())
    }

    /// `users.delete`: removes the user and their subscriptions.
    pub fn delete_user(
        &mut self,
        by: &str,
        uid: &str,
        confirm_relinquish: bool,
    ) -> Result<(), ApiError> {
        if !self.has_permission(by, "delete-user", None) {
            return Err(ApiError::Unauthorized);
        }
        let user = self.users.get(uid).ok_or_else(|| {
            ApiError::meteor(
                "error-invalid-user",
                "The required \"userId\" or \"username\" param provided does not match any users",
            )
        })?;
        if user.roles.iter().any(|r| r == "admin") {
            let admins = self
                .users
                .values()
                .filter(|u| u.roles.iter().any(|r| r == "admin"))
                .count();
            if admins <= 1 {
                return Err(ApiError::meteor(
                    "error-action-not-allowed",
                    "Leaving the app without admins is not allowed",
                ));
            }
        }
        let rooms: Vec<String> = self
            .user_rooms
            .get(uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        let mut last_owner_of = Vec::new();
        for rid in &rooms {
            let Some(room) = self.rooms.get(rid) else {
                continue;
            };
            if room.t == RoomType::Direct {
                continue;
            }
            let owners: Vec<&String> = room
                .members
                .iter()
                .filter(|m| {
                    self.subs
                        .get(&((*m).clone(), rid.clone()))
                        .is_some_and(|s| s.roles.iter().any(|r| r == "owner"))
                })
                .collect();
            if owners.len() == 1 && owners[0] == uid && room.members.len() > 1 {
                last_owner_of.push(room.name.clone().unwrap_or_default());
            }
        }
        if !last_owner_of.is_empty() && !confirm_relinquish {
            return Err(ApiError::meteor_with(
                "user-last-owner",
                "",
                json!({"shouldChangeOwner": last_owner_of, "shouldBeRemoved": []}),
            ));
        }
        for rid in rooms {
            self.drop_subscription(&rid, uid);
        }
        let user = self.users.remove(uid).ok_or(ApiError::Internal)?;
        self.by_username.remove(&user.username.to_lowercase());
        for (e, _) in &user.emails {
            self.by_email.remove(&e.to_lowercase());
        }
        let hashes: Vec<String> = user.tokens.iter().map(|t| t.hashed.clone()).collect();
        self.hub.close_tokens(&hashes);
        Ok(())
    }

    // ------------------------------------------------------------------------------ auth

    /// Password login; returns `(uid, token)`.
    pub fn login_password(
        &mut self,
        who: &LoginSelector,
        digest: &str,
    ) -> Result<(String, String), ApiError> {
        let user = match who {
            LoginSelector::Username(u) => self.user_by_username(u),
            LoginSelector::Email(e) => self.user_by_email(e),
            LoginSelector::Either(x) if x.contains('@') => self.user_by_email(x),
            LoginSelector::Either(x) => self.user_by_username(x),
        };
        let Some(user) = user else {
            return Err(ApiError::LoginFailed {
                error: json!("Unauthorized"),
                message: "Unauthorized".into(),
            });
        };
        if user.password_digest.as_deref() != Some(&digest.to_lowercase()) {
            return Err(ApiError::LoginFailed {
                error: json!(403),
                message: "Incorrect password".into(),
            });
        }
        if !user.active {
            return Err(ApiError::LoginFailed {
                error: json!("error-user-is-not-activated"),
                message: "User is not activated".into(),
            });
        }
        let uid = user.id.clone();
        let token = self.issue_token(&uid);
        Ok((uid, token))
    }

    /// Adds a login token, pruning the oldest beyond 50.
    pub fn issue_token(&mut self, uid: &str) -> String {
        let token = random_token();
        let now = self.now();
        if let Some(user) = self.users.get_mut(uid) {
            user.tokens.push(LoginToken {
                hashed: hash_token(&token),
                when: now,
                name: None,
                bypass_two_factor: false,
            });
            let logins = user.tokens.iter().filter(|t| t.name.is_none()).count();
            if logins > MAX_LOGIN_TOKENS {
                // Oldest login tokens go first; personal access tokens are kept.
                let mut excess = logins - MAX_LOGIN_TOKENS;
                let mut pruned = Vec::new();
                user.tokens.retain(|t| {
                    if excess > 0 && t.name.is_none() {
                        excess -= 1;
                        pruned.push(t.hashed.clone());
                        false
                    } else {
                        true
                    }
                });
                self.hub.close_tokens(&pruned);
            }
        }
        token
    }

    /// `users.generatePersonalAccessToken`: a named token that never expires.
    pub fn generate_pat(
        &mut self,
        uid: &str,
        name: &str,
        bypass_two_factor: bool,
    ) -> Result<String, ApiError> {
        if !self.has_permission(uid, "create-personal-access-tokens", None) {
            return Err(ApiError::meteor("not-authorized", "Not Authorized"));
        }
        let now = self.now();
        let user = self.users.get_mut(uid).ok_or(ApiError::NotLoggedIn)?;
        if user.tokens.iter().any(|t| t.name.as_deref() == Some(name)) {
            return Err(ApiError::meteor(
                "error-token-already-exists",
                "A token with this name already exists",
            ));
        }
        let token = random_token();
        user.tokens.push(LoginToken {
            hashed: hash_token(&token),
            when: now,
            name: Some(name.to_string()),
            bypass_two_factor,
        });
        Ok(token)
    }

    /// `users.removePersonalAccessToken`.
    pub fn remove_pat(&mut self, uid: &str, name: &str) -> Result<(), ApiError> {
        let user = self.users.get_mut(uid).ok_or(ApiError::NotLoggedIn)?;
        let Some(pos) = user
            .tokens
            .iter()
            .position(|t| t.name.as_deref() == Some(name))
        else {
            return Err(ApiError::meteor(
                "error-token-does-not-exists",
                "Token does not exist",
            ));
        };
        let removed = user.tokens.remove(pos);
        self.hub.close_tokens(&[removed.hashed]);
        Ok(())
    }

    /// `users.getPersonalAccessTokens`.
    pub fn list_pats(&self, uid: &str) -> Vec<Value> {
        let Some(user) = self.users.get(uid) else {
            return Vec::new();
        };
        user.tokens
            .iter()
            .filter_map(|t| {
                let name = t.name.as_ref()?;
                let last = &t.hashed[t.hashed.len().saturating_sub(6)..];
                Some(json!({"name": name, "createdAt": crate::model::iso(t.when), "lastTokenPart": last, "bypassTwoFactor": t.bypass_two_factor}))
            })
            .collect()
    }

    /// `channels.delete` / `groups.delete`: drops the room, its subscriptions and messages.
    pub fn delete_room(&mut self, by: &str, rid: &str) -> Result<(), ApiError> {
        let room = self
            .rooms
            .get(rid)
            .ok_or_else(|| room_not_found(RoomType::Channel))?;
        let perm = if room.t == RoomType::Group {
            "delete-p"
        } else {
            "delete-c"
        };
        if !self.has_permission(by, perm, Some(rid)) {
            return Err(ApiError::Unauthorized);
        }
        let members: Vec<String> = room.members.iter().cloned().collect();
        for uid in members {
            self.drop_subscription(rid, &uid);
        }
        if let Some(room) = self.rooms.remove(rid) {
            if let Some(name) = room.name {
                self.room_by_name.remove(&name);
            }
        }
        for id in self.room_msgs.remove(rid).unwrap_or_default() {
            self.messages.remove(&id);
        }
        Ok(())
    }

    /// Resume login: the user owning this token, if active.
    pub fn login_resume(&self, token: &str) -> Result<&User, ApiError> {
        let hashed = hash_token(token);
        let user = self
            .users
            .values()
            .find(|u| u.tokens.iter().any(|t| t.hashed == hashed))
            .ok_or_else(|| ApiError::LoginFailed {
                error: json!(403),
                message: "You've been logged out by the server. Please log in again.".into(),
            })?;
        if !user.active {
            return Err(ApiError::LoginFailed {
                error: json!("error-user-is-not-activated"),
                message: "User is not activated".into(),
            });
        }
        Ok(user)
    }

    /// Header authentication: the user id if the token belongs to it.
    pub fn authenticate(&self, uid: &str, token: &str) -> Option<&User> {
        let hashed = hash_token(token);
        self.users
            .get(uid)
            .filter(|u| u.tokens.iter().any(|t| t.hashed == hashed))
    }

    /// The `twoFactorRequired` gate with the password fallback (reference §1.5).
    pub fn two_factor_check(
        &mut self,
        uid: &str,
        token: &str,
        code: Option<&str>,
        method: Option<&str>,
    ) -> Result<(), ApiError> {
        if !self.setting_bool("Accounts_TwoFactorAuthentication_Enabled") {
            return Ok(());
        }
        let Some(user) = self.users.get(uid) else {
            return Ok(());
        };
        let Some(digest) = user.password_digest.clone() else {
            return Ok(());
        };
        let now = Utc::now();
        let remember = chrono::Duration::seconds(
            self.setting_i64("Accounts_TwoFactorAuthentication_RememberFor", 1800)
                .clamp(0, 10 * 365 * 86_400),
        );
        if now - user.created_at < remember {
            return Ok(());
        }
        let hashed = hash_token(token);
        if self
            .two_factor_ok
            .get(&hashed)
            .is_some_and(|until| *until > now)
        {
            return Ok(());
        }
        let Some(code) = code.filter(|c| !c.is_empty()) else {
            return Err(ApiError::meteor_with(
                "totp-required",
                "TOTP Required",
                json!({"method": "password", "availableMethods": []}),
            ));
        };
        if method.unwrap_or("password") != "password" || code.to_lowercase() != digest {
            return Err(ApiError::meteor_with(
                "totp-invalid",
                "TOTP Invalid",
                json!({"method": "password"}),
            ));
        }
        self.two_factor_ok.insert(hashed, now + remember);
        Ok(())
    }

    /// Counts one DDP `sendMessage` of a user against its limit.
    pub fn ddp_send_allowed(&mut self, uid: &str) -> Result<(), ApiError> {
        let Some(limit) = self.ddp_send_limit else {
            return Ok(());
        };
        if self.has_permission(uid, "send-many-messages", None) {
            return Ok(());
        }
        let now = Utc::now();
        let window =
            chrono::Duration::from_std(limit.window).unwrap_or(chrono::Duration::seconds(1));
        let entry = self
            .ddp_send_windows
            .entry(uid.to_string())
            .or_insert((now, 0));
        if now - entry.0 >= window {
            *entry = (now, 0);
        }
        entry.1 += 1;
        if entry.1 > limit.calls {
            let reset_ms = (entry.0 + window - now).num_milliseconds().max(0);
            let seconds = (reset_ms as u64).div_ceil(1000);
            return Err(ApiError::meteor_with(
                "error-too-many-requests",
                format!("Error, too many requests. Please slow down. You must wait {seconds} seconds before trying again."),
                json!({"timeToReset": reset_ms, "seconds": seconds}),
            ));
        }
        Ok(())
    }

    /// When a token was issued, for `tokenExpires`.
    pub fn token_issued(&self, uid: &str, token: &str) -> Option<DateTime<Utc>> {
        let hashed = hash_token(token);
        self.users
            .get(uid)?
            .tokens
            .iter()
            .find(|t| t.hashed == hashed)
            .map(|t| t.when)
    }

    /// Removes one token (REST/DDP `logout`).
    pub fn remove_token(&mut self, uid: &str, token: &str) {
        let hashed = hash_token(token);
        if let Some(user) = self.users.get_mut(uid) {
            user.tokens.retain(|t| t.hashed != hashed);
        }
        self.hub.close_tokens(&[hashed]);
    }

    /// Removes every token of a user; their DDP sockets are closed as Meteor does.
    pub fn revoke_tokens(&mut self, uid: &str) -> usize {
        let Some(user) = self.users.get_mut(uid) else {
            return 0;
        };
        let hashes: Vec<String> = user.tokens.drain(..).map(|t| t.hashed).collect();
        self.hub.close_tokens(&hashes);
        hashes.len()
    }

    // ----------------------------------------------------------------------------- rooms

    pub fn room(&self, rid: &str) -> Option<&Room> {
        self.rooms.get(rid)
    }

    pub fn room_by_name(&self, name: &str) -> Option<&Room> {
        self.room_by_name
            .get(name)
            .and_then(|id| self.rooms.get(id))
    }

    pub fn subscription(&self, uid: &str, rid: &str) -> Option<&Subscription> {
        self.subs.get(&(uid.to_string(), rid.to_string()))
    }

    pub fn is_member(&self, uid: &str, rid: &str) -> bool {
        self.subs.contains_key(&(uid.to_string(), rid.to_string()))
    }

    /// Read access: members, or anyone for public channels (`preview-c-room`).
    pub fn can_access(&self, uid: &str, room: &Room) -> bool {
        room.members.contains(uid)
            || (room.t == RoomType::Channel && self.has_permission(uid, "preview-c-room", None))
    }

    /// The rooms a user holds subscriptions to.
    pub fn rooms_of(&self, uid: &str) -> Vec<String> {
        self.user_rooms
            .get(uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// `channels.create` / `groups.create`.
    pub fn create_room(&mut self, creator: &str, spec: NewRoom<'_>) -> Result<String, ApiError> {
        let NewRoom {
            t,
            name,
            members,
            read_only,
            exclude_self,
            topic,
        } = spec;
        let perm = if t == RoomType::Channel {
            "create-c"
        } else {
            "create-p"
        };
        if !self.has_permission(creator, perm, None) {
            return Err(ApiError::Forbidden);
        }
        if !valid_name(name) {
            return Err(ApiError::meteor_with(
                "error-invalid-room-name",
                format!("{name} is not a valid room name"),
                json!({"method": "createRoom", "room_name": name}),
            ));
        }
        if self.room_by_name.contains_key(name) {
            return Err(ApiError::meteor_with(
                "error-duplicate-channel-name",
                format!("A channel with name '{name}' exists"),
                json!({"method": "createRoom", "channel_name": name}),
            ));
        }
        let mut member_ids = Vec::new();
        for username in members {
            let uid = self.uid_by_username(username).cloned().ok_or_else(|| {
                ApiError::meteor("error-invalid-user", format!("Invalid user {username}"))
            })?;
            member_ids.push(uid);
        }
        let creator_ref = self.user(creator)?.brief();
        let now = self.now();
        let rid = random_id();
        self.rooms.insert(
            rid.clone(),
            Room {
                id: rid.clone(),
                t,
                name: Some(name.into()),
                fname: Some(name.into()),
                creator: Some(creator_ref),
                ts: now,
                msgs: 0,
                lm: None,
                last_message: None,
                updated_at: now,
                read_only,
                default: false,
                sys_mes: true,
                topic,
                usernames: Vec::new(),
                members: BTreeSet::new(),
            },
        );
        self.room_by_name.insert(name.into(), rid.clone());
        if !exclude_self {
            self.insert_subscription(&rid, creator, true, vec!["owner".into()]);
        }
        for uid in member_ids {
            if uid != creator && !self.is_member(&uid, &rid) {
                self.insert_subscription(&rid, &uid, true, Vec::new());
            }
        }
        Ok(rid)
    }

    /// Adds a user to a room: subscription, system message (`au` when `by` is set, else `uj`).
    pub fn add_member(
        &mut self,
        rid: &str,
        uid: &str,
        by: Option<&str>,
        check: bool,
    ) -> Result<(), ApiError> {
        let room = self
            .rooms
            .get(rid)
            .ok_or_else(|| room_not_found(RoomType::Channel))?;
        let room_t = room.t;
        if check {
            if let Some(by) = by {
                let allowed = self.has_permission(by, "add-user-to-joined-room", Some(rid))
                    && self.is_member(by, rid)
                    || self.has_permission(by, "add-user-to-any-c-room", None)
                    || (room_t == RoomType::Channel && by == uid);
                if !allowed {
                    return Err(ApiError::meteor("error-not-allowed", "Not allowed"));
                }
            }
        }
        if !self.users.contains_key(uid) {
            return Err(ApiError::meteor("error-invalid-user", "Invalid user"));
        }
        if self.is_member(uid, rid) {
            return Ok(());
        }
        self.insert_subscription(rid, uid, true, Vec::new());
        let target = self.user(uid)?.brief();
        match by.filter(|b| *b != uid) {
            Some(by) => {
                let by = self.user(by)?.brief();
                self.system_message(rid, "au", &target.username, by);
            }
            None => self.system_message(rid, "uj", &target.username, target.clone()),
        }
        Ok(())
    }

    /// Removes a user from a room: system message (`ru` when kicked, `ul` when leaving).
    pub fn remove_member(
        &mut self,
        rid: &str,
        uid: &str,
        by: Option<&str>,
    ) -> Result<(), ApiError> {
        if !self.is_member(uid, rid) {
            return Err(ApiError::meteor(
                "error-user-not-in-room",
                "User is not in this room",
            ));
        }
        let target = self.user(uid)?.brief();
        match by.filter(|b| *b != uid) {
            Some(by) => {
                if !self.has_permission(by, "remove-user", Some(rid)) {
                    return Err(ApiError::Unauthorized);
                }
                let by = self.user(by)?.brief();
                self.system_message(rid, "ru", &target.username, by);
            }
            None => {
                let is_last_owner = self
                    .subscription(uid, rid)
                    .is_some_and(|s| s.roles.iter().any(|r| r == "owner"))
                    && self.rooms.get(rid).is_some_and(|r| {
                        r.members.len() > 1
                            && !r.members.iter().any(|m| {
                                m != uid
                                    && self
                                        .subscription(m, rid)
                                        .is_some_and(|s| s.roles.iter().any(|r| r == "owner"))
                            })
                    });
                if is_last_owner {
                    return Err(ApiError::meteor(
                        "error-you-are-last-owner",
                        "You are the last owner. Please set new owner before leaving the room.",
                    ));
                }
                self.system_message(rid, "ul", &target.username, target.clone());
            }
        }
        self.drop_subscription(rid, uid);
        Ok(())
    }

    fn insert_subscription(&mut self, rid: &str, uid: &str, open: bool, roles: Vec<String>) {
        let now = self.now();
        let Some(user) = self.users.get(uid) else {
            return;
        };
        let u = UserRef {
            id: user.id.clone(),
            username: user.username.clone(),
            name: Some(user.name.clone()),
        };
        let Some(room) = self.rooms.get_mut(rid) else {
            return;
        };
        room.members.insert(uid.to_string());
        room.updated_at = now;
        let (name, fname) = match room.t {
            RoomType::Direct => self.dm_names(rid, uid),
            _ => {
                let room = &self.rooms[rid];
                (
                    room.name.clone().unwrap_or_default(),
                    room.fname.clone().unwrap_or_default(),
                )
            }
        };
        let t = self.rooms[rid].t;
        let sub = Subscription {
            id: random_id(),
            rid: rid.into(),
            u,
            name,
            fname,
            t,
            ts: now,
            ls: Some(now),
            lr: None,
            open,
            alert: false,
            unread: 0,
            user_mentions: 0,
            group_mentions: 0,
            roles,
            updated_at: now,
        };
        self.subs.insert((uid.into(), rid.into()), sub);
        self.user_rooms
            .entry(uid.into())
            .or_default()
            .insert(rid.into());
        self.emit_sub(uid, rid, "inserted");
        self.emit_room_to(uid, rid, "inserted");
        self.emit_room_to_members(rid, Some(uid));
    }

    fn drop_subscription(&mut self, rid: &str, uid: &str) {
        let now = self.now();
        let Some(sub) = self.subs.remove(&(uid.to_string(), rid.to_string())) else {
            return;
        };
        if let Some(set) = self.user_rooms.get_mut(uid) {
            set.remove(rid);
        }
        if let Some(room) = self.rooms.get_mut(rid) {
            room.members.remove(uid);
            room.updated_at = now;
        }
        self.removed_subs.push((uid.into(), sub.id.clone(), now));
        self.removed_rooms.push((uid.into(), rid.into(), now));
        let ev = format!("{uid}/subscriptions-changed");
        if self.hub.wants(STREAM_USER, &ev) {
            let mut removed = json!({"_id": sub.id, "u": {"_id": sub.u.id, "username": sub.u.username}, "rid": rid, "t": sub.t.letter()});
            if let Some(n) = &sub.u.name {
                removed["u"]["name"] = json!(n);
            }
            self.push(STREAM_USER, ev, json!(["removed", removed]), None);
        }
        let ev = format!("{uid}/rooms-changed");
        if self.hub.wants(STREAM_USER, &ev) {
            if let Some(room) = self.room_json(rid, Dates::Ejson) {
                self.push(STREAM_USER, ev, json!(["removed", room]), None);
            }
        }
        self.emit_room_to_members(rid, None);
    }

    fn dm_names(&self, rid: &str, uid: &str) -> (String, String) {
        let room = &self.rooms[rid];
        let others: Vec<&User> = room
            .members
            .iter()
            .filter(|m| *m != uid || room.members.len() == 1)
            .filter_map(|m| self.users.get(m))
            .collect();
        let mut usernames: Vec<String> = others.iter().map(|u| u.username.clone()).collect();
        let mut names: Vec<String> = others.iter().map(|u| u.name.clone()).collect();
        if room.members.len() <= 1 || others.is_empty() {
            if let Some(me) = self.users.get(uid) {
                usernames = vec![me.username.clone()];
                names = vec![me.name.clone()];
            }
        }
        (usernames.join(", "), names.join(", "))
    }

    /// `im.create`: returns `(rid, inserted)`.
    pub fn create_dm(
        &mut self,
        caller: &str,
        usernames: &[String],
        exclude_self: bool,
    ) -> Result<(String, bool), ApiError> {
        if !self.has_permission(caller, "create-d", None) {
            return Err(ApiError::meteor("error-not-allowed", "Not allowed"));
        }
        let mut ids: BTreeSet<String> = BTreeSet::new();
        if !exclude_self {
            ids.insert(caller.to_string());
        }
        for name in usernames {
            let uid = self
                .uid_by_username(name)
                .cloned()
                .ok_or_else(|| ApiError::meteor("error-invalid-user", "Invalid user"))?;
            ids.insert(uid);
        }
        if ids.is_empty() {
            return Err(ApiError::meteor("error-invalid-user", "Invalid user"));
        }
        if ids.len() > 8 {
            return Err(ApiError::meteor(
                "error-direct-message-max-user-exceeded",
                "You cannot add more than 8 users, including yourself to a direct message",
            ));
        }
        let existing = if ids.len() <= 2 {
            Some(ids.iter().cloned().collect::<String>())
        } else {
            self.rooms
                .values()
                .find(|r| r.t == RoomType::Direct && r.members.iter().eq(ids.iter()))
                .map(|r| r.id.clone())
        };
        if let Some(rid) = &existing {
            if self.rooms.contains_key(rid) {
                // Re-opening an existing DM for the caller, as the real server does.
                if let Some(sub) = self.subs.get_mut(&(caller.to_string(), rid.clone())) {
                    if !sub.open {
                        sub.open = true;
                        self.emit_sub(caller, rid, "updated");
                    }
                }
                return Ok((rid.clone(), false));
            }
        }
        let rid = existing.unwrap_or_else(random_id);
        let now = self.now();
        let mut usernames_in: Vec<String> = ids
            .iter()
            .filter_map(|id| self.users.get(id))
            .map(|u| u.username.clone())
            .collect();
        usernames_in.sort();
        self.rooms.insert(
            rid.clone(),
            Room {
                id: rid.clone(),
                t: RoomType::Direct,
                name: None,
                fname: None,
                creator: None,
                ts: now,
                msgs: 0,
                lm: None,
                last_message: None,
                updated_at: now,
                read_only: false,
                default: false,
                sys_mes: true,
                topic: None,
                usernames: usernames_in,
                members: ids.clone(),
            },
        );
        let one_to_one = ids.len() == 2;
        for uid in &ids {
            // The other side of a 1:1 DM only sees it once a message arrives.
            let open = uid == caller || !one_to_one;
            self.insert_subscription(&rid, uid, open, Vec::new());
        }
        Ok((rid, true))
    }

    pub fn room_json(&self, rid: &str, dates: Dates) -> Option<Value> {
        let room = self.rooms.get(rid)?;
        let last = room
            .last_message
            .as_ref()
            .and_then(|id| self.messages.get(id))
            .map(|m| m.to_json(dates));
        Some(room.to_json(last, dates))
    }

    /// `rooms.get`: rooms of the user updated since, plus removals.
    pub fn rooms_since(&self, uid: &str, since: Option<DateTime<Utc>>) -> (Vec<Value>, Vec<Value>) {
        let update = self
            .rooms_of(uid)
            .iter()
            .filter_map(|rid| self.rooms.get(rid))
            .filter(|r| since.is_none_or(|s| r.updated_at > s))
            .filter_map(|r| self.room_json(&r.id, Dates::Iso))
            .collect();
        let remove = match since {
            Some(s) => self
                .removed_rooms
                .iter()
                .filter(|(u, rid, at)| u == uid && *at > s && !self.is_member(uid, rid))
                .map(|(_, rid, at)| json!({"_id": rid, "_deletedAt": crate::model::iso(*at)}))
                .collect(),
            None => Vec::new(),
        };
        (update, remove)
    }

    /// `subscriptions.get`.
    pub fn subs_since(
        &self,
        uid: &str,
        since: Option<DateTime<Utc>>,
        dates: Dates,
    ) -> (Vec<Value>, Vec<Value>) {
        let update = self
            .rooms_of(uid)
            .iter()
            .filter_map(|rid| self.subscription(uid, rid))
            .filter(|s| since.is_none_or(|at| s.updated_at > at))
            .map(|s| s.to_json(dates))
            .collect();
        let remove = match since {
            Some(at) => self
                .removed_subs
                .iter()
                .filter(|(u, _, when)| u == uid && *when > at)
                .map(|(_, id, when)| json!({"_id": id, "_deletedAt": crate::model::date(*when, dates)}))
                .collect(),
            None => Vec::new(),
        };
        (update, remove)
    }

    /// `subscriptions.read`: clears unread, updates `ls`.
    pub fn mark_read(&mut self, uid: &str, rid: &str) -> Result<(), ApiError> {
        let now = self.now();
        let sub = self
            .subs
            .get_mut(&(uid.to_string(), rid.to_string()))
            .ok_or_else(|| {
                ApiError::meteor("error-invalid-subscription", "Invalid subscription")
            })?;
        sub.unread = 0;
        sub.alert = false;
        sub.user_mentions = 0;
        sub.group_mentions = 0;
        sub.ls = Some(now);
        sub.updated_at = now;
        self.emit_sub(uid, rid, "updated");
        let ev = format!("{rid}/messagesRead");
        if self.hub.wants(STREAM_NOTIFY_ROOM, &ev) {
            self.push(
                STREAM_NOTIFY_ROOM,
                ev,
                json!([{"until": {"$date": now.timestamp_millis()}}]),
                None,
            );
        }
        Ok(())
    }

    /// `subscriptions.unread`: marks the room unread from a message on (or just alerts).
    pub fn mark_unread(
        &mut self,
        uid: &str,
        rid: Option<&str>,
        first_unread: Option<&str>,
    ) -> Result<(), ApiError> {
        let (rid, since) = match (rid, first_unread) {
            (_, Some(mid)) => {
                let m = self.messages.get(mid).ok_or_else(|| {
                    ApiError::meteor("error-no-message-for-unread", "Unread failed")
                })?;
                (m.rid.clone(), Some(m.ts))
            }
            (Some(rid), None) => (rid.to_string(), None),
            (None, None) => {
                return Err(ApiError::meteor(
                    "error-invalid-params",
                    "Invalid parameters",
                ))
            }
        };
        let unread = match since {
            Some(ts) => self
                .room_msgs
                .get(&rid)
                .map(|ids| {
                    ids.iter()
                        .filter_map(|i| self.messages.get(i))
                        .filter(|m| m.ts >= ts && m.u.id != uid && m.t.is_none())
                        .count() as u64
                })
                .unwrap_or(0),
            None => 0,
        };
        let now = self.now();
        let sub = self
            .subs
            .get_mut(&(uid.to_string(), rid.clone()))
            .ok_or_else(|| {
                ApiError::meteor("error-invalid-subscription", "Invalid subscription")
            })?;
        sub.alert = true;
        sub.unread = unread.max(sub.unread);
        if let Some(ts) = since {
            sub.ls = Some(ts - chrono::Duration::milliseconds(1));
        }
        sub.updated_at = now;
        self.emit_sub(uid, &rid, "updated");
        Ok(())
    }

    // -------------------------------------------------------------------------- messages

    /// Stores a system message and fans it out.
    fn system_message(&mut self, rid: &str, t: &str, msg: &str, by: UserRef) {
        let now = self.now();
        let m = Message {
            id: random_id(),
            rid: rid.into(),
            msg: msg.into(),
            ts: now,
            updated_at: now,
            u: by,
            t: Some(t.into()),
            tmid: None,
            mentions: Vec::new(),
            edited: None,
            extra: Map::new(),
            private: false,
        };
        self.store_message(m);
    }

    /// Whether `uid` may post in the room.
    pub fn can_post(&self, uid: &str, room: &Room) -> Result<(), ApiError> {
        if !self.can_access(uid, room) {
            return Err(ApiError::meteor("error-not-allowed", "Not allowed"));
        }
        if room.read_only && !self.has_permission(uid, "post-readonly", Some(&room.id)) {
            return Err(ApiError::meteor("error-action-not-allowed", "Not allowed"));
        }
        Ok(())
    }

    /// `chat.sendMessage` / `sendMessage`: validates, stores and fans out a user message.
    pub fn send_message(
        &mut self,
        uid: &str,
        rid: &str,
        text: &str,
        client_id: Option<String>,
        tmid: Option<String>,
        extra: Map<String, Value>,
    ) -> Result<String, ApiError> {
        let max = self.setting_i64("Message_MaxAllowedSize", 5000) as usize;
        if text.chars().count() > max {
            return Err(ApiError::meteor(
                "error-message-size-exceeded",
                "Message size exceeds Message_MaxAllowedSize",
            ));
        }
        let room = self
            .rooms
            .get(rid)
            .ok_or_else(|| ApiError::meteor("error-invalid-room", "Invalid room"))?;
        if let Err(e) = self.can_post(uid, room) {
            self.ephemeral(
                uid,
                rid,
                "You don't have permission to send messages in this room",
            );
            return Err(e);
        }
        if let Some(id) = &client_id {
            if self.messages.contains_key(id) {
                return Err(ApiError::meteor(
                    "error-duplicate-message",
                    "Duplicate message",
                ));
            }
        }
        if let Some(tmid) = &tmid {
            if self.messages.get(tmid).is_none_or(|m| m.rid != rid) {
                return Err(ApiError::meteor(
                    "error-invalid-message",
                    "Invalid thread message",
                ));
            }
        }
        let author = self.user(uid)?.brief();
        let mentions = self.parse_mentions(text);
        let now = self.now();
        let m = Message {
            id: client_id.unwrap_or_else(random_id),
            rid: rid.into(),
            msg: text.into(),
            ts: now,
            updated_at: now,
            u: author,
            t: None,
            tmid,
            mentions,
            edited: None,
            extra,
            private: false,
        };
        let id = m.id.clone();
        self.store_message(m);
        Ok(id)
    }

    fn parse_mentions(&self, text: &str) -> Vec<UserRef> {
        let mut out: Vec<UserRef> = Vec::new();
        for word in text.split(|c: char| c.is_whitespace() || c == ',' || c == ':') {
            let Some(name) = word.strip_prefix('@') else {
                continue;
            };
            let name = name.trim_end_matches(['.', '!', '?']);
            if name == "all" || name == "here" {
                if !out.iter().any(|u| u.id == name) {
                    out.push(UserRef {
                        id: name.into(),
                        username: name.into(),
                        name: None,
                    });
                }
                continue;
            }
            if let Some(u) = self.user_by_username(name) {
                if !out.iter().any(|x| x.id == u.id) {
                    out.push(UserRef {
                        id: u.id.clone(),
                        username: u.username.clone(),
                        name: Some(u.name.clone()),
                    });
                }
            }
        }
        out
    }

    /// Pushes an ephemeral `rocket.cat` notice on `<uid>/message` (never stored).
    pub fn ephemeral(&mut self, uid: &str, rid: &str, text: &str) {
        let ev = format!("{uid}/message");
        if !self.hub.wants(STREAM_USER, &ev) {
            return;
        }
        let now = self.now();
        let cat = self
            .user_by_username("rocket.cat")
            .map(User::brief)
            .unwrap_or(UserRef {
                id: "rocket.cat".into(),
                username: "rocket.cat".into(),
                name: None,
            });
        let m = Message {
            id: random_id(),
            rid: rid.into(),
            msg: text.into(),
            ts: now,
            updated_at: now,
            u: cat,
            t: None,
            tmid: None,
            mentions: Vec::new(),
            edited: None,
            extra: Map::new(),
            private: true,
        };
        self.push(STREAM_USER, ev, json!([m.to_json(Dates::Ejson)]), None);
    }

    fn store_message(&mut self, m: Message) {
        let rid = m.rid.clone();
        let id = m.id.clone();
        let is_user_msg = m.t.is_none();
        let author = m.u.id.clone();
        let ts = m.ts;
        let mentioned: HashSet<String> = m.mentions.iter().map(|u| u.id.clone()).collect();
        let group_mention = mentioned.contains("all") || mentioned.contains("here");
        let Some(room) = self.rooms.get_mut(&rid) else {
            return;
        };
        room.msgs += 1;
        room.lm = Some(ts);
        room.last_message = Some(id.clone());
        room.updated_at = ts;
        let room_t = room.t;
        let room_name = room.name.clone();
        let members: Vec<String> = room.members.iter().cloned().collect();
        self.room_msgs
            .entry(rid.clone())
            .or_default()
            .push(id.clone());
        self.messages.insert(id.clone(), m);
        let msg_ejson = self.messages[&id].to_json(Dates::Ejson);

        if is_user_msg {
            let names: Vec<String> = members
                .iter()
                .map(|m| format!("{m}/subscriptions-changed"))
                .collect();
            let listening: HashSet<String> = self
                .hub
                .filter_wanted(STREAM_USER, names)
                .into_iter()
                .collect();
            for uid in &members {
                let key = (uid.clone(), rid.clone());
                let Some(sub) = self.subs.get_mut(&key) else {
                    continue;
                };
                if *uid == author {
                    sub.ls = Some(ts);
                    sub.lr = Some(ts);
                    sub.updated_at = ts;
                    continue;
                }
                sub.unread += 1;
                sub.alert = true;
                sub.open = true;
                if mentioned.contains(uid) {
                    sub.user_mentions += 1;
                }
                if group_mention {
                    sub.group_mentions += 1;
                }
                sub.updated_at = ts;
                let ev = format!("{uid}/subscriptions-changed");
                if listening.contains(&ev) {
                    let args = json!(["updated", sub.to_json(Dates::Ejson)]);
                    self.push(STREAM_USER, ev, args, None);
                }
            }
        }

        if self.hub.wants(STREAM_ROOM_MESSAGES, &rid) {
            self.push(
                STREAM_ROOM_MESSAGES,
                rid.clone(),
                json!([msg_ejson.clone()]),
                None,
            );
        }
        if self.hub.wants(STREAM_ROOM_MESSAGES, "__my_messages__") {
            let mut meta = json!({"roomParticipant": true, "roomType": room_t.letter()});
            if let Some(n) = &room_name {
                meta["roomName"] = json!(n);
            }
            let audience: HashSet<String> = members.iter().cloned().collect();
            self.push(
                STREAM_ROOM_MESSAGES,
                "__my_messages__".into(),
                json!([msg_ejson.clone(), meta]),
                Some(Arc::new(audience)),
            );
        }
        self.emit_room_to_members(&rid, None);

        if is_user_msg {
            let text = self.messages[&id].msg.clone();
            let sender = self.messages[&id].u.clone();
            let tmid = self.messages[&id].tmid.clone();
            for uid in &members {
                if *uid == author {
                    continue;
                }
                if room_t != RoomType::Direct && !mentioned.contains(uid) && !group_mention {
                    continue;
                }
                let ev = format!("{uid}/notification");
                if !self.hub.wants(STREAM_USER, &ev) {
                    continue;
                }
                let name = if room_t == RoomType::Direct {
                    sender.username.clone()
                } else {
                    room_name.clone().unwrap_or_default()
                };
                let title = if room_t == RoomType::Direct {
                    sender.username.clone()
                } else {
                    format!("#{name}")
                };
                let mut payload = json!({
                    "_id": id, "rid": rid, "sender": sender.to_json(), "type": room_t.letter(),
                    "name": name, "message": {"msg": text},
                });
                if let Some(t) = &tmid {
                    payload["tmid"] = json!(t);
                }
                let body = if room_t == RoomType::Direct {
                    text.clone()
                } else {
                    format!("{}: {}", sender.username, text)
                };
                self.push(
                    STREAM_USER,
                    ev,
                    json!([{"title": title, "text": body, "duration": 4, "payload": payload}]),
                    None,
                );
            }
        }
    }

    /// `chat.update`.
    pub fn update_message(
        &mut self,
        uid: &str,
        rid: &str,
        msg_id: &str,
        text: &str,
    ) -> Result<(), ApiError> {
        let m = self.messages.get(msg_id).ok_or_else(|| {
            ApiError::Failure(format!("No message found with the id of \"{msg_id}\"."))
        })?;
        if m.rid != rid {
            return Err(ApiError::Failure(
                "The room id provided does not match where the message is from.".into(),
            ));
        }
        if m.u.id != uid && !self.has_permission(uid, "edit-message", Some(rid)) {
            return Err(ApiError::meteor(
                "error-action-not-allowed",
                "Message editing not allowed",
            ));
        }
        let max = self.setting_i64("Message_MaxAllowedSize", 5000) as usize;
        if text.chars().count() > max {
            return Err(ApiError::meteor(
                "error-message-size-exceeded",
                "Message size exceeds Message_MaxAllowedSize",
            ));
        }
        let editor = self.user(uid)?.brief();
        let mentions = self.parse_mentions(text);
        let now = self.now();
        let m = self.messages.get_mut(msg_id).ok_or(ApiError::Internal)?;
        m.msg = text.into();
        m.mentions = mentions;
        m.updated_at = now;
        m.edited = Some((now, editor));
        let ejson = m.to_json(Dates::Ejson);
        if self.hub.wants(STREAM_ROOM_MESSAGES, rid) {
            self.push(
                STREAM_ROOM_MESSAGES,
                rid.into(),
                json!([ejson.clone()]),
                None,
            );
        }
        if self.hub.wants(STREAM_ROOM_MESSAGES, "__my_messages__") {
            if let Some(room) = self.rooms.get(rid) {
                let audience: HashSet<String> = room.members.iter().cloned().collect();
                let mut meta = json!({"roomParticipant": true, "roomType": room.t.letter()});
                if let Some(n) = &room.name {
                    meta["roomName"] = json!(n);
                }
                self.push(
                    STREAM_ROOM_MESSAGES,
                    "__my_messages__".into(),
                    json!([ejson, meta]),
                    Some(Arc::new(audience)),
                );
            }
        }
        if self.rooms.get(rid).and_then(|r| r.last_message.as_deref()) == Some(msg_id) {
            self.emit_room_to_members(rid, None);
        }
        Ok(())
    }

    /// `chat.delete`: returns the deleted message.
    pub fn delete_message(
        &mut self,
        uid: &str,
        rid: &str,
        msg_id: &str,
    ) -> Result<Message, ApiError> {
        let m = self.messages.get(msg_id).ok_or_else(|| {
            ApiError::Failure(format!("No message found with the id of \"{msg_id}\"."))
        })?;
        if m.rid != rid {
            return Err(ApiError::Failure(
                "The room id provided does not match where the message is from.".into(),
            ));
        }
        if m.u.id != uid && !self.has_permission(uid, "delete-message", Some(rid)) {
            return Err(ApiError::meteor("error-action-not-allowed", "Not allowed"));
        }
        let m = self.messages.remove(msg_id).ok_or(ApiError::Internal)?;
        if let Some(list) = self.room_msgs.get_mut(rid) {
            list.retain(|i| i != msg_id);
        }
        let now = self.now();
        let new_last = self.room_msgs.get(rid).and_then(|l| l.last().cloned());
        if let Some(room) = self.rooms.get_mut(rid) {
            room.msgs = room.msgs.saturating_sub(1);
            if room.last_message.as_deref() == Some(msg_id) {
                room.last_message = new_last;
                room.updated_at = now;
            }
        }
        let ev = format!("{rid}/deleteMessage");
        if self.hub.wants(STREAM_NOTIFY_ROOM, &ev) {
            self.push(STREAM_NOTIFY_ROOM, ev, json!([{"_id": msg_id}]), None);
        }
        self.emit_room_to_members(rid, None);
        Ok(m)
    }

    /// Messages of a room, newest first, in `[oldest, latest]` as `history` reads them.
    pub fn history(
        &self,
        rid: &str,
        latest: Option<DateTime<Utc>>,
        oldest: Option<DateTime<Utc>>,
        inclusive: bool,
        offset: usize,
        count: Option<usize>,
    ) -> Vec<&Message> {
        let Some(ids) = self.room_msgs.get(rid) else {
            return Vec::new();
        };
        let iter = ids
            .iter()
            .rev()
            .filter_map(|i| self.messages.get(i))
            .filter(|m| {
                let before = match latest {
                    Some(l) if inclusive => m.ts <= l,
                    Some(l) => m.ts < l,
                    None => true,
                };
                let after = match oldest {
                    Some(o) if inclusive => m.ts >= o,
                    Some(o) => m.ts > o,
                    None => true,
                };
                before && after
            });
        let iter = iter.skip(offset);
        match count {
            Some(c) => iter.take(c).collect(),
            None => iter.collect(),
        }
    }

    /// Number of stored messages in a room.
    pub fn message_total(&self, rid: &str) -> usize {
        self.room_msgs.get(rid).map_or(0, Vec::len)
    }

    // ---------------------------------------------------------------------------- events

    fn push(
        &mut self,
        stream: &'static str,
        event_name: String,
        args: Value,
        audience: Option<Arc<HashSet<String>>>,
    ) {
        self.push_shared(stream, event_name, Arc::from(args.to_string()), audience);
    }

    fn push_shared(
        &mut self,
        stream: &'static str,
        event_name: String,
        args: Arc<str>,
        audience: Option<Arc<HashSet<String>>>,
    ) {
        self.pending.push(Event {
            stream,
            event_name,
            args,
            audience,
        });
    }

    fn emit_sub(&mut self, uid: &str, rid: &str, kind: &str) {
        let ev = format!("{uid}/subscriptions-changed");
        if !self.hub.wants(STREAM_USER, &ev) {
            return;
        }
        if let Some(sub) = self.subscription(uid, rid) {
            let args = json!([kind, sub.to_json(Dates::Ejson)]);
            self.push(STREAM_USER, ev, args, None);
        }
    }

    fn emit_room_to(&mut self, uid: &str, rid: &str, kind: &str) {
        let ev = format!("{uid}/rooms-changed");
        if !self.hub.wants(STREAM_USER, &ev) {
            return;
        }
        if let Some(room) = self.room_json(rid, Dates::Ejson) {
            self.push(STREAM_USER, ev, json!([kind, room]), None);
        }
    }

    /// `rooms-changed updated` to every member (except `skip`), rendering the room once.
    fn emit_room_to_members(&mut self, rid: &str, skip: Option<&str>) {
        let Some(room) = self.rooms.get(rid) else {
            return;
        };
        let names: Vec<String> = room
            .members
            .iter()
            .filter(|m| Some(m.as_str()) != skip)
            .map(|m| format!("{m}/rooms-changed"))
            .collect();
        let targets = self.hub.filter_wanted(STREAM_USER, names);
        if targets.is_empty() {
            return;
        }
        let Some(room) = self.room_json(rid, Dates::Ejson) else {
            return;
        };
        let args: Arc<str> = Arc::from(json!(["updated", room]).to_string());
        for ev in targets {
            self.push_shared(STREAM_USER, ev, args.clone(), None);
        }
    }

    /// Sends `typing`/`user-activity` on `stream-notify-room`.
    pub fn user_activity(&mut self, rid: &str, username: &str, activities: Value, extra: Value) {
        let ev = format!("{rid}/user-activity");
        if self.hub.wants(STREAM_NOTIFY_ROOM, &ev) {
            self.push(
                STREAM_NOTIFY_ROOM,
                ev,
                json!([username, activities.clone(), extra]),
                None,
            );
        }
        let typing = activities
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == "user-typing"));
        let ev = format!("{rid}/typing");
        if self.hub.wants(STREAM_NOTIFY_ROOM, &ev) {
            self.push(STREAM_NOTIFY_ROOM, ev, json!([username, typing]), None);
        }
    }
}

fn field_unavailable(value: &str) -> ApiError {
    ApiError::meteor_with(
        "error-field-unavailable",
        format!("{value} is already in use :("),
        json!({"method": "insertOrUpdateUser", "field": value}),
    )
}

/// The not-found error of room lookups.
pub fn room_not_found(t: RoomType) -> ApiError {
    let what = match t {
        RoomType::Group => "group",
        _ => "channel",
    };
    ApiError::meteor(
        "error-room-not-found",
        format!("The required \"roomId\" or \"roomName\" param provided does not match any {what}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Store {
        Store::new(Arc::new(Hub::default()), ("admin", "admin"))
    }

    fn user(s: &mut Store, name: &str) -> String {
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

    #[test]
    fn dm_rid_is_sorted_concatenated_ids_and_idempotent() {
        let mut s = store();
        let a = user(&mut s, "alice");
        let b = user(&mut s, "bob");
        let (rid, inserted) = s.create_dm(&a, &["bob".into()], false).unwrap();
        let mut ids = [a.clone(), b.clone()];
        ids.sort();
        assert_eq!(rid, ids.concat());
        assert!(inserted);
        let (again, inserted) = s.create_dm(&b, &["alice".into()], false).unwrap();
        assert_eq!(again, rid);
        assert!(!inserted);
        assert!(!s.subscription(&b, &rid).unwrap().open || s.subscription(&b, &rid).unwrap().open);
    }

    #[test]
    fn new_users_join_general_with_uj() {
        let mut s = store();
        let a = user(&mut s, "alice");
        assert!(s.is_member(&a, GENERAL));
        let last = s.history(GENERAL, None, None, false, 0, Some(1));
        assert_eq!(last[0].t.as_deref(), Some("uj"));
    }

    #[test]
    fn unread_counts_for_others_and_read_clears() {
        let mut s = store();
        let a = user(&mut s, "alice");
        let b = user(&mut s, "bob");
        s.send_message(&a, GENERAL, "hi @bob", None, None, Map::new())
            .unwrap();
        let sub = s.subscription(&b, GENERAL).unwrap();
        assert_eq!((sub.unread, sub.alert, sub.user_mentions), (1, true, 1));
        assert_eq!(s.subscription(&a, GENERAL).unwrap().unread, 0);
        s.mark_read(&b, GENERAL).unwrap();
        assert_eq!(s.subscription(&b, GENERAL).unwrap().unread, 0);
    }

    #[test]
    fn token_login_and_revoke() {
        let mut s = store();
        let a = user(&mut s, "alice");
        let (uid, token) = s
            .login_password(
                &LoginSelector::Username("alice".into()),
                &password_digest("pw"),
            )
            .unwrap();
        assert_eq!(uid, a);
        assert!(s.authenticate(&a, &token).is_some());
        assert_eq!(s.revoke_tokens(&a), 1);
        assert!(s.authenticate(&a, &token).is_none());
        assert!(s
            .login_password(
                &LoginSelector::Username("alice".into()),
                &password_digest("bad")
            )
            .is_err());
    }
}
