//! `HostRealtime`: the host back end's own realtime channel — invocations pushed to a user's
//! hub connections or to everyone's, who is online, and closing a user's connections.

use std::sync::Arc;

use serde::Serialize;

use crate::ids::UserId;
use crate::ports::{
    Audience, BackplaneError, HostChannel, HostInvocation, HostTargets, Presence, PresenceError,
    TargetRefusal,
};

/// The Close text of connections the host closed.
pub const CLOSED_BY_HOST: &str = "the host application closed this user's connections";

/// The longest target name.
const MAX_TARGET_LEN: usize = 64;

/// A user's hub connections over every node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct UserPresence {
    /// The host's user id.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub user_id: UserId,
    /// Whether the user has a hub connection on some node.
    pub online: bool,
    /// How many hub connections the user has, over every node.
    pub connections: usize,
}

/// What host realtime fails with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostRealtimeError {
    /// A field of the request is wrong; the text names it.
    #[error("{0}")]
    Invalid(String),
    /// The other nodes cannot be reached, so nothing was sent.
    #[error("{0}")]
    Unavailable(String),
}

impl From<BackplaneError> for HostRealtimeError {
    fn from(err: BackplaneError) -> Self {
        Self::Unavailable(err.to_string())
    }
}

impl From<PresenceError> for HostRealtimeError {
    fn from(err: PresenceError) -> Self {
        Self::Unavailable(err.to_string())
    }
}

/// What is wrong with `target` as the name of a host target, if anything: its form, or
/// being one of the `reserved` targets of the hub's own events (clients match names ignoring
/// case, so casing does not make it another target).
pub fn target_name_problem(target: &str, reserved: &[&str]) -> Option<String> {
    let mut chars = target.chars();
    let well_formed = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        && target.len() <= MAX_TARGET_LEN;
    if !well_formed {
        return Some(format!(
            "must be a letter followed by at most {} letters, digits, '_' or '.'",
            MAX_TARGET_LEN - 1
        ));
    }
    reserved
        .iter()
        .any(|name| name.eq_ignore_ascii_case(target))
        .then(|| format!("'{target}' is one of the hub's chat targets; choose another name"))
}

/// Counts a push refused before it reached [`HostRealtime::push`] (an unreadable or
/// oversized body), beside the refusals the service counts itself.
pub fn push_refused(reason: &'static str) {
    metrics::counter!("imgate_host_pushes_refused_total", "reason" => reason).increment(1);
}

/// The host's realtime operations.
pub struct HostRealtime {
    channel: Arc<dyn HostChannel>,
    presence: Arc<dyn Presence>,
    /// The hub's own targets.
    reserved: &'static [&'static str],
    targets: Arc<dyn HostTargets>,
}

