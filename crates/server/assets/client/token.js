/**
 * Tokens: where they come from, and when they expire.
 *
 * A token is a string, or a function that returns one (or a promise of one).
 * The function is called before every connection attempt and before the
 * current token's `exp`, so that it can fetch a fresh token from the
 * application's backend; a plain string is used as it is (and a connection
 * closed for an expired token then cannot come back).
 *
 * The client reads `exp` from the token's payload to plan its `refresh`; it
 * never checks the signature (the server does).
 */
/** The token `source` gives now. */
export async function resolveToken(source) {
    const t = typeof source === 'function' ? await source() : source;
    if (typeof t !== 'string' || t === '') {
        throw new TypeError('the token function returned no token (a non-empty string is needed)');
    }
    return t;
}
/** The `exp` claim of a JWT, in seconds since the Unix epoch; `undefined` if it has none or is not a JWT. */
export function jwtExpiry(token) {
    const part = token.split('.')[1];
    if (!part)
        return undefined;
    try {
        const b64 = part.replace(/-/g, '+').replace(/_/g, '/');
        const json = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
        const exp = JSON.parse(json).exp;
        return typeof exp === 'number' && Number.isFinite(exp) ? exp : undefined;
    }
    catch {
        return undefined;
    }
}
/**
 * Milliseconds from `now` until a token expiring at `exp` (seconds) should be
 * refreshed: `margin` before `exp`, or halfway there for a token that lives
 * less than twice the margin.
 */
export function refreshDelay(exp, now, margin) {
    const left = exp * 1000 - now;
    return Math.max(0, left - Math.min(margin, left / 2));
}
/** `url` with the token in its `token` query parameter (browsers cannot send an `Authorization` header with a WebSocket). */
export function withToken(url, token) {
    if (token === undefined)
        return url;
    const sep = url.includes('?') ? '&' : '?';
    return `${url}${sep}token=${encodeURIComponent(token)}`;
}
