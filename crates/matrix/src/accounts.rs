//! `ProviderAccounts`: logins and logouts (client-server API) and user mirroring (Synapse's
//! admin API: `PUT /_synapse/admin/v2/users/…`, deactivation with erasure as delete).

use std::time::Duration;

use async_trait::async_trait;
use imgate_domain::model::{FrontendSession, ProviderSession, Upserted, User, UserProfile};
use imgate_domain::ports::{ProviderAccounts, ProviderError};
use imgate_domain::{AuthToken, Password, ProviderUserId, UserId};
use reqwest::Method;
use serde_json::{json, Value};

use crate::events::{bad, text};
use crate::naming::{localpart_for, server_of};
use crate::MatrixProvider;

impl MatrixProvider {
    async fn login(
        &self,
        localpart: &str,
        password: &Password,
    ) -> Result<ProviderSession, ProviderError> {
        let body = json!({
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": localpart},
            "password": password.expose(),
            "initial_device_display_name": "imgate",
        });
        let url = self.client.url("_matrix/client/v3/login", &[]);
        let answer = match self.client.call(Method::POST, url, None, Some(&body)).await {
            Err(ProviderError::Forbidden(_) | ProviderError::NotFound(_)) => {
                return Err(ProviderError::InvalidCredentials)
            }
            other => other?,
        };
        session_from(&answer)
    }

    /// The Matrix user id of a host user, on the server `session` belongs to.
    pub(crate) fn matrix_id(&self, session: &ProviderSession, user: &UserId) -> String {
        let server = server_of(session.user_id.as_str()).unwrap_or_default();
        format!("@{}:{server}", localpart_for(&self.namespace, user))
    }

    /// A short-lived session of `matrix_id`, from the admin API: how the adapter accepts
    /// invitations on a user's behalf, since the contract adds members rather than inviting.
    pub(crate) async fn act_as(&self, matrix_id: &str) -> Result<ProviderSession, ProviderError> {
        let admin = self.admin_session()?;
        let valid_until = chrono::Utc::now() + Duration::from_secs(120);
        let url = self
            .client
            .url("_synapse/admin/v1/users", &[matrix_id, "login"]);
        let body = json!({"valid_until_ms": valid_until.timestamp_millis()});
        let answer = self
            .client
            .call(Method::POST, url, Some(&admin), Some(&body))
            .await?;
        let token = text(&answer, "access_token").ok_or_else(|| bad("an access token"))?;
        Ok(ProviderSession {
            user_id: ProviderUserId::parse(matrix_id).map_err(|_| bad("a valid user id"))?,
            token: AuthToken::new(token),
            issued_at: chrono::Utc::now(),
        })
    }

    /// Ends a session from [`Self::act_as`] once its work is done, so the homeserver does not
    /// keep a token per join; one that cannot be ended still expires within two minutes.
    pub(crate) async fn done_acting(&self, session: &ProviderSession) {
        if let Err(error) = self.logout(session).await {
            tracing::debug!(error = %error, "cannot end a short-lived session; it expires soon");
        }
    }

    /// The admin API's view of a user, `None` when there is none or it was deleted.
    async fn find_user(
        &self,
        admin: &ProviderSession,
        user: &UserId,
    ) -> Result<Option<Value>, ProviderError> {
        let url = self
            .client
            .url("_synapse/admin/v2/users", &[&self.matrix_id(admin, user)]);
        match self.client.call(Method::GET, url, Some(admin), None).await {
            Ok(found) if found.get("deactivated").and_then(Value::as_bool) == Some(true) => {
                Ok(None)
            }
            Ok(found) => Ok(Some(found)),
            Err(ProviderError::NotFound(_)) => Ok(None),
            Err(err) => Err(err),
        }
    }
}

fn session_from(answer: &Value) -> Result<ProviderSession, ProviderError> {
    let user_id = text(answer, "user_id").ok_or_else(|| bad("a user id"))?;
    let token = text(answer, "access_token").ok_or_else(|| bad("an access token"))?;
    Ok(ProviderSession {
        user_id: ProviderUserId::parse(user_id).map_err(|_| bad("a valid user id"))?,
        token: AuthToken::new(token),
        issued_at: chrono::Utc::now(),
    })
}

/// Account data that keeps the username the host gave, which Matrix has no field for.
const PROFILE_KEY: &str = "im.imgate.profile";

