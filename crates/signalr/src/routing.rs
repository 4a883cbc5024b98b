//! Which node serves a user's hub connections: the one holding the user's upstream, so that
//! most deliveries stay on one node.
//!
//! A node with a route (`hub.route`) names itself `{route}@{unique}` among the nodes sharing
//! leases, and negotiate hands out connection ids `{route}.{random}` carrying the route of the
//! upstream's node. A proxy maps that prefix to the node; a node that receives a connection
//! anyway (no proxy, a node that died) serves it, and the backplane brings it the user's
//! messages.

use base64::Engine;

/// Length of [`random_id`]'s output: 16 random bytes in unpadded URL-safe base64.
const RANDOM_LEN: usize = 22;

/// A fresh unguessable id.
pub(crate) fn random_id() -> String {
    let bytes: [u8; 16] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A fresh connection id for a proxy to route to the node of `route`, if any.
pub(crate) fn routed_id(route: Option<&str>) -> String {
    match route {
        Some(route) => format!("{route}.{}", random_id()),
        None => random_id(),
    }
}

/// A fresh connection id like [`routed_id`]'s for a connection that may resume (stateful
/// reconnect): the suffix makes it unlike any id [`is_id_shaped`] accepts, so no node but the
/// one holding it takes it over, while a proxy still routes it by its prefix.
pub(crate) fn resumable_id(route: Option<&str>) -> String {
    format!("{}.r", routed_id(route))
}

/// The node id of the node whose route is `route` (empty: none), unique by `unique`.
pub fn node_id(route: &str, unique: &str) -> String {
    if route.is_empty() {
        unique.to_owned()
    } else {
        format!("{route}@{unique}")
    }
}

/// The route in a node id made by [`node_id`], if it has one.
pub(crate) fn route_of(node: &str) -> Option<&str> {
    node.split_once('@')
        .map(|(route, _)| route)
        .filter(|route| !route.is_empty())
}

/// Whether `key` has the shape of an id hubs hand out, so only those are taken over.
pub(crate) fn is_id_shaped(key: &str) -> bool {
    let random = match key.split_once('.') {
        Some((route, random)) => {
            let route_ok = !route.is_empty()
                && route.len() <= 32
                && route
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !route_ok {
                return false;
            }
            random
        }
        None => key,
    };
    random.len() == RANDOM_LEN
        && random
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_the_route_and_only_hub_shaped_ids_pass() {
        let routed = routed_id(Some("node-a"));
        assert!(routed.starts_with("node-a."), "{routed}");
        assert!(is_id_shaped(&routed));
        assert!(is_id_shaped(&routed_id(None)));
        for resumable in [resumable_id(Some("node-a")), resumable_id(None)] {
            assert!(!is_id_shaped(&resumable), "{resumable}");
        }
        assert!(resumable_id(Some("node-a")).starts_with("node-a."));
        for bad in [
            "",
            "short",
            "Node.AAAAAAAAAAAAAAAAAAAAAA",
            ".AAAAAAAAAAAAAAAAAAAAAA",
            "a.b",
        ] {
            assert!(!is_id_shaped(bad), "{bad}");
        }
    }

    #[test]
    fn node_ids_name_their_route() {
        assert_eq!(route_of(&node_id("b", "host-1234")), Some("b"));
        assert_eq!(route_of(&node_id("", "host-1234")), None);
        assert_eq!(route_of("host.example.com-x"), None);
    }
}