impl HostRealtime {
    /// Host realtime over `channel` and `presence`; `reserved` are the targets the hub's own
    /// events use, which the host may not send, and `targets` what the host declared.
    pub fn new(
        channel: Arc<dyn HostChannel>,
        presence: Arc<dyn Presence>,
        reserved: &'static [&'static str],
        targets: Arc<dyn HostTargets>,
    ) -> Self {
        Self {
            channel,
            presence,
            reserved,
            targets,
        }
    }

    /// Sends `invocation` to every hub connection of `audience` on every node; resolves once it
    /// is ordered (see [`HostChannel::send`]).
    pub async fn push(
        &self,
        audience: &Audience,
        invocation: &HostInvocation,
    ) -> Result<(), HostRealtimeError> {
        if let Err((err, reason)) = self.check(invocation) {
            push_refused(reason);
            return Err(err);
        }
        let kind = match audience {
            Audience::User(_) => "user",
            Audience::All => "all",
        };
        match self.channel.send(audience, invocation).await {
            Ok(()) => {
                metrics::counter!("imgate_host_pushes_total", "audience" => kind).increment(1);
                Ok(())
            }
            Err(err) => {
                push_refused("unavailable");
                Err(err.into())
            }
        }
    }

    /// Why `invocation` cannot be sent, and the reason counted in the metrics.
    fn check(&self, invocation: &HostInvocation) -> Result<(), (HostRealtimeError, &'static str)> {
        let target = &invocation.target;
        if let Some(problem) = target_name_problem(target, self.reserved) {
            return Err((
                HostRealtimeError::Invalid(format!("target: {problem}")),
                "invalid_target",
            ));
        }
        if !invocation.arguments.get().trim_start().starts_with('[') {
            return Err((
                HostRealtimeError::Invalid("arguments: must be an array".into()),
                "invalid_arguments",
            ));
        }
        self.targets
            .check(target, &invocation.arguments)
            .map_err(|refusal| match refusal {
                TargetRefusal::Undeclared => (
                    HostRealtimeError::Invalid(format!(
                        "target: '{target}' is not declared in hub.targets, and only declared \
                         targets may be sent (hub.strict_targets)"
                    )),
                    "undeclared_target",
                ),
                TargetRefusal::Invalid { path, message } => (
                    HostRealtimeError::Invalid(format!("{path}: {message}")),
                    "invalid_arguments",
                ),
            })
    }

    /// Whether `user` has hub connections, and how many, over every node.
    pub async fn presence(&self, user: &UserId) -> Result<UserPresence, HostRealtimeError> {
        let connections = self.presence.connections(user).await?;
        Ok(UserPresence {
            user_id: user.clone(),
            online: connections > 0,
            connections,
        })
    }

    /// Closes every hub connection of `user` on every node, without reconnect.
    pub fn close(&self, user: &UserId) -> Result<(), HostRealtimeError> {
        Ok(self.channel.close(user, CLOSED_BY_HOST)?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use serde_json::value::RawValue;

    use super::*;
    use crate::ports::AnyTargets;

    #[derive(Default)]
    struct Recorded {
        sent: Mutex<Vec<(Audience, String, String)>>,
        down: bool,
    }

    #[async_trait]
    impl HostChannel for Recorded {
        async fn send(
            &self,
            audience: &Audience,
            invocation: &HostInvocation,
        ) -> Result<(), BackplaneError> {
            if self.down {
                return Err(BackplaneError::Unavailable("down".into()));
            }
            self.sent.lock().unwrap().push((
                audience.clone(),
                invocation.target.clone(),
                invocation.arguments.get().to_owned(),
            ));
            Ok(())
        }

        fn close(&self, _: &UserId, _: &str) -> Result<(), BackplaneError> {
            Ok(())
        }
    }

    struct Two;

    #[async_trait]
    impl Presence for Two {
        fn set(&self, _: &UserId, _: usize) {}
        async fn connections(&self, _: &UserId) -> Result<usize, PresenceError> {
            Ok(2)
        }
    }

    fn service(channel: Arc<Recorded>) -> HostRealtime {
        HostRealtime::new(
            channel,
            Arc::new(Two),
            &["getRoomMessageNotification"],
            Arc::new(AnyTargets),
        )
    }

    fn invocation(target: &str, arguments: &str) -> HostInvocation {
        HostInvocation {
            target: target.into(),
            arguments: RawValue::from_string(arguments.into()).unwrap(),
        }
    }

    fn bob() -> Audience {
        Audience::User(UserId::parse("bob").unwrap())
    }

    #[tokio::test]
    async fn a_valid_push_goes_out_with_its_arguments_as_sent() {
        let channel = Arc::new(Recorded::default());
        let host = service(channel.clone());
        host.push(
            &bob(),
            &invocation("orders.shipped", r#"[ {"id":7}, "x" ]"#),
        )
        .await
        .unwrap();
        assert_eq!(
            channel.sent.lock().unwrap().as_slice(),
            [(
                bob(),
                "orders.shipped".into(),
                r#"[ {"id":7}, "x" ]"#.into()
            )]
        );
    }

    #[tokio::test]
    async fn bad_targets_and_arguments_are_refused_naming_the_field() {
        let channel = Arc::new(Recorded::default());
        let host = service(channel.clone());
        let long = format!("a{}", "b".repeat(64));
        for target in [
            "",
            "1abc",
            "_a",
            "a-b",
            "a b",
            "é",
            long.as_str(),
            "GETROOMMESSAGENOTIFICATION",
        ] {
            let err = host
                .push(&bob(), &invocation(target, "[]"))
                .await
                .unwrap_err();
            assert!(err.to_string().starts_with("target: "), "{target}: {err}");
        }
        let longest = format!("a{}", "b".repeat(63));
        host.push(&bob(), &invocation(&longest, "[]"))
            .await
            .unwrap();
        for arguments in ["{}", "1", "\"a\"", "null"] {
            let err = host
                .push(&bob(), &invocation("notify", arguments))
                .await
                .unwrap_err();
            assert_eq!(err.to_string(), "arguments: must be an array");
        }
        assert_eq!(channel.sent.lock().unwrap().len(), 1);
    }

    /// Declares `notify`, whose first argument must be a string, and refuses the rest.
    struct OnlyNotify;

    impl HostTargets for OnlyNotify {
        fn check(&self, target: &str, arguments: &RawValue) -> Result<(), TargetRefusal> {
            match (target, arguments.get()) {
                ("notify", r#"["hi"]"#) => Ok(()),
                ("notify", _) => Err(TargetRefusal::Invalid {
                    path: "arguments[0]".into(),
                    message: "must be a string".into(),
                }),
                _ => Err(TargetRefusal::Undeclared),
            }
        }
    }

    #[tokio::test]
    async fn declared_targets_decide_after_the_checks_of_form() {
        let channel = Arc::new(Recorded::default());
        let host = HostRealtime::new(
            channel.clone(),
            Arc::new(Two),
            &["typing"],
            Arc::new(OnlyNotify),
        );
        host.push(&bob(), &invocation("notify", r#"["hi"]"#))
            .await
            .unwrap();
        let refused = |target: &'static str, arguments: &'static str| {
            let host = &host;
            async move {
                host.push(&bob(), &invocation(target, arguments))
                    .await
                    .unwrap_err()
                    .to_string()
            }
        };
        assert_eq!(
            refused("notify", "[1]").await,
            "arguments[0]: must be a string"
        );
        assert!(refused("other", "[]")
            .await
            .starts_with("target: 'other' is not declared"));
        // Form comes first: a reserved or malformed target never reaches the declarations.
        assert!(refused("Typing", "[]").await.contains("chat targets"));
        assert_eq!(refused("notify", "{}").await, "arguments: must be an array");
        assert_eq!(channel.sent.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_backplane_down_is_unavailable() {
        let host = service(Arc::new(Recorded {
            down: true,
            ..Recorded::default()
        }));
        assert!(matches!(
            host.push(&Audience::All, &invocation("notify", "[]")).await,
            Err(HostRealtimeError::Unavailable(_))
        ));
    }

    #[tokio::test]
    async fn presence_says_online_with_the_count() {
        let host = service(Arc::new(Recorded::default()));
        let bob = UserId::parse("bob").unwrap();
        assert_eq!(
            host.presence(&bob).await.unwrap(),
            UserPresence {
                user_id: bob,
                online: true,
                connections: 2
            }
        );
    }
}
