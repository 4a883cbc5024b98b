//! `ProviderDeployment`: the Rocket.Chat settings a gateway depends on, read (and with `fix`,
//! changed) through the admin REST API: the REST rate limiter (`settings/<id>`) and who may
//! bypass it (`permissions.listAll`, `permissions.update`). Why each matters is in
//! `docs/deploy.md`; the endpoints' details in `docs/rocketchat-wire.md`.

use async_trait::async_trait;
use imgate_domain::model::ProviderSession;
use imgate_domain::ports::{
    DeploymentCheck, DeploymentReport, Finding, FindingStatus, ProviderDeployment, ProviderError,
};
use reqwest::Method;
use serde_json::{json, Value};

use crate::mapping::text;
use crate::RocketChatProvider;

/// The permission that exempts a user's calls from the REST limiter.
const BYPASS: &str = "api-bypass-rate-limit";
const ENABLED: &str = "API_Enable_Rate_Limiter";
const CALLS: &str = "API_Enable_Rate_Limiter_Limit_Calls_Default";
const WINDOW: &str = "API_Enable_Rate_Limiter_Limit_Time_Default";

/// The limiter's settings as the admin could read them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limiter {
    /// Read: on or off, and its numbers.
    Known {
        enabled: bool,
        calls: i64,
        window_ms: i64,
    },
    /// The admin may not read privileged settings.
    Unreadable,
}

impl Limiter {
    /// Whether the limiter limits anything (Rocket.Chat skips its rules for zero numbers).
    fn limits(self) -> bool {
        match self {
            Limiter::Known {
                enabled,
                calls,
                window_ms,
            } => enabled && calls > 0 && window_ms > 0,
            Limiter::Unreadable => true,
        }
    }
}

impl RocketChatProvider {
    /// One setting's value; `None` when the server does not have it (`failure()`).
    async fn setting(
        &self,
        admin: &ProviderSession,
        id: &str,
    ) -> Result<Option<Value>, ProviderError> {
        let request =
            self.rest
                .request(Method::GET, &format!("/api/v1/settings/{id}"), Some(admin));
        match self.rest.send("settings", request).await {
            Ok(answer) => Ok(answer.get("value").cloned()),
            Err(ProviderError::Invalid { .. } | ProviderError::NotFound(_)) => Ok(None),
            Err(err) => Err(err),
        }
    }

    async fn limiter(&self, admin: &ProviderSession) -> Result<Limiter, ProviderError> {
        let enabled = match self.setting(admin, ENABLED).await {
            Ok(value) => value.as_ref().and_then(as_bool).unwrap_or(true),
            Err(ProviderError::Forbidden(_)) => return Ok(Limiter::Unreadable),
            Err(err) => return Err(err),
        };
        let calls = self.setting(admin, CALLS).await?;
        let window = self.setting(admin, WINDOW).await?;
        Ok(Limiter::Known {
            enabled,
            calls: calls.as_ref().and_then(as_i64).unwrap_or(10),
            window_ms: window.as_ref().and_then(as_i64).unwrap_or(60_000),
        })
    }

    /// The roles holding the bypass permission (any logged-in user may list permissions).
    async fn bypass_roles(&self, admin: &ProviderSession) -> Result<Vec<String>, ProviderError> {
        let answer = self
            .rest
            .get("permissions.listAll", Some(admin), &[])
            .await?;
        Ok(answer
            .get("update")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|p| text(p, "_id") == Some(BYPASS))
            .map(roles_of)
            .unwrap_or_default())
    }

    /// Gives `role` the bypass; `permissions.update` replaces the role list, so the roles
    /// holding it now are sent along. Returns the roles holding it afterwards.
    async fn grant_bypass(
        &self,
        admin: &ProviderSession,
        holders: &[String],
        role: &str,
    ) -> Result<Vec<String>, ProviderError> {
        let mut roles = holders.to_vec();
        roles.push(role.to_owned());
        let body = json!({"permissions": [{"_id": BYPASS, "roles": roles}]});
        let answer = self
            .rest
            .post("permissions.update", Some(admin), &body, &[])
            .await?;
        Ok(answer
            .get("permissions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|p| text(p, "_id") == Some(BYPASS))
            .map(roles_of)
            .unwrap_or(roles))
    }
}

