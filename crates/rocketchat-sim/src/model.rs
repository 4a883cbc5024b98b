//! The documents the sim keeps (users, rooms, subscriptions, messages, uploads) and how they
//! render on the wire. REST renders dates as ISO strings, DDP as EJSON `{"$date": ms}`.

use std::collections::BTreeSet;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

/// How dates are written: ISO-8601 strings in REST, EJSON objects in DDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dates {
    /// `"2024-05-01T10:00:00.000Z"`.
    Iso,
    /// `{"$date": 1714557600000}`.
    Ejson,
}

/// Renders one date in the given convention.
pub fn date(at: DateTime<Utc>, dates: Dates) -> Value {
    match dates {
        Dates::Iso => Value::String(iso(at)),
        Dates::Ejson => json!({ "$date": at.timestamp_millis() }),
    }
}

/// ISO-8601 UTC with milliseconds, as JavaScript's `Date.toISOString`.
pub fn iso(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// One stored login token (only the hash is kept, as Meteor does).
#[derive(Clone, Debug)]
pub struct LoginToken {
    /// base64 SHA-256 of the token.
    pub hashed: String,
    /// When the token was issued.
    pub when: DateTime<Utc>,
    /// Personal access tokens have a name and are never pruned.
    pub name: Option<String>,
    /// Personal access token created with `bypassTwoFactor`.
    pub bypass_two_factor: bool,
}

/// A user account.
#[derive(Clone, Debug)]
pub struct User {
    pub id: String,
    pub username: String,
    pub name: String,
    pub emails: Vec<(String, bool)>,
    /// Lower-case hex SHA-256 of the password; Meteor bcrypts this digest, the sim compares it.
    pub password_digest: Option<String>,
    pub active: bool,
    pub roles: Vec<String>,
    pub tokens: Vec<LoginToken>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub user_type: String,
    pub status: String,
    pub utc_offset: i64,
    pub custom_fields: Option<Value>,
    pub require_password_change: bool,
    /// Set by `users.create`/`users.update`; absent when empty, as Meteor unsets it.
    pub nickname: Option<String>,
}

impl User {
    /// The first verified e-mail address, which Rocket.Chat shows as `email`.
    pub fn verified_email(&self) -> Option<&str> {
        self.emails
            .iter()
            .find(|(_, v)| *v)
            .map(|(a, _)| a.as_str())
    }

    fn emails_json(&self) -> Value {
        Value::Array(
            self.emails
                .iter()
                .map(|(a, v)| json!({"address": a, "verified": v}))
                .collect(),
        )
    }

    /// The `me` document of `login` and `GET me` (no secrets).
    pub fn me_json(&self, base_url: &str, dates: Dates) -> Map<String, Value> {
        let mut me = Map::new();
        me.insert("_id".into(), json!(self.id));
        me.insert("username".into(), json!(self.username));
        me.insert("name".into(), json!(self.name));
        me.insert("emails".into(), self.emails_json());
        if let Some(email) = self.verified_email() {
            me.insert("email".into(), json!(email));
        }
        me.insert("status".into(), json!(self.status));
        me.insert("statusConnection".into(), json!(self.status));
        me.insert("active".into(), json!(self.active));
        me.insert("roles".into(), json!(self.roles));
        me.insert("type".into(), json!(self.user_type));
        me.insert("utcOffset".into(), json!(self.utc_offset));
        me.insert("settings".into(), json!({"profile": {}, "preferences": {}}));
        me.insert(
            "avatarUrl".into(),
            json!(format!("{base_url}/avatar/{}", self.username)),
        );
        me.insert(
            "services".into(),
            json!({"password": {"exists": self.password_digest.is_some()}}),
        );
        if self.require_password_change {
            me.insert("requirePasswordChange".into(), json!(true));
        }
        if let Some(nickname) = &self.nickname {
            me.insert("nickname".into(), json!(nickname));
        }
        if let Some(cf) = &self.custom_fields {
            me.insert("customFields".into(), cf.clone());
        }
        me.insert("_updatedAt".into(), date(self.updated_at, dates));
        me
    }

    /// The `user` document of users.create/update (administrative view).
    pub fn admin_json(&self, dates: Dates) -> Value {
        let mut u = json!({
            "_id": self.id, "username": self.username, "name": self.name, "type": self.user_type,
            "emails": self.emails_json(), "status": self.status, "active": self.active,
            "roles": self.roles, "utcOffset": self.utc_offset,
            "createdAt": date(self.created_at, dates), "_updatedAt": date(self.updated_at, dates),
            "settings": {},
        });
        if let Some(cf) = &self.custom_fields {
            u["customFields"] = cf.clone();
        }
        if self.require_password_change {
            u["requirePasswordChange"] = json!(true);
        }
        if let Some(nickname) = &self.nickname {
            u["nickname"] = json!(nickname);
        }
        u
    }

    /// The `users.info` document; `full` adds what `view-full-other-user-info` may see.
    pub fn info_json(&self, full: bool, dates: Dates) -> Value {
        let mut u = json!({
            "_id": self.id, "username": self.username, "name": self.name, "type": self.user_type,
            "status": self.status, "active": self.active, "utcOffset": self.utc_offset,
        });
        // `nickname` is one of users.info's default fields, shown to every caller.
        if let Some(nickname) = &self.nickname {
            u["nickname"] = json!(nickname);
        }
        if full {
            u["roles"] = json!(self.roles);
            u["emails"] = self.emails_json();
            u["createdAt"] = date(self.created_at, dates);
            u["_updatedAt"] = date(self.updated_at, dates);
        }
        u
    }

    /// The short form used in `u`, `editedBy` and member lists.
    pub fn brief(&self) -> UserRef {
        UserRef {
            id: self.id.clone(),
            username: self.username.clone(),
            name: Some(self.name.clone()),
        }
    }
}

/// `{_id, username, name?}` as embedded in messages and rooms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRef {
    pub id: String,
    pub username: String,
    pub name: Option<String>,
}

