//! The limiter for costly calls, shared by every connection of one client.
//!
//! # Why
//!
//! The per-connection token bucket ([`crate::RateLimit`]) bounds what one
//! connection sends, but one address may hold up to `max_connections_per_ip`
//! connections and one user as many tokens as it likes: 1,000 connections ×
//! 100 calls/s is 100,000 membership changes per second, each a copy-on-write
//! of a topic's subscriber snapshot. The calls that cost the server more than
//! a reply — `subscribe`, `unsubscribe`, `refresh` (an HMAC and a permission
//! swap) — are therefore also charged to two shared buckets: one per client
//! address (IPv6 by /64, see [`crate::client_ip`]) and one per token subject
//! (`sub`), so that neither more connections nor more addresses buy more.
//!
//! `publish` is not charged here: it is bounded per connection, needs a token
//! whose `publish` claim names the topic, and its path stays free of locks.
//!
//! # Shape
//!
//! Two maps (addresses, subjects) of token buckets, each behind one mutex,
//! taken only by the costly calls (never by deliveries). A bucket that has
//! refilled to full is the same as no bucket, so entries are dropped then:
//! when a map grows past its sweep mark, the full buckets are removed and the
//! mark moves to twice what is left (amortised O(1) per call; the maps hold
//! at most the clients active within the last `burst / per_second` seconds).
//! A refusal is answered `-32003` with `data.scope` `"ip"` or `"subject"`;
//! it is no strike against the connection.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Calls per second and burst of the costly-call buckets (per address and
/// per subject).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KeyedRate {
    /// Tokens added per second (0 disables the limiter).
    pub per_second: f64,
    /// Bucket size.
    pub burst: u32,
}

impl Default for KeyedRate {
    fn default() -> Self {
        KeyedRate { per_second: 200.0, burst: 1_000 }
    }
}

/// Which shared bucket refused a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The client's address (IPv6: its /64).
    Ip,
    /// The token's subject.
    Subject,
}

impl Scope {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Scope::Ip => "ip",
            Scope::Subject => "subject",
        }
    }
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

struct Map<K> {
    entries: HashMap<K, Bucket>,
    /// Sweep when `entries` grows past this.
    sweep_at: usize,
}

const MIN_SWEEP: usize = 1024;

impl<K: Hash + Eq> Map<K> {
    fn new() -> Self {
        Map { entries: HashMap::new(), sweep_at: MIN_SWEEP }
    }

    fn refill(b: &mut Bucket, rate: KeyedRate, now: Instant) {
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate.per_second).min(f64::from(rate.burst));
        b.last = now;
    }

    /// Whether the key's bucket holds a token (without taking it).
    fn has<Q>(&mut self, key: &Q, rate: KeyedRate, now: Instant) -> bool
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match self.entries.get_mut(key) {
            None => rate.burst >= 1,
            Some(b) => {
                Self::refill(b, rate, now);
                b.tokens >= 1.0
            }
        }
    }

    /// Takes a token from the key's bucket (after [`Map::has`] said there is
    /// one); `make` builds the owned key only for a new entry.
    fn take<Q>(&mut self, key: &Q, make: impl FnOnce() -> K, rate: KeyedRate, now: Instant)
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let burst = f64::from(rate.burst);
        match self.entries.get_mut(key) {
            Some(b) => b.tokens -= 1.0,
            None => {
                self.entries.insert(make(), Bucket { tokens: burst - 1.0, last: now });
            }
        }
        if self.entries.len() > self.sweep_at {
            self.entries.retain(|_, b| {
                Self::refill(b, rate, now);
                b.tokens < burst
            });
            self.sweep_at = (2 * self.entries.len()).max(MIN_SWEEP);
        }
    }
}

/// Costly-call buckets per address and per subject (see the module docs).
pub(crate) struct KeyedLimiter {
    rate: KeyedRate,
    ips: Mutex<Map<IpAddr>>,
    subjects: Mutex<Map<Box<str>>>,
}

impl KeyedLimiter {
    pub(crate) fn new(rate: KeyedRate) -> Self {
        KeyedLimiter { rate, ips: Mutex::new(Map::new()), subjects: Mutex::new(Map::new()) }
    }

    /// Charges one costly call to `ip` (already keyed: see
    /// [`crate::client_ip::ip_key`]) and to `subject`, or to neither.
    pub(crate) fn charge(&self, ip: IpAddr, subject: Option<&str>, now: Instant) -> Result<(), Scope> {
        if self.rate.per_second <= 0.0 {
            return Ok(());
        }
        // Lock order: addresses, then subjects (the only place both are held).
        let mut ips = self.ips.lock().unwrap_or_else(|e| e.into_inner());
        if !ips.has(&ip, self.rate, now) {
            return Err(Scope::Ip);
        }
        if let Some(sub) = subject {
            let mut subs = self.subjects.lock().unwrap_or_else(|e| e.into_inner());
            if !subs.has(sub, self.rate, now) {
                return Err(Scope::Subject);
            }
            subs.take(sub, || sub.into(), self.rate, now);
        }
        ips.take(&ip, || ip, self.rate, now);
        Ok(())
    }

    #[cfg(test)]
    fn len(&self) -> (usize, usize) {
        let ips = self.ips.lock().unwrap().entries.len();
        (ips, self.subjects.lock().unwrap().entries.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn shared_by_address_and_by_subject() {
        let l = KeyedLimiter::new(KeyedRate { per_second: 1.0, burst: 2 });
        let t0 = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(l.charge(a, None, t0), Ok(()));
        assert_eq!(l.charge(a, Some("u"), t0), Ok(()));
        assert_eq!(l.charge(a, None, t0), Err(Scope::Ip));
        // Another address, same subject: the subject has one call left.
        assert_eq!(l.charge(b, Some("u"), t0), Ok(()));
        assert_eq!(l.charge(b, Some("u"), t0), Err(Scope::Subject));
        // A refused call took nothing: `b` still has its second token.
        assert_eq!(l.charge(b, None, t0), Ok(()));
        // One second gives one token back.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(l.charge(a, None, t1), Ok(()));
        assert_eq!(l.charge(a, None, t1), Err(Scope::Ip));
    }

    #[test]
    fn full_buckets_are_swept() {
        let l = KeyedLimiter::new(KeyedRate { per_second: 1000.0, burst: 10 });
        let t0 = Instant::now();
        for i in 0..(MIN_SWEEP as u32 + 1) {
            let ip = IpAddr::from(i.to_be_bytes());
            l.charge(ip, None, t0).unwrap();
        }
        // Every bucket refills within 1 ms; the next insert past the mark sweeps.
        let t1 = t0 + Duration::from_secs(1);
        for i in 0..(2 * MIN_SWEEP as u32) {
            l.charge(IpAddr::from((i + 1_000_000).to_be_bytes()), None, t1).unwrap();
        }
        // The first 1,025 (full again) went at the sweep; the new ones stay.
        assert_eq!(l.len().0, 2 * MIN_SWEEP);
    }

    #[test]
    fn off_when_rate_is_zero() {
        let l = KeyedLimiter::new(KeyedRate { per_second: 0.0, burst: 0 });
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..10_000 {
            assert_eq!(l.charge(ip, Some("u"), Instant::now()), Ok(()));
        }
        assert_eq!(l.len(), (0, 0));
    }
}