fn roles_of(permission: &Value) -> Vec<String> {
    permission
        .get("roles")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

fn as_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn as_i64(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// "60 s" (or "1500 ms").
fn window(window_ms: i64) -> String {
    if window_ms % 1000 == 0 {
        format!("{} s", window_ms / 1000)
    } else {
        format!("{window_ms} ms")
    }
}

/// "10 calls per 60 s".
fn rate(calls: i64, window_ms: i64) -> String {
    format!("{calls} calls per {}", window(window_ms))
}

/// The findings for what was read; `not_fixed` says why a requested fix did not happen.
fn assess(
    limiter: Limiter,
    role: &str,
    holders: &[String],
    not_fixed: Option<&str>,
) -> Vec<Finding> {
    let finding = |name: &str, status, message: String| Finding {
        name: name.to_owned(),
        status,
        message,
    };
    let bypassed = holders.iter().any(|r| r == role);
    let mut findings = Vec::new();
    let users = match limiter {
        _ if !limiter.limits() => finding(
            "rate_limiter",
            FindingStatus::Ok,
            format!("Rocket.Chat's REST rate limiter is off ({ENABLED} = false, or zero limits)"),
        ),
        Limiter::Known {
            calls, window_ms, ..
        } if bypassed => finding(
            "rate_limiter",
            FindingStatus::Ok,
            format!(
                "Rocket.Chat limits REST calls to {} per client address and endpoint, but role `{role}` of mirrored users holds {BYPASS}, so their calls are not limited",
                rate(calls, window_ms)
            ),
        ),
        Limiter::Unreadable if bypassed => finding(
            "rate_limiter",
            FindingStatus::Ok,
            format!("role `{role}` of mirrored users holds {BYPASS}, so their calls are not rate limited (the limiter settings themselves are not readable: the admin lacks view-privileged-setting)"),
        ),
        Limiter::Known {
            calls, window_ms, ..
        } => finding(
            "rate_limiter",
            FindingStatus::Warning,
            format!(
                "Rocket.Chat limits every REST endpoint to {} per client address ({ENABLED} = true, {CALLS} = {calls}, {WINDOW} = {window_ms}) and role `{role}`, which mirrored users have, lacks the permission {BYPASS}: all users behind this gateway share those calls and get rate_limited answers. Grant {BYPASS} to role `{role}` (Administration > Permissions, or provider.rate_limit_policy = \"configure\"), or set {ENABLED} = false, or raise {CALLS}.{}",
                rate(calls, window_ms),
                not_fixed.map(|why| format!(" Not changed: {why}.")).unwrap_or_default()
            ),
        ),
        Limiter::Unreadable => finding(
            "rate_limiter",
            FindingStatus::Warning,
            format!(
                "cannot read Rocket.Chat's rate limiter settings ({ENABLED}, {CALLS}, {WINDOW}): the admin account lacks view-privileged-setting. Role `{role}` of mirrored users lacks {BYPASS}, so if the limiter is on (the default: 10 calls per 60 s per client address and endpoint) all users behind this gateway share those calls. Grant {BYPASS} to role `{role}`, or turn the limiter off.{}",
                not_fixed.map(|why| format!(" Not changed: {why}.")).unwrap_or_default()
            ),
        ),
    };
    findings.push(users);
    if let Limiter::Known {
        calls, window_ms, ..
    } = limiter
    {
        findings.push(if limiter.limits() {
            finding(
                "login_rate_limit",
                FindingStatus::Warning,
                format!(
                    "Rocket.Chat limits logins to {} per client address, and no permission lifts that limit: this gateway can log in at most {calls} users per {} (each user logs in once per cached session, and again when the session is rejected or the cache is lost). If more users come online at once, raise {CALLS} or set {ENABLED} = false.",
                    rate(calls, window_ms),
                    window(window_ms)
                ),
            )
        } else {
            finding(
                "login_rate_limit",
                FindingStatus::Ok,
                "logins are not rate limited".into(),
            )
        });
    }
    findings
}

#[async_trait]
impl ProviderDeployment for RocketChatProvider {
    async fn check_deployment(
        &self,
        admin: &ProviderSession,
        check: &DeploymentCheck,
    ) -> Result<DeploymentReport, ProviderError> {
        let limiter = self.limiter(admin).await?;
        let mut holders = self.bypass_roles(admin).await?;
        let role = check.user_role.as_str();
        let mut changes = Vec::new();
        let mut not_fixed = None;
        if check.fix && limiter.limits() && !holders.iter().any(|r| r == role) {
            match self.grant_bypass(admin, &holders, role).await {
                Ok(now) => {
                    changes.push(format!(
                        "granted the permission {BYPASS} to role `{role}` (permissions.update), so mirrored users' calls skip Rocket.Chat's REST rate limiter; roles holding it now: {}",
                        now.join(", ")
                    ));
                    holders = now;
                }
                Err(ProviderError::Forbidden(_)) => {
                    not_fixed = Some(
                        "the admin account may not change permissions (it needs access-permissions)"
                            .to_owned(),
                    );
                }
                Err(ProviderError::Invalid { field, .. }) if field == "invalid-role" => {
                    not_fixed = Some(format!("Rocket.Chat has no role `{role}`"));
                }
                Err(err) => return Err(err),
            }
        }
        Ok(DeploymentReport {
            findings: assess(limiter, role, &holders, not_fixed.as_deref()),
            changes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: Limiter = Limiter::Known {
        enabled: true,
        calls: 10,
        window_ms: 60_000,
    };

    fn statuses(findings: &[Finding]) -> Vec<(&str, FindingStatus)> {
        findings
            .iter()
            .map(|f| (f.name.as_str(), f.status))
            .collect()
    }

    #[test]
    fn a_default_server_warns_with_the_settings_to_change() {
        let findings = assess(DEFAULT, "user", &["admin".into(), "bot".into()], None);
        assert_eq!(
            statuses(&findings),
            [
                ("rate_limiter", FindingStatus::Warning),
                ("login_rate_limit", FindingStatus::Warning)
            ]
        );
        let message = &findings[0].message;
        for needle in [
            "10 calls per 60 s",
            "API_Enable_Rate_Limiter = true",
            "API_Enable_Rate_Limiter_Limit_Calls_Default = 10",
            "API_Enable_Rate_Limiter_Limit_Time_Default = 60000",
            "role `user`",
            "api-bypass-rate-limit",
            "provider.rate_limit_policy",
        ] {
            assert!(message.contains(needle), "{message} lacks {needle}");
        }
    }

    #[test]
    fn the_bypass_or_a_limiter_that_is_off_is_fine() {
        let findings = assess(DEFAULT, "user", &["admin".into(), "user".into()], None);
        assert_eq!(findings[0].status, FindingStatus::Ok);
        assert_eq!(
            findings[1].status,
            FindingStatus::Warning,
            "no permission lifts the login limit"
        );
        let off = Limiter::Known {
            enabled: false,
            calls: 10,
            window_ms: 60_000,
        };
        assert_eq!(
            statuses(&assess(off, "user", &[], None)),
            [
                ("rate_limiter", FindingStatus::Ok),
                ("login_rate_limit", FindingStatus::Ok)
            ]
        );
    }

    #[test]
    fn unreadable_settings_and_failed_fixes_say_why() {
        let findings = assess(
            Limiter::Unreadable,
            "user",
            &[],
            Some("the admin account may not change permissions"),
        );
        assert_eq!(
            statuses(&findings),
            [("rate_limiter", FindingStatus::Warning)]
        );
        assert!(findings[0].message.contains("view-privileged-setting"));
        assert!(findings[0]
            .message
            .contains("Not changed: the admin account may not"));
    }
}
