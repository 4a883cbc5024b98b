//! Authentication: password and resume logins, login and personal access tokens, the 2FA gate
//! and the DDP `sendMessage` limit.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::Store;
use crate::error::ApiError;
use crate::ids::{hash_token, random_token};
use crate::model::{LoginToken, User};

/// Meteor's `MAX_RESUME_LOGIN_TOKENS` default.
const MAX_LOGIN_TOKENS: usize = 50;

/// Who a login names.
#[derive(Debug, Clone)]
pub enum LoginSelector {
    Username(String),
    Email(String),
    /// `user` field: e-mail when it contains `@`, else username.
    Either(String),
}

impl Store {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::password_digest;
    use crate::store::fixtures::{store, user};

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
