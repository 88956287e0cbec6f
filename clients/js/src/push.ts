/**
 * What the server sends, parsed: responses (matched by `id`), publications
 * (text and binary pushes), and lag notices (`docs/protocol.md`, *Pushes*).
 */

/** One message of a topic (or sent to this connection alone: `topic` null). */
export interface Publication<T = unknown> {
  /** The topic; `null` for a message sent to this connection alone. */
  topic: string | null;
  /** Its number in the topic's stream, from 1 (0 for direct messages). */
  seq: number;
  /** The topic's stream; a new epoch restarts `seq`. */
  epoch: number;
  /** Publish time, milliseconds since the Unix epoch (the server's clock). */
  ts: number;
  /** The publisher's JSON payload, or the bytes of a binary one. */
  data: T;
  /** Whether `data` is the `Uint8Array` of a binary publish. */
  binary: boolean;
}

/** A JSON-RPC response. */
export interface Response {
  id: number | string | null;
  result?: unknown;
  error?: { code: number; message: string; data?: unknown };
}

/** One thing the server sent. */
export type Incoming =
  | { kind: 'response'; response: Response }
  | { kind: 'publication'; publication: Publication }
  | { kind: 'lagged'; count: number; topic: string | null };

/** Parses a text frame (one object, or a batch's array of responses). */
export function parseText(text: string): Incoming[] {
  const v = JSON.parse(text) as unknown;
  const items = Array.isArray(v) ? v : [v];
  const out: Incoming[] = [];
  for (const m of items) {
    if (m === null || typeof m !== 'object') continue;
    const o = m as Record<string, unknown>;
    if ('jsonrpc' in o && 'id' in o) {
      out.push({ kind: 'response', response: o as unknown as Response });
    } else if (typeof o.lagged === 'number') {
      out.push({ kind: 'lagged', count: o.lagged, topic: typeof o.topic === 'string' ? o.topic : null });
    } else if ('seq' in o) {
      out.push({ kind: 'publication', publication: fromJson(o) });
    }
  }
  return out;
}

/** A publication as JSON gives it: a push, or an entry of a `history` answer (`binary`: base64). */
export function fromJson(o: Record<string, unknown>): Publication {
  const binary = typeof o.binary === 'string';
  return {
    topic: typeof o.topic === 'string' ? o.topic : null,
    seq: Number(o.seq ?? 0),
    epoch: Number(o.epoch ?? 0),
    ts: Number(o.ts ?? 0),
    data: binary ? base64Bytes(o.binary as string) : o.payload,
    binary,
  };
}

/** Parses a binary push: `0x01, topic length, topic, seq, epoch, ts (u64 BE), payload`. */
export function parseBinary(buf: ArrayBuffer): Publication | undefined {
  const bytes = new Uint8Array(buf);
  if (bytes.length < 2 || bytes[0] !== 0x01) return undefined;
  const l = bytes[1]!;
  if (bytes.length < 2 + l + 24) return undefined;
  const view = new DataView(buf);
  const at = 2 + l;
  return {
    topic: l === 0 ? null : new TextDecoder().decode(bytes.subarray(2, at)),
    seq: Number(view.getBigUint64(at)),
    epoch: Number(view.getBigUint64(at + 8)),
    ts: Number(view.getBigUint64(at + 16)),
    data: bytes.slice(at + 24),
    binary: true,
  };
}

function base64Bytes(s: string): Uint8Array {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