impl UserRef {
    /// `{"_id","username","name"?}`.
    pub fn to_json(&self) -> Value {
        let mut v = json!({"_id": self.id, "username": self.username});
        if let Some(name) = &self.name {
            v["name"] = json!(name);
        }
        v
    }
}

/// A room: public channel `c`, private group `p` or direct message `d`.
#[derive(Clone, Debug)]
pub struct Room {
    pub id: String,
    pub t: RoomType,
    pub name: Option<String>,
    pub fname: Option<String>,
    pub creator: Option<UserRef>,
    pub ts: DateTime<Utc>,
    pub msgs: u64,
    pub lm: Option<DateTime<Utc>>,
    pub last_message: Option<String>,
    pub updated_at: DateTime<Utc>,
    pub read_only: bool,
    pub default: bool,
    pub sys_mes: bool,
    pub topic: Option<String>,
    /// DM only: usernames in the room.
    pub usernames: Vec<String>,
    /// User ids holding a subscription, the membership truth.
    pub members: BTreeSet<String>,
}

/// Room type letter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoomType {
    /// Public channel `c`.
    Channel,
    /// Private group `p`.
    Group,
    /// Direct message `d`.
    Direct,
}

impl RoomType {
    /// The wire letter.
    pub fn letter(self) -> &'static str {
        match self {
            RoomType::Channel => "c",
            RoomType::Group => "p",
            RoomType::Direct => "d",
        }
    }
}

impl Room {
    /// The full room document; `last_message` is rendered by the caller when present.
    pub fn to_json(&self, last_message: Option<Value>, dates: Dates) -> Value {
        let mut r = Map::new();
        r.insert("_id".into(), json!(self.id));
        r.insert("t".into(), json!(self.t.letter()));
        if let Some(name) = &self.name {
            r.insert("name".into(), json!(name));
        }
        if let Some(fname) = &self.fname {
            r.insert("fname".into(), json!(fname));
        }
        if let Some(u) = &self.creator {
            r.insert("u".into(), json!({"_id": u.id, "username": u.username}));
        }
        r.insert("ts".into(), date(self.ts, dates));
        r.insert("msgs".into(), json!(self.msgs));
        r.insert("usersCount".into(), json!(self.members.len()));
        if let Some(lm) = self.lm {
            r.insert("lm".into(), date(lm, dates));
        }
        if let Some(m) = last_message {
            r.insert("lastMessage".into(), m);
        }
        if self.t == RoomType::Direct {
            r.insert("usernames".into(), json!(self.usernames));
            r.insert(
                "uids".into(),
                json!(self.members.iter().collect::<Vec<_>>()),
            );
        } else {
            r.insert("ro".into(), json!(self.read_only));
            r.insert("default".into(), json!(self.default));
            r.insert("sysMes".into(), json!(self.sys_mes));
            if let Some(topic) = &self.topic {
                r.insert("topic".into(), json!(topic));
            }
        }
        r.insert("_updatedAt".into(), date(self.updated_at, dates));
        Value::Object(r)
    }
}

/// One user's membership of one room, with unread state.
#[derive(Clone, Debug)]
pub struct Subscription {
    pub id: String,
    pub rid: String,
    pub u: UserRef,
    pub name: String,
    pub fname: String,
    pub t: RoomType,
    pub ts: DateTime<Utc>,
    pub ls: Option<DateTime<Utc>>,
    pub lr: Option<DateTime<Utc>>,
    pub open: bool,
    pub alert: bool,
    pub unread: u64,
    pub user_mentions: u64,
    pub group_mentions: u64,
    pub roles: Vec<String>,
    pub updated_at: DateTime<Utc>,
}

