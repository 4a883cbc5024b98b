//! Users: lookups, `users.create`/`update`/`setActiveStatus`/`delete` and the name rule.

use serde_json::{json, Map, Value};

use super::Store;
use crate::error::ApiError;
use crate::ids::{password_digest, random_id};
use crate::model::{RoomType, User};

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

/// `[0-9a-zA-Z-_.]+`, Rocket.Chat's default user and channel name rule.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

impl Store {
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

    pub(super) fn insert_user(
        &mut self,
        new: NewUser,
        id: Option<String>,
    ) -> Result<String, ApiError> {
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
}

fn field_unavailable(value: &str) -> ApiError {
    ApiError::meteor_with(
        "error-field-unavailable",
        format!("{value} is already in use :("),
        json!({"method": "insertOrUpdateUser", "field": value}),
    )
}

#[cfg(test)]
mod tests {
    use crate::store::fixtures::{store, user};
    use crate::store::GENERAL;

    #[test]
    fn new_users_join_general_with_uj() {
        let mut s = store();
        let a = user(&mut s, "alice");
        assert!(s.is_member(&a, GENERAL));
        let last = s.history(GENERAL, None, None, false, 0, Some(1));
        assert_eq!(last[0].t.as_deref(), Some("uj"));
    }
}
