//! Rooms: lookups, channels and groups (create and delete), DMs, membership and `rooms.get`.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::users::valid_name;
use super::Store;
use crate::error::ApiError;
use crate::ids::random_id;
use crate::model::{Dates, Room, RoomType, User};

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

impl Store {
    pub fn room(&self, rid: &str) -> Option<&Room> {
        self.rooms.get(rid)
    }

    pub fn room_by_name(&self, name: &str) -> Option<&Room> {
        self.room_by_name
            .get(name)
            .and_then(|id| self.rooms.get(id))
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

    pub(super) fn dm_names(&self, rid: &str, uid: &str) -> (String, String) {
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
    use crate::store::fixtures::{store, user};

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
}
