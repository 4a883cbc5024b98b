//! Permissions and roles: the seeded table, the checks and `permissions.update`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::Store;
use crate::error::ApiError;

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
pub(super) const DEFAULT_ROLES: &[&str] = &[
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

pub(super) fn default_permissions(now: DateTime<Utc>) -> BTreeMap<String, Permission> {
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

impl Store {
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
}
