//! The client's address when the gateway sits behind reverse proxies: `X-Forwarded-For` is
//! believed only when the connection comes from a proxy listed in `server.trusted_proxies`,
//! otherwise anyone could claim any address.

use std::net::IpAddr;

use actix_web::dev::ServiceRequest;
use ipnet::IpNet;

/// The proxies whose `X-Forwarded-For` the gateway believes.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses addresses (`10.0.0.5`) and networks (`10.0.0.0/8`); the error names the entry.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        entries
            .iter()
            .map(|entry| {
                let entry = entry.as_ref().trim();
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("`{entry}` is not an IP address or network"))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address: the peer's, unless the peer is a trusted proxy; then the
    /// right-most `X-Forwarded-For` entry that is not itself a trusted proxy (entries to its
    /// left were written by the client and prove nothing).
    pub fn client_ip(&self, peer: Option<IpAddr>, forwarded_for: &[&str]) -> Option<IpAddr> {
        let peer = peer?;
        if !self.trusts(peer) {
            return Some(peer);
        }
        let mut client = peer;
        for entry in forwarded_for
            .iter()
            .rev()
            .flat_map(|header| header.rsplit(','))
        {
            let Ok(ip) = entry.trim().parse::<IpAddr>() else {
                break;
            };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        Some(client)
    }

    /// [`Self::client_ip`] of a request.
    pub fn client_of(&self, req: &ServiceRequest) -> Option<IpAddr> {
        let forwarded: Vec<&str> = req
            .headers()
            .get_all("x-forwarded-for")
            .filter_map(|value| value.to_str().ok())
            .collect();
        self.client_ip(req.peer_addr().map(|addr| addr.ip()), &forwarded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_a_trusted_peer() {
        let proxies = TrustedProxies::parse(&["127.0.0.1", "10.0.0.0/8"]).unwrap();
        // A client talking directly cannot claim another address.
        assert_eq!(
            proxies.client_ip(Some(ip("203.0.113.9")), &["198.51.100.1"]),
            Some(ip("203.0.113.9"))
        );
        // Through nginx: the address nginx appended.
        assert_eq!(
            proxies.client_ip(Some(ip("127.0.0.1")), &["198.51.100.1, 203.0.113.9"]),
            Some(ip("203.0.113.9"))
        );
        // Through two trusted proxies, over two header lines.
        assert_eq!(
            proxies.client_ip(Some(ip("127.0.0.1")), &["203.0.113.9", "10.1.2.3"]),
            Some(ip("203.0.113.9"))
        );
        // Garbage stops the walk at the last address a trusted proxy vouched for.
        assert_eq!(
            proxies.client_ip(Some(ip("127.0.0.1")), &["nonsense, 10.1.2.3"]),
            Some(ip("10.1.2.3"))
        );
        // No header: the proxy itself.
        assert_eq!(
            proxies.client_ip(Some(ip("127.0.0.1")), &[]),
            Some(ip("127.0.0.1"))
        );
        // Nothing trusted: the peer, whatever the header says.
        assert_eq!(
            TrustedProxies::default().client_ip(Some(ip("127.0.0.1")), &["203.0.113.9"]),
            Some(ip("127.0.0.1"))
        );
    }

    #[test]
    fn entries_that_are_not_addresses_are_named() {
        let err = TrustedProxies::parse(&["10.0.0.0/8", "nginx.local"]).unwrap_err();
        assert!(err.contains("nginx.local"), "{err}");
    }
}
