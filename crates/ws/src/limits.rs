//! Connection caps (global and per IP) and the per-connection rate limiter.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::client_ip::ip_key;
use crate::config::RateLimit;
use crate::metrics::Rejection;
use crate::subjects::SubjectSlot;

/// Counts open connections, globally and per client IP. A slot is taken before
/// the upgrade is answered and given back when the connection ends (or when the
/// upgrade never completes), by dropping its [`Slot`].
pub(crate) struct Limiter {
    max_total: usize,
    max_per_ip: usize,
    /// Open connections in all, and per IP (entries removed at zero).
    state: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// One taken connection slot; dropping it frees the slot.
pub(crate) struct Slot {
    limiter: Arc<Limiter>,
    ip: IpAddr,
    /// The connection's place under its token subject's cap, once known
    /// (boxed: anonymous connections, the many, pay one word for it).
    pub(crate) subject: Option<Box<SubjectSlot>>,
}

impl Slot {
    /// The connection's key under the per-address limits ([`ip_key`]).
    pub(crate) fn ip(&self) -> IpAddr {
        self.ip
    }
}

impl Limiter {
    pub(crate) fn new(max_total: usize, max_per_ip: usize) -> Self {
        Limiter { max_total, max_per_ip, state: Mutex::new((0, HashMap::new())) }
    }

    /// Takes a slot for a connection from `ip` (keyed by [`ip_key`]: an IPv6
    /// /64 is one client).
    pub(crate) fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Rejection> {
        let ip = ip_key(ip);
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if self.max_total != 0 && st.0 >= self.max_total {
            return Err(Rejection::GlobalCap);
        }
        let n = st.1.get(&ip).copied().unwrap_or(0);
        if self.max_per_ip != 0 && n >= self.max_per_ip {
            return Err(Rejection::PerIpCap);
        }
        st.0 += 1;
        st.1.insert(ip, n + 1);
        Ok(Slot { limiter: self.clone(), ip, subject: None })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut st = self.limiter.state.lock().unwrap_or_else(|e| e.into_inner());
        st.0 -= 1;
        if let Some(n) = st.1.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                st.1.remove(&self.ip);
            }
        }
    }
}

/// What the rate limiter says about one inbound frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Process it.
    Allow,
    /// Refuse it with an error.
    Refuse,
    /// Refuse it and close the connection (4100).
    Close,
}

/// A token bucket; see [`RateLimit`].
///
/// The limit itself is not stored: the caller passes the gateway's, which
/// saves 16 bytes in every connection.
pub(crate) struct TokenBucket {
    tokens: f64,
    last: Instant,
    /// Refusals since the bucket was last full.
    strikes: u32,
}

impl TokenBucket {
    pub(crate) fn new(limit: RateLimit, now: Instant) -> Self {
        TokenBucket { tokens: f64::from(limit.burst), last: now, strikes: 0 }
    }

    /// Takes one token: one frame or one call.
    #[cfg(test)]
    pub(crate) fn check(&mut self, now: Instant, limit: &RateLimit) -> Verdict {
        self.take(1, now, limit)
    }

    /// Takes `n` tokens at once (a batch of `n` calls), or none: a batch that
    /// does not fit is refused whole, as one strike. A batch larger than the
    /// burst never fits.
    pub(crate) fn take(&mut self, n: u32, now: Instant, limit: &RateLimit) -> Verdict {
        if limit.per_second <= 0.0 {
            return Verdict::Allow;
        }
        let burst = f64::from(limit.burst);
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * limit.per_second).min(burst);
        if self.tokens >= burst {
            // The client slowed down enough to refill the bucket: forgive it.
            self.strikes = 0;
        }
        let n = f64::from(n);
        if self.tokens >= n {
            self.tokens -= n;
            return Verdict::Allow;
        }
        self.strikes += 1;
        if self.strikes >= limit.max_strikes {
            Verdict::Close
        } else {
            Verdict::Refuse
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_refuses_then_closes_and_refills() {
        let t0 = Instant::now();
        let l = RateLimit { per_second: 10.0, burst: 2, max_strikes: 3 };
        let mut b = TokenBucket::new(l, t0);
        assert_eq!(b.check(t0, &l), Verdict::Allow);
        assert_eq!(b.check(t0, &l), Verdict::Allow);
        assert_eq!(b.check(t0, &l), Verdict::Refuse);
        assert_eq!(b.check(t0, &l), Verdict::Refuse);
        // 100 ms later one token is back.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(b.check(t1, &l), Verdict::Allow);
        assert_eq!(b.check(t1, &l), Verdict::Close);
        // A full refill forgives the strikes.
        let t2 = t1 + Duration::from_secs(1);
        assert_eq!(b.check(t2, &l), Verdict::Allow);
        assert_eq!(b.check(t2, &l), Verdict::Allow);
        assert_eq!(b.check(t2, &l), Verdict::Refuse);
    }

    #[test]
    fn a_batch_takes_one_token_per_call_or_none() {
        let t0 = Instant::now();
        let l = RateLimit { per_second: 10.0, burst: 100, max_strikes: 3 };
        let mut b = TokenBucket::new(l, t0);
        assert_eq!(b.take(100, t0, &l), Verdict::Allow);
        // Empty now: neither another batch nor a single call passes.
        assert_eq!(b.take(100, t0, &l), Verdict::Refuse);
        assert_eq!(b.take(1, t0, &l), Verdict::Refuse);
        // One second refills 10 tokens: 10 calls, not 11.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(b.take(11, t1, &l), Verdict::Close);
        assert_eq!(b.take(10, t1, &l), Verdict::Allow);
    }

    #[test]
    fn caps() {
        let l = Arc::new(Limiter::new(3, 2));
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let s1 = l.try_acquire(a).unwrap();
        let _s2 = l.try_acquire(a).unwrap();
        assert_eq!(l.try_acquire(a).err(), Some(Rejection::PerIpCap));
        let _s3 = l.try_acquire(b).unwrap();
        assert_eq!(l.try_acquire(b).err(), Some(Rejection::GlobalCap));
        drop(s1);
        assert!(l.try_acquire(a).is_ok());
    }

    /// One IPv6 client picks a fresh address of its /64 per connection: the
    /// cap still counts them together.
    #[test]
    fn per_ip_cap_keys_ipv6_by_its_64() {
        let l = Arc::new(Limiter::new(0, 2));
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let _a = l.try_acquire(ip("2001:db8::1")).unwrap();
        let _b = l.try_acquire(ip("2001:db8::2")).unwrap();
        assert_eq!(l.try_acquire(ip("2001:db8::ffff:3")).err(), Some(Rejection::PerIpCap));
        assert!(l.try_acquire(ip("2001:db8:0:1::1")).is_ok(), "another /64 is another client");
    }
}