fn to_user(user: &UserId, found: &Value, username: Option<&str>) -> Result<User, ProviderError> {
    let matrix_id = text(found, "name").ok_or_else(|| bad("a user id"))?;
    Ok(User {
        id: user.clone(),
        username: username
            .or_else(|| crate::naming::localpart_of(matrix_id))
            .unwrap_or(matrix_id)
            .to_owned(),
        name: text(found, "displayname").unwrap_or_default().to_owned(),
        email: found
            .get("threepids")
            .and_then(Value::as_array)
            .and_then(|ids| ids.iter().find(|t| text(t, "medium") == Some("email")))
            .and_then(|t| text(t, "address"))
            .map(str::to_owned),
        provider_user_id: ProviderUserId::parse(matrix_id).map_err(|_| bad("a valid user id"))?,
    })
}

#[async_trait]
impl ProviderAccounts for MatrixProvider {
    fn kind(&self) -> &'static str {
        "matrix"
    }

    async fn login_admin(
        &self,
        username: &str,
        password: &Password,
    ) -> Result<ProviderSession, ProviderError> {
        let session = self.login(username, password).await?;
        *self.admin.write().unwrap_or_else(|e| e.into_inner()) = Some(session.clone());
        Ok(session)
    }

    async fn login_user(
        &self,
        user: &UserId,
        password: &Password,
    ) -> Result<ProviderSession, ProviderError> {
        self.login(&localpart_for(&self.namespace, user), password)
            .await
    }

    async fn logout(&self, session: &ProviderSession) -> Result<(), ProviderError> {
        let url = self.client.url("_matrix/client/v3/logout", &[]);
        match self
            .client
            .call(Method::POST, url, Some(session), Some(&json!({})))
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
        let existed = self.find_user(admin, user).await?.is_some();
        let mut body = json!({
            "displayname": profile.name,
            "password": password.expose(),
            // A mirrored user's own sessions survive the host re-sending the same profile.
            "logout_devices": false,
            "deactivated": false,
        });
        if let Some(email) = &profile.email {
            body["threepids"] = json!([{"medium": "email", "address": email}]);
        }
        let matrix_id = self.matrix_id(admin, user);
        let url = self.client.url("_synapse/admin/v2/users", &[&matrix_id]);
        let answer = self
            .client
            .call(Method::PUT, url, Some(admin), Some(&body))
            .await?;
        let own = self.act_as(&matrix_id).await?;
        let url = self.client.url(
            "_matrix/client/v3/user",
            &[&matrix_id, "account_data", PROFILE_KEY],
        );
        let profile_data = json!({"username": profile.username});
        let stored = self
            .client
            .call(Method::PUT, url, Some(&own), Some(&profile_data))
            .await;
        self.done_acting(&own).await;
        stored?;
        let upserted = if existed {
            Upserted::Updated
        } else {
            Upserted::Created
        };
        Ok((to_user(user, &answer, Some(&profile.username))?, upserted))
    }

    async fn get_user(
        &self,
        admin: &ProviderSession,
        user: &UserId,
    ) -> Result<User, ProviderError> {
        let Some(found) = self.find_user(admin, user).await? else {
            return Err(ProviderError::NotFound(format!("no user {user}")));
        };
        let url = self.client.url(
            "_synapse/admin/v1/users",
            &[&self.matrix_id(admin, user), "accountdata"],
        );
        let data = self
            .client
            .call(Method::GET, url, Some(admin), None)
            .await?;
        let username = data
            .get("account_data")
            .and_then(|d| d.get("global"))
            .and_then(|g| g.get(PROFILE_KEY))
            .and_then(|p| text(p, "username"));
        to_user(user, &found, username)
    }

    async fn delete_user(
        &self,
        admin: &ProviderSession,
        user: &UserId,
    ) -> Result<(), ProviderError> {
        if self.find_user(admin, user).await?.is_none() {
            return Err(ProviderError::NotFound(format!("no user {user}")));
        }
        let url = self.client.url(
            "_synapse/admin/v1/deactivate",
            &[&self.matrix_id(admin, user)],
        );
        self.client
            .call(
                Method::POST,
                url,
                Some(admin),
                Some(&json!({"erase": true})),
            )
            .await
            .map(drop)
    }

    fn frontend_session(&self, session: &ProviderSession, ttl: Duration) -> FrontendSession {
        FrontendSession {
            provider: "matrix",
            user_id: session.user_id.clone(),
            token: session.token.clone(),
            // A Matrix client talks to the homeserver's client-server API, `/sync` included.
            realtime_url: self.client.base().as_str().trim_end_matches('/').to_owned(),
            expires_at: session.issued_at + ttl,
        }
    }
}
