//! Which "client" an address is, for the per-address limits.
//!
//! # Keying
//!
//! The per-IP connection cap and the costly-call limiter count per *client*,
//! not per address: an IPv6 host usually holds a whole /64 (SLAAC, privacy
//! addresses) and can pick a fresh address per connection, so keying on the
//! full address would give one attacker 2^64 separate caps. IPv6 addresses
//! are therefore keyed by their /64 prefix; an IPv4-mapped IPv6 address
//! (`::ffff:a.b.c.d`, what a dual-stack socket reports for IPv4 clients) is
//! keyed as the IPv4 address it carries, so that one client has one key
//! whichever way it came in.
//!
//! # Behind a proxy
//!
//! Behind a reverse proxy every client has the proxy's address. The client's
//! own address is then read from `X-Forwarded-For`, but only when the TCP
//! peer is one of `trusted_proxies` (anyone else could write any address
//! there and pick a fresh per-IP cap per connection). The header is read from
//! the right (the hop nearest to us) leftwards, skipping addresses that are
//! themselves trusted proxies; the first other address is the client. An
//! absent or unparsable header leaves the peer's address. The PROXY protocol
//! is not spoken.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

use http::HeaderMap;

/// An address range, `10.0.0.0/8`, `2001:db8::/32`, or one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is in the range (an IPv4-mapped IPv6 address counts as
    /// its IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Why a [`Cidr`] did not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CidrError(String);

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid address range `{}` (try 10.0.0.0/8 or 2001:db8::/32)", self.0)
    }
}

impl std::error::Error for CidrError {}

impl FromStr for Cidr {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || CidrError(s.to_string());
        let (a, p) = s.trim().split_once('/').map_or((s.trim(), None), |(a, p)| (a, Some(p)));
        let addr: IpAddr = a.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.parse::<u8>().ok().filter(|&p| p <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The client's address: `peer`, or, when `peer` is a trusted proxy, the
/// nearest untrusted address of `X-Forwarded-For` (see the module docs).
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[Cidr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if trusted.is_empty() || !is_trusted(peer) {
        return peer;
    }
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else {
            // Garbage in the chain: nothing left of it can be trusted.
            return peer;
        };
        if !is_trusted(ip) {
            return ip;
        }
    }
    peer
}

/// One `X-Forwarded-For` hop: an address, or an address with a port as some
/// proxies write it (`1.2.3.4:5678`, `[2001:db8::1]:443`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = hop.parse::<std::net::SocketAddr>() {
        return Some(sa.ip());
    }
    // `[v6]` without a port.
    hop.strip_prefix('[')?.strip_suffix(']')?.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6)
}

/// The key of `ip` under the per-address limits (see the module docs).
pub fn ip_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hops_with_ports_parse() {
        use std::net::IpAddr;
        for (hop, ip) in [
            ("1.2.3.4", "1.2.3.4"),
            ("1.2.3.4:5678", "1.2.3.4"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("2001:db8::1", "2001:db8::1"),
        ] {
            assert_eq!(super::parse_hop(hop), Some(ip.parse::<IpAddr>().unwrap()), "{hop}");
        }
        for bad in ["", "x", "1.2.3.4:", "[1.2.3.4]", "1.2.3.4:99999"] {
            assert_eq!(super::parse_hop(bad), None, "{bad}");
        }
    }

    use super::*;

    #[test]
    fn ipv6_is_keyed_by_its_64_and_mapped_v4_as_v4() {
        let k = |s: &str| ip_key(s.parse().unwrap());
        assert_eq!(k("2001:db8:1:2:aaaa::1"), k("2001:db8:1:2:ffff:1:2:3"));
        assert_eq!(k("2001:db8:1:2::5"), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
        assert_ne!(k("2001:db8:1:2::1"), k("2001:db8:1:3::1"));
        assert_eq!(k("::ffff:10.0.0.1"), k("10.0.0.1"));
        assert_ne!(k("10.0.0.1"), k("10.0.0.2"));
    }

    #[test]
    fn cidrs() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()) && !one.contains("127.0.0.2".parse().unwrap()));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:ffff::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains("8.8.8.8".parse().unwrap()));
        for bad in ["10.0.0.0/33", "x/8", "10.0.0.0/", "::/129", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let trusted: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap()];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert("x-forwarded-for", v.parse().unwrap());
            m
        };
        // From a trusted proxy: the nearest untrusted hop.
        assert_eq!(client_ip(ip("10.0.0.1"), &h("203.0.113.9"), &trusted), ip("203.0.113.9"));
        assert_eq!(
            client_ip(ip("10.0.0.1"), &h("1.1.1.1, 203.0.113.9, 10.0.0.7"), &trusted),
            ip("203.0.113.9")
        );
        // From anyone else: the header is ignored.
        assert_eq!(client_ip(ip("198.51.100.1"), &h("203.0.113.9"), &trusted), ip("198.51.100.1"));
        assert_eq!(client_ip(ip("10.0.0.1"), &h("203.0.113.9"), &[]), ip("10.0.0.1"));
        // No header, garbage, or only proxies: the peer.
        assert_eq!(client_ip(ip("10.0.0.1"), &HeaderMap::new(), &trusted), ip("10.0.0.1"));
        assert_eq!(client_ip(ip("10.0.0.1"), &h("1.1.1.1, junk"), &trusted), ip("10.0.0.1"));
        assert_eq!(client_ip(ip("10.0.0.1"), &h("10.0.0.2"), &trusted), ip("10.0.0.1"));
    }
}
