//! A provider double for the domain services' tests: it tracks logins and valid tokens, serves
//! scripted rooms and history for a valid token, and hands each upstream connection's signals
//! to the test. Everything else is refused as unscripted.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use imgate_domain::model::{
    FileDownload, FileUpload, FrontendSession, HistoryPage, HistoryQuery, Message, NewMessage,
    NewRoom, ProviderSession, Room, UnreadSummary, Upserted, User, UserProfile,
};
use imgate_domain::ports::{
    DeploymentCheck, DeploymentReport, Finding, FindingStatus, ProviderAccounts,
    ProviderDeployment, ProviderError, ProviderFiles, ProviderMessages, ProviderRealtime,
    ProviderRooms, RealtimeSignal, RealtimeStream, SessionSource,
};
use imgate_domain::{AuthToken, FileId, MessageId, Password, ProviderUserId, RoomId, UserId};
use tokio::sync::mpsc;

/// A provider that only knows logins, logouts and one session-checked call.
#[derive(Default)]
pub struct ScriptedProvider {
    logins: AtomicUsize,
    admin_logins: AtomicUsize,
    logouts: AtomicUsize,
    valid: Mutex<HashSet<String>>,
    /// The password every login must use; any password when `None`.
    pub password: Option<String>,
    /// How long a login takes.
    pub login_delay: Duration,
    rooms: Mutex<Vec<Room>>,
    history: Mutex<Vec<Message>>,
    upstreams: Mutex<Vec<(UserId, mpsc::Sender<RealtimeSignal>)>>,
    findings: Mutex<Vec<Finding>>,
    deployment_checks: Mutex<Vec<DeploymentCheck>>,
}

impl ScriptedProvider {
    /// A provider that accepts only `password`.
    pub fn with_password(password: &str) -> Arc<Self> {
        Arc::new(Self {
            password: Some(password.to_owned()),
            login_delay: Duration::from_millis(50),
            ..Self::default()
        })
    }

    /// User logins so far.
    pub fn logins(&self) -> usize {
        self.logins.load(Ordering::SeqCst)
    }

    /// Admin logins so far.
    pub fn admin_logins(&self) -> usize {
        self.admin_logins.load(Ordering::SeqCst)
    }

    /// Logouts so far.
    pub fn logouts(&self) -> usize {
        self.logouts.load(Ordering::SeqCst)
    }

    /// Revokes every token, as an admin resetting sessions would.
    pub fn revoke_all(&self) {
        self.valid.lock().expect("lock").clear();
    }

    /// Sets the rooms `list_rooms` returns.
    pub fn set_rooms(&self, rooms: Vec<Room>) {
        *self.rooms.lock().expect("lock") = rooms;
    }

    /// Adds a message to the history `history` serves.
    pub fn add_history(&self, message: Message) {
        self.history.lock().expect("lock").push(message);
    }

    /// Sets what deployment checks find; a check with `fix` turns each warning into ok.
    pub fn set_findings(&self, findings: Vec<Finding>) {
        *self.findings.lock().expect("lock") = findings;
    }

    /// The deployment checks asked so far.
    pub fn deployment_checks(&self) -> Vec<DeploymentCheck> {
        self.deployment_checks.lock().expect("lock").clone()
    }

    /// Upstream connections opened so far, and for whom; a closed one is one the domain dropped.
    pub fn upstreams(&self) -> Vec<(UserId, mpsc::Sender<RealtimeSignal>)> {
        self.upstreams.lock().expect("lock").clone()
    }

    /// How many upstream connections are open (not yet dropped by the domain).
    pub fn open_upstreams(&self) -> usize {
        self.upstreams
            .lock()
            .expect("lock")
            .iter()
            .filter(|(_, tx)| !tx.is_closed())
            .count()
    }

    fn check(&self, session: &ProviderSession) -> Result<(), ProviderError> {
        if self
            .valid
            .lock()
            .expect("lock")
            .contains(session.token.expose())
        {
            Ok(())
        } else {
            Err(ProviderError::SessionExpired)
        }
    }

    async fn login(
        &self,
        who: &str,
        password: &Password,
    ) -> Result<ProviderSession, ProviderError> {
        tokio::time::sleep(self.login_delay).await;
        if self
            .password
            .as_deref()
            .is_some_and(|p| p != password.expose())
        {
            return Err(ProviderError::InvalidCredentials);
        }
        let n = self.logins.load(Ordering::SeqCst) + self.admin_logins.load(Ordering::SeqCst);
        let token = format!("{who}-token-{n}");
        self.valid.lock().expect("lock").insert(token.clone());
        Ok(ProviderSession {
            user_id: ProviderUserId::parse(format!("p-{who}")).expect("valid id"),
            token: AuthToken::new(token),
            issued_at: chrono::Utc::now(),
        })
    }
}

fn unscripted<T>() -> Result<T, ProviderError> {
    Err(ProviderError::Unavailable("not scripted".into()))
}

