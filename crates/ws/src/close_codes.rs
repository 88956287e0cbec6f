//! Close codes the gateway sends, and what each tells a client to do.
//!
//! # Design
//!
//! A close code is an instruction to the client's reconnect logic, so a code
//! stands for one *reason*, and its range says what to do about it (the scheme
//! of Centrifugo's 3000–3499 / 3500–3999 split, moved into the 4000–4999
//! range that RFC 6455 leaves to applications):
//!
//! | range | [`Advice`] | meaning |
//! | --- | --- | --- |
//! | 4000–4099 | [`Advice::Reconnect`] | a transient fault of this connection: reconnect (with backoff and jitter), resubscribe with `since` |
//! | 4100–4199 | [`Advice::ReconnectLater`] | the client misbehaved or the server is overloaded: reconnect, but only after a long backoff (seconds, not milliseconds) |
//! | 4200–4999 | [`Advice::DoNotReconnect`] | reconnecting would fail the same way: stop, and tell the application |
//!
//! Standard codes keep their RFC 6455 meaning: 1001 (going away, the server
//! drains) is [`Advice::Reconnect`]; 1002, 1007 and 1009 mean the client
//! broke the protocol or the size limit, which a reconnect would repeat:
//! [`Advice::DoNotReconnect`].
//!
//! 1008 (policy violation) is no longer sent: it meant rate limit, heartbeat,
//! slow consumer and kick alike, which call for three different reactions.
//! [`POLICY`] stays for embedders that matched on it.
//!
//! The table is the contract of `docs/protocol.md` (*Close codes*); a test
//! (`close_code_groups`) holds every constant here to its advertised group.

/// Server shutting down (graceful drain): reconnect, to another node if any.
pub const GOING_AWAY: u16 = 1001;
/// WebSocket protocol violation by the client.
pub const PROTOCOL: u16 = 1002;
/// Invalid UTF-8 in a text frame.
pub const INVALID_DATA: u16 = 1007;
/// Generic policy violation. No longer sent by the gateway (see the module
/// docs); kept so that code matching on it still compiles.
pub const POLICY: u16 = 1008;
/// Message larger than `max_message_size`.
pub const TOO_BIG: u16 = 1009;
/// A connection handed over by another transport (`Gateway::run_stream`, the
/// axum adapter) that the caps or a drain refuse: reconnect later.
pub const TRY_AGAIN_LATER: u16 = 1013;

/// No pong within `pong_timeout` of a ping: the network path is probably
/// gone. Reconnect.
pub const HEARTBEAT_TIMEOUT: u16 = 4000;
/// The connection's queue overflowed under the `evict` policy (what was queued
/// was sent first). Reconnect and resume with `since`.
pub const SLOW_CONSUMER: u16 = 4001;
/// The connection's token reached its `exp` and no `refresh` replaced it. Get
/// a new token, then reconnect.
pub const TOKEN_EXPIRED: u16 = 4002;
/// The client kept sending past the rate limit. Reconnect after a long backoff.
pub const RATE_LIMITED: u16 = 4100;
/// Removed by the embedding application (`Hub::kick`). Do not reconnect.
pub const KICKED: u16 = 4200;

/// What a client should do after a close code (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Advice {
    /// Reconnect, with the usual backoff and jitter.
    Reconnect,
    /// Reconnect after a long backoff.
    ReconnectLater,
    /// Do not reconnect.
    DoNotReconnect,
}

/// The advice for `code`; `None` for a code outside the gateway's scheme
/// (1000, 1003–1006, 1010–3999: the client decides).
pub fn advice(code: u16) -> Option<Advice> {
    match code {
        GOING_AWAY | 4000..=4099 => Some(Advice::Reconnect),
        TRY_AGAIN_LATER | 4100..=4199 => Some(Advice::ReconnectLater),
        PROTOCOL | INVALID_DATA | TOO_BIG | 4200..=4999 => Some(Advice::DoNotReconnect),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_code_groups() {
        for c in [GOING_AWAY, HEARTBEAT_TIMEOUT, SLOW_CONSUMER, TOKEN_EXPIRED] {
            assert_eq!(advice(c), Some(Advice::Reconnect), "{c}");
        }
        assert_eq!(advice(RATE_LIMITED), Some(Advice::ReconnectLater));
        assert_eq!(advice(TRY_AGAIN_LATER), Some(Advice::ReconnectLater));
        for c in [PROTOCOL, INVALID_DATA, TOO_BIG, KICKED, 4999] {
            assert_eq!(advice(c), Some(Advice::DoNotReconnect), "{c}");
        }
        assert_eq!(advice(1000), None);
        assert_eq!(advice(POLICY), None);
        assert_eq!(advice(5000), None);
    }
}
