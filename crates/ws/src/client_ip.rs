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

use std::net::{IpAddr, Ipv6Addr};

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
}
