/**
 * fanout-client: the JavaScript/TypeScript client of fanout-server, for
 * browsers and Node, with no runtime dependency.
 *
 * ```ts
 * import { Client } from 'fanout-client';
 *
 * const client = new Client('ws://127.0.0.1:8080/ws');
 * const news = client.subscribe('news');
 * news.on('publication', (p) => console.log(p.seq, p.data));
 * news.on('gap', (g) => console.warn('lost messages, reload:', g.reason));
 * client.connect();
 * ```
 *
 * See docs/client.md in the repository for the whole guide.
 */
export { Client } from './client.js';
export { Subscription } from './subscription.js';
export { RpcError, TimeoutError, DisconnectedError, ClosedError, ErrorCodes } from './errors.js';
export { adviceFor, CloseCodes } from './close.js';
export { Backoff } from './backoff.js';
export { jwtExpiry } from './token.js';
