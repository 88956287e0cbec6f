/**
 * Close codes and what each tells the client to do: the table of
 * `docs/protocol.md` (*Close codes*), mirrored from the server's
 * `fanout_ws::close_codes::advice`.
 *
 * | range | advice |
 * | --- | --- |
 * | 1001, 4000–4099 | `reconnect` (backoff with jitter, resubscribe with `since`) |
 * | 1013, 4100–4199 | `reconnect-later` (a long backoff: seconds) |
 * | 1002, 1007, 1009, 4200–4999 | `stop`: a reconnect would fail the same way |
 *
 * A close the server did not choose (1006: the network went away, the server
 * was killed, the upgrade was refused) is `reconnect` too.
 */
/** Close codes the server sends. */
export const CloseCodes = {
    GOING_AWAY: 1001,
    PROTOCOL: 1002,
    INVALID_DATA: 1007,
    TOO_BIG: 1009,
    TRY_AGAIN_LATER: 1013,
    HEARTBEAT_TIMEOUT: 4000,
    SLOW_CONSUMER: 4001,
    TOKEN_EXPIRED: 4002,
    RATE_LIMITED: 4100,
    KICKED: 4200,
};
/** The advice for a close `code` (see the module docs). */
export function adviceFor(code) {
    if (code === CloseCodes.GOING_AWAY || (code >= 4000 && code <= 4099))
        return 'reconnect';
    if (code === CloseCodes.TRY_AGAIN_LATER || (code >= 4100 && code <= 4199))
        return 'reconnect-later';
    if (code === CloseCodes.PROTOCOL ||
        code === CloseCodes.INVALID_DATA ||
        code === CloseCodes.TOO_BIG ||
        (code >= 4200 && code <= 4999)) {
        return 'stop';
    }
    return 'reconnect';
}