impl Subscription {
    /// The subscription document.
    pub fn to_json(&self, dates: Dates) -> Value {
        let mut s = json!({
            "_id": self.id, "rid": self.rid, "u": {"_id": self.u.id, "username": self.u.username},
            "name": self.name, "fname": self.fname, "t": self.t.letter(), "ts": date(self.ts, dates),
            "open": self.open, "alert": self.alert, "unread": self.unread,
            "userMentions": self.user_mentions, "groupMentions": self.group_mentions,
            "_updatedAt": date(self.updated_at, dates),
        });
        if let Some(name) = &self.u.name {
            s["u"]["name"] = json!(name);
        }
        if let Some(ls) = self.ls {
            s["ls"] = date(ls, dates);
        }
        if let Some(lr) = self.lr {
            s["lr"] = date(lr, dates);
        }
        if !self.roles.is_empty() {
            s["roles"] = json!(self.roles);
        }
        s
    }
}

/// A chat message (user or system).
#[derive(Clone, Debug)]
pub struct Message {
    pub id: String,
    pub rid: String,
    pub msg: String,
    pub ts: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub u: UserRef,
    /// System message type (`uj`, `au`, `ru`, `ul`, …); `None` for user messages.
    pub t: Option<String>,
    pub tmid: Option<String>,
    pub mentions: Vec<UserRef>,
    pub edited: Option<(DateTime<Utc>, UserRef)>,
    /// Extra keys passed through unchanged (`alias`, `emoji`, `avatar`, `attachments`, `file`, `files`…).
    pub extra: Map<String, Value>,
    /// Ephemeral notices only: never stored.
    pub private: bool,
}

impl Message {
    /// The message document.
    pub fn to_json(&self, dates: Dates) -> Value {
        let mut m = Map::new();
        m.insert("_id".into(), json!(self.id));
        m.insert("rid".into(), json!(self.rid));
        m.insert("msg".into(), json!(self.msg));
        m.insert("ts".into(), date(self.ts, dates));
        m.insert("u".into(), self.u.to_json());
        m.insert("_updatedAt".into(), date(self.updated_at, dates));
        if let Some(t) = &self.t {
            m.insert("t".into(), json!(t));
            m.insert("groupable".into(), json!(false));
        }
        if let Some(tmid) = &self.tmid {
            m.insert("tmid".into(), json!(tmid));
        }
        if self.t.is_none() {
            m.insert(
                "mentions".into(),
                Value::Array(self.mentions.iter().map(UserRef::to_json).collect()),
            );
            m.insert("channels".into(), json!([]));
            m.insert("urls".into(), json!([]));
        }
        if let Some((at, by)) = &self.edited {
            m.insert("editedAt".into(), date(*at, dates));
            m.insert(
                "editedBy".into(),
                json!({"_id": by.id, "username": by.username}),
            );
        }
        if self.private {
            m.insert("private".into(), json!(true));
        }
        for (k, v) in &self.extra {
            m.insert(k.clone(), v.clone());
        }
        Value::Object(m)
    }
}

/// An uploaded file (temporary until confirmed by `rooms.mediaConfirm`).
#[derive(Clone, Debug)]
pub struct Upload {
    pub id: String,
    pub name: String,
    pub content_type: String,
    pub data: Bytes,
    pub rid: String,
    pub uid: String,
    pub uploaded_at: DateTime<Utc>,
    pub confirmed: bool,
}

impl Upload {
    /// `/file-upload/<id>/<name>` with the name percent-encoded.
    pub fn path(&self) -> String {
        let name: String = url::form_urlencoded::byte_serialize(self.name.as_bytes())
            .collect::<String>()
            .replace('+', "%20");
        format!("/file-upload/{}/{}", self.id, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn dates_render_iso_with_millis_or_ejson() {
        let at = Utc.timestamp_millis_opt(1_714_557_600_123).unwrap();
        assert_eq!(date(at, Dates::Iso), json!("2024-05-01T10:00:00.123Z"));
        assert_eq!(
            date(at, Dates::Ejson),
            json!({"$date": 1_714_557_600_123_i64})
        );
    }

    #[test]
    fn upload_path_encodes_spaces() {
        let up = Upload {
            id: "F1".into(),
            name: "my file.txt".into(),
            content_type: "text/plain".into(),
            data: Bytes::new(),
            rid: "R".into(),
            uid: "U".into(),
            uploaded_at: Utc::now(),
            confirmed: false,
        };
        assert_eq!(up.path(), "/file-upload/F1/my%20file.txt");
    }
}
