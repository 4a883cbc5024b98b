//! `ProviderAccounts`: logins, logouts and user mirroring.

use std::time::Duration;

use async_trait::async_trait;
use imgate_domain::model::{FrontendSession, ProviderSession, Upserted, User, UserProfile};
use imgate_domain::ports::{ProviderAccounts, ProviderError};
use imgate_domain::{AuthToken, Password, ProviderUserId, UserId};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::mapping::{bad, text};
use crate::naming::username_for;
use crate::RocketChatProvider;

impl RocketChatProvider {
    async fn login(
        &self,
        username: &str,
        password: &Password,
    ) -> Result<ProviderSession, ProviderError> {
        let answer = self
            .rest
            .post(
                "login",
                None,
                &json!({"user": username, "password": password.expose()}),
                &[],
            )
            .await?;
        let data = answer.get("data").ok_or_else(|| bad("login data"))?;
        let user_id = text(data, "userId").ok_or_else(|| bad("a user id"))?;
        let token = text(data, "authToken").ok_or_else(|| bad("an auth token"))?;
        Ok(ProviderSession {
            user_id: ProviderUserId::parse(user_id).map_err(|_| bad("a valid user id"))?,
            token: AuthToken::new(token),
            issued_at: chrono::Utc::now(),
        })
    }

    async fn find_user(
        &self,
        admin: &ProviderSession,
        user: &UserId,
    ) -> Result<Option<Value>, ProviderError> {
        let answer = self
            .rest
            .get(
                "users.info",
                Some(admin),
                &[("username", username_for(user))],
            )
            .await;
        match answer {
            Ok(answer) => Ok(answer.get("user").cloned()),
            Err(ProviderError::NotFound(_)) => Ok(None),
            Err(err) => Err(err),
        }
    }

    fn default_email(&self, user: &UserId) -> String {
        format!(
            "{}@{}",
            username_for(user).to_ascii_lowercase(),
            self.email_domain
        )
    }

    /// `users.update` is 2FA-gated; an admin without 2FA passes with the password fallback
    /// (reference §1.5).
    async fn update_user(
        &self,
        admin: &ProviderSession,
        body: &Value,
    ) -> Result<Value, ProviderError> {
        match self.rest.post("users.update", Some(admin), body, &[]).await {
            Err(ProviderError::Invalid { field, .. }) if field == "totp-required" => {
                let password = self
                    .admin_password
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()
                    .ok_or_else(|| {
                        ProviderError::Forbidden("the provider asks for a second factor".into())
                    })?;
                let digest = hex::encode(Sha256::digest(password.expose().as_bytes()));
                let headers = [
                    ("X-2FA-Code", digest),
                    ("X-2FA-Method", "password".to_owned()),
                ];
                self.rest
                    .post("users.update", Some(admin), body, &headers)
                    .await
            }
            other => other,
        }
    }
}

fn to_user(user: &UserId, doc: &Value) -> Result<User, ProviderError> {
    let provider_id = text(doc, "_id").ok_or_else(|| bad("a user id"))?;
    Ok(User {
        id: user.clone(),
        username: text(doc, "nickname")
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .unwrap_or_else(|| user.to_string()),
        name: text(doc, "name").unwrap_or_default().to_owned(),
        email: doc
            .get("emails")
            .and_then(|e| e.get(0))
            .and_then(|e| text(e, "address"))
            .map(str::to_owned),
        provider_user_id: ProviderUserId::parse(provider_id).map_err(|_| bad("a valid user id"))?,
    })
}

