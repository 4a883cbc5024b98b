//! Key and channel names, all in one place so `docs/redis.md` can list them.
//!
//! Every name is `{prefix}:{<user>}:<what>`. The braces are a Redis Cluster hash tag: all of a
//! user's keys land in one slot, so the Lua scripts that touch two of them stay legal there.
//! Whatever the prefix or user id contain, the first `{…}` of a name lies within the common
//! start `{prefix}:{<user>}`, so a user's keys always share a slot. The one name of no user is
//! the backplane's channel to every node, `{prefix}:all`.

use imgate_domain::UserId;

/// Builds this deployment's names.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    fn user_key(&self, user: &UserId, what: &str) -> String {
        format!("{}:{{{}}}:{}", self.prefix, user.as_str(), what)
    }

    /// The cached provider session (JSON).
    pub(crate) fn session(&self, user: &UserId) -> String {
        self.user_key(user, "session")
    }

    /// The single-flight login lock; holds the login attempt's id.
    pub(crate) fn login_lock(&self, user: &UserId) -> String {
        self.user_key(user, "login-lock")
    }

    /// The outcome of the last failed login attempt, read by waiters on other nodes.
    pub(crate) fn login_failure(&self, user: &UserId) -> String {
        self.user_key(user, "login-failed")
    }

    /// The upstream lease: `holder:fence`.
    pub(crate) fn lease(&self, user: &UserId) -> String {
        self.user_key(user, "lease")
    }

    /// The lease's fencing counter; never expires, so fences never go back.
    pub(crate) fn lease_fence(&self, user: &UserId) -> String {
        self.user_key(user, "lease-fence")
    }

    /// The provider password the host set for the user, in clear; no TTL.
    pub(crate) fn password(&self, user: &UserId) -> String {
        self.user_key(user, "password")
    }

    /// The pub/sub channel of backplane messages for one user's connections.
    pub(crate) fn user_channel(&self, user: &UserId) -> String {
        self.user_key(user, "events")
    }

    /// Each node's count of the user's hub connections: a hash of node id to count.
    pub(crate) fn presence(&self, user: &UserId) -> String {
        self.user_key(user, "presence")
    }

    /// Present, with a TTL its node renews, while that node lives: only the counts of live
    /// nodes count.
    pub(crate) fn node_alive(&self, node: &str) -> String {
        format!("{}:node:{}:alive", self.prefix, node)
    }

    /// The pub/sub channel of backplane messages for every connection; every node
    /// subscribes to it.
    pub(crate) fn all_channel(&self) -> String {
        format!("{}:all", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> UserId {
        UserId::parse(id).unwrap()
    }

    #[test]
    fn names_carry_the_prefix_and_a_hash_tag_per_user() {
        let keys = Keys::new("imgate");
        assert_eq!(keys.session(&user("alice")), "imgate:{alice}:session");
        assert_eq!(
            keys.lease_fence(&user("alice")),
            "imgate:{alice}:lease-fence"
        );
        assert_eq!(keys.user_channel(&user("bob")), "imgate:{bob}:events");
        assert_eq!(keys.all_channel(), "imgate:all");
        assert_eq!(keys.password(&user("bob")), "imgate:{bob}:password");
        assert_eq!(keys.presence(&user("bob")), "imgate:{bob}:presence");
        assert_eq!(keys.node_alive("a@x1"), "imgate:node:a@x1:alive");
    }
}
