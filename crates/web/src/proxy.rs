//! The client's address when TDS sits behind reverse proxies (SPEC §11): `X-Forwarded-For` is
//! believed only when the TCP peer is one of the configured proxies, and then only as far as the
//! chain of trusted proxies goes. Everything that keys on the client (login lockout, reset
//! throttling, audit, sessions) uses this address, so that clients behind one proxy are told
//! apart and a client cannot pick its own address by sending the header itself.

pub use ipnet::IpNet;
use std::net::IpAddr;

/// The client as seen through `trusted` proxies: the TCP `peer` when it is not a trusted proxy;
/// otherwise the right-most address of `X-Forwarded-For` (all the header's values, in order)
/// that is not a trusted proxy itself. An entry that is not an address stops the walk (whoever
/// wrote it is not to be believed further) and the last trusted hop is the client.
pub fn client_addr<'a>(
    peer: IpAddr,
    forwarded_for: impl Iterator<Item = &'a str>,
    trusted: &[IpNet],
) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(&canonical(*ip)));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<&str> = forwarded_for.flat_map(|v| v.split(',')).map(str::trim).collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else { break };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    canonical(client)
}

/// An IPv4 address written as IPv6 (`::ffff:10.0.0.1`, what a dual-stack socket reports) is the
/// IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    }
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` or `[2001:db8::1]:443`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    hop.parse::<std::net::SocketAddr>().ok().map(|s| s.ip())
}

/// Parses the `trusted_proxies` setting: addresses or CIDR networks.
pub fn parse_trusted(entries: &[String]) -> Result<Vec<IpNet>, String> {
    entries
        .iter()
        .map(|e| {
            let e = e.trim();
            e.parse::<IpNet>().or_else(|_| e.parse::<IpAddr>().map(IpNet::from)).map_err(|_| {
                format!("trusted_proxies: {e:?} is neither an IP address nor a network like 10.0.0.0/8")
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_forwarded_address_counts_only_through_trusted_proxies() {
        let trusted = parse_trusted(&["127.0.0.1".into(), "10.0.0.0/8".into()]).unwrap();
        let cases: &[(&str, &[&str], &str)] = &[
            // No proxy in between: the header is the client's own words, ignored.
            ("203.0.113.9", &["198.51.100.1"], "203.0.113.9"),
            // The proxy says who connected to it.
            ("127.0.0.1", &["198.51.100.1"], "198.51.100.1"),
            // A client that sends its own header cannot choose its address: the right-most
            // untrusted hop is the one the proxy saw.
            ("127.0.0.1", &["6.6.6.6, 198.51.100.1"], "198.51.100.1"),
            ("127.0.0.1", &["6.6.6.6", "198.51.100.1"], "198.51.100.1"),
            // Two trusted proxies in a row.
            ("127.0.0.1", &["198.51.100.1, 10.1.2.3"], "198.51.100.1"),
            // Garbage stops the walk at the last trusted hop.
            ("127.0.0.1", &["198.51.100.1, junk"], "127.0.0.1"),
            ("127.0.0.1", &[], "127.0.0.1"),
            ("127.0.0.1", &["[2001:db8::7]:4711"], "2001:db8::7"),
            ("127.0.0.1", &["198.51.100.1:5000"], "198.51.100.1"),
            // A dual-stack socket's mapped address is the IPv4 one.
            ("::ffff:127.0.0.1", &["198.51.100.1"], "198.51.100.1"),
        ];
        for (peer, xff, want) in cases {
            assert_eq!(client_addr(ip(peer), xff.iter().copied(), &trusted), ip(want), "{peer} {xff:?}");
        }
        assert_eq!(client_addr(ip("127.0.0.1"), ["198.51.100.1"].into_iter(), &[]), ip("127.0.0.1"));
    }

    #[test]
    fn a_bad_trusted_proxy_setting_says_which_entry() {
        let e = parse_trusted(&["10.0.0.0/8".into(), "proxy.local".into()]).unwrap_err();
        assert!(e.contains("proxy.local"), "{e}");
    }
}