#[async_trait]
impl ProviderAccounts for RocketChatProvider {
    fn kind(&self) -> &'static str {
        "rocketchat"
    }

    async fn login_admin(
        &self,
        username: &str,
        password: &Password,
    ) -> Result<ProviderSession, ProviderError> {
        let session = self.login(username, password).await?;
        *self
            .admin_password
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(password.clone());
        Ok(session)
    }

    async fn login_user(
        &self,
        user: &UserId,
        password: &Password,
    ) -> Result<ProviderSession, ProviderError> {
        self.login(&username_for(user), password).await
    }

    async fn logout(&self, session: &ProviderSession) -> Result<(), ProviderError> {
        match self
            .rest
            .post("logout", Some(session), &json!({}), &[])
            .await
        {
            Ok(_) | Err(ProviderError::SessionExpired) => Ok(()),
            Err(err) => Err(err),
        }
    }

    async fn upsert_user(
        &self,
        admin: &ProviderSession,
        user: &UserId,
        profile: &UserProfile,
        password: &Password,
    ) -> Result<(User, Upserted), ProviderError> {
        let email = profile
            .email
            .clone()
            .unwrap_or_else(|| self.default_email(user));
        if let Some(existing) = self.find_user(admin, user).await? {
            let user_id = text(&existing, "_id").ok_or_else(|| bad("a user id"))?;
            let body = json!({
                "userId": user_id,
                "data": {"name": profile.name, "email": email, "password": password.expose(),
                         "nickname": profile.username, "verified": true},
            });
            let answer = self.update_user(admin, &body).await?;
            let doc = answer.get("user").ok_or_else(|| bad("the updated user"))?;
            let mut updated = to_user(user, doc)?;
            // Older servers leave `nickname` and `emails` out of the answer; we just set them.
            updated.username = profile.username.clone();
            updated.email = Some(email);
            return Ok((updated, Upserted::Updated));
        }
        let mut roles = vec!["user"];
        if self.user_role != "user" {
            roles.push(&self.user_role);
        }
        let body = json!({
            "username": username_for(user),
            "name": profile.name,
            "email": email,
            "password": password.expose(),
            "nickname": profile.username,
            "verified": true,
            "roles": roles,
            "joinDefaultChannels": false,
            "requirePasswordChange": false,
            "sendWelcomeEmail": false,
        });
        let answer = match self
            .rest
            .post("users.create", Some(admin), &body, &[])
            .await
        {
            Ok(answer) => answer,
            // A concurrent upsert created it between our lookup and our create.
            Err(ProviderError::Conflict(_)) if self.find_user(admin, user).await?.is_some() => {
                return Box::pin(self.upsert_user(admin, user, profile, password)).await;
            }
            Err(ProviderError::Conflict(_)) => {
                return Err(ProviderError::Conflict(
                    "that e-mail address is already in use".into(),
                ))
            }
            Err(err) => return Err(err),
        };
        let doc = answer.get("user").ok_or_else(|| bad("the created user"))?;
        let mut created = to_user(user, doc)?;
        created.username = profile.username.clone();
        created.email = Some(email);
        Ok((created, Upserted::Created))
    }

    async fn get_user(
        &self,
        admin: &ProviderSession,
        user: &UserId,
    ) -> Result<User, ProviderError> {
        match self.find_user(admin, user).await? {
            Some(doc) => to_user(user, &doc),
            None => Err(ProviderError::NotFound(format!("no user {user}"))),
        }
    }

    async fn delete_user(
        &self,
        admin: &ProviderSession,
        user: &UserId,
    ) -> Result<(), ProviderError> {
        let body = json!({"username": username_for(user), "confirmRelinquish": true});
        match self
            .rest
            .post("users.delete", Some(admin), &body, &[])
            .await
        {
            Ok(_) => Ok(()),
            Err(ProviderError::NotFound(_)) => {
                Err(ProviderError::NotFound(format!("no user {user}")))
            }
            Err(err) => Err(err),
        }
    }

    fn frontend_session(&self, session: &ProviderSession, ttl: Duration) -> FrontendSession {
        FrontendSession {
            provider: "rocketchat",
            user_id: session.user_id.clone(),
            token: session.token.clone(),
            realtime_url: self.realtime_url.clone(),
            expires_at: session.issued_at + ttl,
        }
    }
}
