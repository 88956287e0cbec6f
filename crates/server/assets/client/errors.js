/**
 * The errors a call can reject with. Each says whether the call may have
 * reached the server: an `RpcError` is the server's answer; a `TimeoutError`
 * or a `DisconnectedError` leaves it unknown (a `publish` may have been
 * applied), so retry only what is safe to repeat.
 */
/** The server answered the call with a JSON-RPC error (`docs/protocol.md`, *Error codes*). */
export class RpcError extends Error {
    constructor(code, message, data) {
        super(message);
        this.name = 'RpcError';
        this.code = code;
        this.data = data;
    }
}
/** No answer within the call's timeout. */
export class TimeoutError extends Error {
    constructor(message) {
        super(message);
        this.name = 'TimeoutError';
    }
}
/**
 * The connection ended before the answer came (the client reconnects by
 * itself; whether the call was applied is unknown).
 */
export class DisconnectedError extends Error {
    constructor(message) {
        super(message);
        this.name = 'DisconnectedError';
    }
}
/** The client is closed (by `close()`, or by a close code that forbids reconnecting). */
export class ClosedError extends Error {
    constructor(message) {
        super(message);
        this.name = 'ClosedError';
    }
}
/** JSON-RPC error codes of fanout-server. */
export const ErrorCodes = {
    PARSE_ERROR: -32700,
    INVALID_REQUEST: -32600,
    METHOD_NOT_FOUND: -32601,
    INVALID_PARAMS: -32602,
    INTERNAL_ERROR: -32603,
    PERMISSION_DENIED: -32001,
    SUBSCRIPTION_LIMIT: -32002,
    RATE_LIMITED: -32003,
    UNAVAILABLE: -32004,
    TOKEN_REFUSED: -32005,
    TOPIC_LIMIT: -32006,
};