#[async_trait]
impl ProviderAccounts for ScriptedProvider {
    fn kind(&self) -> &'static str {
        "scripted"
    }

    async fn login_admin(
        &self,
        username: &str,
        password: &Password,
    ) -> Result<ProviderSession, ProviderError> {
        self.admin_logins.fetch_add(1, Ordering::SeqCst);
        self.login(username, password).await
    }

    async fn login_user(
        &self,
        user: &UserId,
        password: &Password,
    ) -> Result<ProviderSession, ProviderError> {
        self.logins.fetch_add(1, Ordering::SeqCst);
        self.login(user.as_str(), password).await
    }

    async fn logout(&self, session: &ProviderSession) -> Result<(), ProviderError> {
        self.logouts.fetch_add(1, Ordering::SeqCst);
        self.valid
            .lock()
            .expect("lock")
            .remove(session.token.expose());
        Ok(())
    }

    async fn upsert_user(
        &self,
        _: &ProviderSession,
        _: &UserId,
        _: &UserProfile,
        _: &Password,
    ) -> Result<(User, Upserted), ProviderError> {
        unscripted()
    }

    async fn get_user(&self, _: &ProviderSession, _: &UserId) -> Result<User, ProviderError> {
        unscripted()
    }

    async fn delete_user(&self, _: &ProviderSession, _: &UserId) -> Result<(), ProviderError> {
        unscripted()
    }

    fn frontend_session(&self, session: &ProviderSession, ttl: Duration) -> FrontendSession {
        FrontendSession {
            provider: "scripted",
            user_id: session.user_id.clone(),
            token: session.token.clone(),
            realtime_url: "ws://scripted.invalid/websocket".into(),
            expires_at: session.issued_at + ttl,
        }
    }
}

#[async_trait]
impl ProviderRooms for ScriptedProvider {
    async fn list_rooms(&self, session: &ProviderSession) -> Result<Vec<Room>, ProviderError> {
        self.check(session)?;
        Ok(self.rooms.lock().expect("lock").clone())
    }

    async fn create_room(&self, _: &ProviderSession, _: &NewRoom) -> Result<Room, ProviderError> {
        unscripted()
    }

    async fn open_direct(
        &self,
        _: &ProviderSession,
        _: &[UserId],
    ) -> Result<(Room, bool), ProviderError> {
        unscripted()
    }

    async fn get_room(&self, _: &ProviderSession, _: &RoomId) -> Result<Room, ProviderError> {
        unscripted()
    }

    async fn add_members(
        &self,
        _: &ProviderSession,
        _: &RoomId,
        _: &[UserId],
    ) -> Result<(), ProviderError> {
        unscripted()
    }

    async fn remove_member(
        &self,
        _: &ProviderSession,
        _: &RoomId,
        _: &UserId,
    ) -> Result<(), ProviderError> {
        unscripted()
    }

    async fn leave_room(&self, _: &ProviderSession, _: &RoomId) -> Result<(), ProviderError> {
        unscripted()
    }

    async fn mark_read(&self, _: &ProviderSession, _: &RoomId) -> Result<(), ProviderError> {
        unscripted()
    }

    async fn unread(&self, _: &ProviderSession) -> Result<UnreadSummary, ProviderError> {
        unscripted()
    }
}

#[async_trait]
impl ProviderMessages for ScriptedProvider {
    async fn history(
        &self,
        session: &ProviderSession,
        room: &RoomId,
        query: &HistoryQuery,
    ) -> Result<HistoryPage, ProviderError> {
        self.check(session)?;
        let mut messages: Vec<Message> = self
            .history
            .lock()
            .expect("lock")
            .iter()
            .filter(|m| &m.room_id == room)
            .filter(|m| query.after.is_none_or(|after| m.created_at > after))
            .filter(|m| query.before.is_none_or(|before| m.created_at < before))
            .cloned()
            .collect();
        messages.sort_by_key(|m| std::cmp::Reverse(m.created_at));
        Ok(HistoryPage::newest(messages, usize::from(query.limit)))
    }

    async fn send_message(
        &self,
        _: &ProviderSession,
        _: &RoomId,
        _: &NewMessage,
    ) -> Result<Message, ProviderError> {
        unscripted()
    }

    async fn edit_message(
        &self,
        _: &ProviderSession,
        _: &RoomId,
        _: &MessageId,
        _: &str,
    ) -> Result<Message, ProviderError> {
        unscripted()
    }

    async fn delete_message(
        &self,
        _: &ProviderSession,
        _: &RoomId,
        _: &MessageId,
    ) -> Result<(), ProviderError> {
        unscripted()
    }

    async fn set_typing(
        &self,
        _: &ProviderSession,
        _: &RoomId,
        _: bool,
    ) -> Result<(), ProviderError> {
        unscripted()
    }
}

#[async_trait]
impl ProviderFiles for ScriptedProvider {
    async fn upload_file(
        &self,
        _: &ProviderSession,
        _: &RoomId,
        _: FileUpload,
    ) -> Result<Message, ProviderError> {
        unscripted()
    }

    async fn download_file(
        &self,
        _: &ProviderSession,
        _: &FileId,
        _: &str,
    ) -> Result<FileDownload, ProviderError> {
        unscripted()
    }
}

#[async_trait]
impl ProviderRealtime for ScriptedProvider {
    async fn connect_realtime(
        &self,
        user: &UserId,
        _: Arc<dyn SessionSource>,
    ) -> Result<RealtimeStream, ProviderError> {
        let (tx, rx) = mpsc::channel(64);
        self.upstreams
            .lock()
            .expect("lock")
            .push((user.clone(), tx));
        Ok(Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|signal| (signal, rx))
        })))
    }
}

#[async_trait]
impl ProviderDeployment for ScriptedProvider {
    async fn check_deployment(
        &self,
        admin: &ProviderSession,
        check: &DeploymentCheck,
    ) -> Result<DeploymentReport, ProviderError> {
        self.check(admin)?;
        self.deployment_checks
            .lock()
            .expect("lock")
            .push(check.clone());
        let mut findings = self.findings.lock().expect("lock");
        let mut changes = Vec::new();
        if check.fix {
            for finding in findings.iter_mut() {
                if finding.status == FindingStatus::Warning {
                    finding.status = FindingStatus::Ok;
                    changes.push(format!(
                        "fixed {} for role {}",
                        finding.name, check.user_role
                    ));
                }
            }
        }
        Ok(DeploymentReport {
            findings: findings.clone(),
            changes,
        })
    }
}
