/**
 * Hostile yamux peers for tests: raw `ws` sockets that speak hand-written frames, with no wslis code in
 * the loop, so a test can send what no well-behaved peer would (a million pings in one message, SYNs
 * beyond any backlog, headers that lie about their length) and stop reading its socket at will.
 *
 * The frame builders here are written from hashicorp/yamux spec.md on purpose, not imported from
 * src/yamux: a bug in our codec must not be able to hide in the attacker too.
 */

import type { AddressInfo } from "node:net";
import WebSocket, { WebSocketServer } from "ws";

/** Frame types and flags, from the spec. */
export const T = { Data: 0, WindowUpdate: 1, Ping: 2, GoAway: 3 } as const;
export const F = { SYN: 1, ACK: 2, FIN: 4, RST: 8 } as const;
/** GoAway codes, from the spec. */
export const GoAway = { Normal: 0, ProtocolError: 1, InternalError: 2 } as const;

/** Writes one 12-byte header at `at`. */
export function putHeader(into: Uint8Array, at: number, type: number, flags: number, streamID: number, length: number): void {
  into[at] = 0;
  into[at + 1] = type;
  into[at + 2] = (flags >>> 8) & 0xff;
  into[at + 3] = flags & 0xff;
  new DataView(into.buffer, into.byteOffset, into.byteLength).setUint32(at + 4, streamID >>> 0);
  new DataView(into.buffer, into.byteOffset, into.byteLength).setUint32(at + 8, length >>> 0);
}

/** One frame: a header and, for Data, `body` (whose length is the header's unless `length` says otherwise). */
export function frame(type: number, flags: number, streamID: number, length: number, body?: Uint8Array): Buffer {
  const out = Buffer.alloc(12 + (body?.length ?? 0));
  putHeader(out, 0, type, flags, streamID, length);
  if (body) out.set(body, 12);
  return out;
}

export const ping = (opaque: number, flags: number = F.SYN) => frame(T.Ping, flags, 0, opaque);
export const windowUpdate = (streamID: number, flags: number, delta: number) => frame(T.WindowUpdate, flags, streamID, delta);
export const data = (streamID: number, flags: number, body: Uint8Array) => frame(T.Data, flags, streamID, body.length, body);
export const goAway = (code: number) => frame(T.GoAway, 0, 0, code);

/** What one frame of a flood is, given its index: header fields only (no bodies: floods are of headers). */
export type HeaderAt = (i: number) => [type: number, flags: number, streamID: number, length: number];

/** `count` header-only frames in one buffer (one WebSocket message when sent), made by `at`. */
export function headers(count: number, at: HeaderAt): Buffer {
  const out = Buffer.allocUnsafe(count * 12);
  for (let i = 0; i < count; i++) {
    const [type, flags, streamID, length] = at(i);
    putHeader(out, i * 12, type, flags, streamID, length);
  }
  return out;
}

/** A parsed inbound frame (bodies are skipped, only their length is kept). */
export interface SeenFrame {
  type: number;
  flags: number;
  streamID: number;
  length: number;
}

/**
 * Reads the frames a wslis peer sends, however they were split into messages; keeps counts per type,
 * every GoAway code, the RSTs, and the frames themselves up to `keep` of them (a flood's replies are
 * counted, not kept).
 */
export class FrameReader {
  readonly counts = { data: 0, windowUpdate: 0, ping: 0, pong: 0, goAway: 0, rst: 0, syn: 0, ack: 0 };
  readonly goAwayCodes: number[] = [];
  readonly frames: SeenFrame[] = [];
  bytes = 0;
  readonly #keep: number;
  readonly #header = Buffer.alloc(12);
  #headerFill = 0;
  #skip = 0;
  #listeners = new Set<(f: SeenFrame) => void>();

  constructor(keep = 10_000) {
    this.#keep = keep;
  }

  /** Calls `fn` with every frame from now on; returns an unsubscribe function. */
  on(fn: (f: SeenFrame) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /** Resolves with the first frame (already seen or future) that `match` accepts. */
  next(match: (f: SeenFrame) => boolean): Promise<SeenFrame> {
    const seen = this.frames.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve) => {
      const off = this.on((f) => {
        if (match(f)) {
          off();
          resolve(f);
        }
      });
    });
  }

  feed(chunk: Uint8Array): void {
    this.bytes += chunk.length;
    let at = 0;
    while (at < chunk.length) {
      if (this.#skip > 0) {
        const n = Math.min(this.#skip, chunk.length - at);
        this.#skip -= n;
        at += n;
        continue;
      }
      const n = Math.min(12 - this.#headerFill, chunk.length - at);
      this.#header.set(chunk.subarray(at, at + n), this.#headerFill);
      this.#headerFill += n;
      at += n;
      if (this.#headerFill < 12) return;
      this.#headerFill = 0;
      const h = this.#header;
      const f: SeenFrame = { type: h[1]!, flags: h.readUInt16BE(2), streamID: h.readUInt32BE(4), length: h.readUInt32BE(8) };
      if (f.type === T.Data) {
        this.counts.data++;
        this.#skip = f.length;
      } else if (f.type === T.WindowUpdate) this.counts.windowUpdate++;
      else if (f.type === T.Ping) {
        if (f.flags & F.ACK) this.counts.pong++;
        else this.counts.ping++;
      } else if (f.type === T.GoAway) {
        this.counts.goAway++;
        this.goAwayCodes.push(f.length);
      }
      if (f.type <= T.WindowUpdate) {
        if (f.flags & F.RST) this.counts.rst++;
        if (f.flags & F.SYN) this.counts.syn++;
        if (f.flags & F.ACK) this.counts.ack++;
      }
      if (this.frames.length < this.#keep) this.frames.push(f);
      for (const fn of this.#listeners) fn(f);
    }
  }
}

/** A raw WebSocket speaking hand-written yamux: the hostile end of a connection. */
export class HostilePeer {
  readonly ws: WebSocket;
  readonly reader = new FrameReader();
  /** Resolves with the close code and reason once the WebSocket closed. */
  readonly closed: Promise<{ code: number; reason: string }>;
  messagesSent = 0;
  bytesSent = 0;
  #paused = false;

  constructor(ws: WebSocket) {
    this.ws = ws;
    ws.binaryType = "nodebuffer";
    ws.on("error", () => {}); // the close that follows says enough
    ws.on("message", (bytes: Buffer) => this.reader.feed(bytes));
    this.closed = new Promise((resolve) => ws.once("close", (code, reason) => resolve({ code, reason: reason.toString() })));
  }

  /** True once the WebSocket closed. */
  get isClosed(): boolean {
    return this.ws.readyState === WebSocket.CLOSED;
  }

  /**
   * Sends one binary message; resolves once it left for the kernel (or the socket closed). A hostile
   * peer does not care about backpressure, but the test waits so that its own buffers do not count.
   * With `fragment`, the message goes as WebSocket fragments of that many bytes.
   */
  send(bytes: Uint8Array, fragment?: number): Promise<void> {
    if (this.ws.readyState !== WebSocket.OPEN) return Promise.resolve();
    this.messagesSent++;
    this.bytesSent += bytes.length;
    if (fragment === undefined) return new Promise((resolve) => this.ws.send(bytes, { binary: true }, () => resolve()));
    return new Promise((resolve) => {
      for (let offset = 0; offset < bytes.length; offset += fragment) {
        const last = offset + fragment >= bytes.length;
        this.ws.send(bytes.subarray(offset, offset + fragment), { binary: true, fin: last }, last ? () => resolve() : undefined);
      }
    });
  }

  /**
   * Stops reading the socket: nothing more is read from the kernel, so what the other side sends piles
   * up in its own buffers once the TCP window is full. This is what must stay bounded there.
   */
  stopReading(): void {
    if (this.#paused) return;
    this.#paused = true;
    this.ws.pause();
  }

  resumeReading(): void {
    if (!this.#paused) return;
    this.#paused = false;
    this.ws.resume();
  }

  /** Closes the socket at once (no close handshake: a hostile peer owes none). */
  destroy(): void {
    this.ws.terminate();
  }
}

/** A hostile device: a raw `ws` client upgraded to a wslis server at `url`. */
export async function hostileDevice(url: string, deviceId = `hostile-${Math.random().toString(36).slice(2)}`): Promise<HostilePeer> {
  const target = new URL(url);
  target.searchParams.set("deviceId", deviceId);
  const ws = new WebSocket(target, { perMessageDeflate: false, maxPayload: 1024 * 1024 * 1024 });
  const peer = new HostilePeer(ws);
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
    ws.once("unexpected-response", (_req, res) => reject(new Error(`upgrade refused: HTTP ${res.statusCode}`)));
  });
  return peer;
}

/** A hostile server: a raw `ws` server on 127.0.0.1; every device that dials it becomes a HostilePeer. */
export async function hostileServer(): Promise<{ url: string; next(): Promise<HostilePeer>; close(): Promise<void> }> {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate: false, maxPayload: 1024 * 1024 * 1024 });
  await new Promise<void>((resolve) => wss.once("listening", () => resolve()));
  const peers: HostilePeer[] = [];
  const waiters: ((peer: HostilePeer) => void)[] = [];
  wss.on("connection", (ws) => {
    const peer = new HostilePeer(ws);
    const waiter = waiters.shift();
    if (waiter) waiter(peer);
    else peers.push(peer);
  });
  const { port } = wss.address() as AddressInfo;
  return {
    url: `ws://127.0.0.1:${port}/`,
    next: () => {
      const peer = peers.shift();
      return peer ? Promise.resolve(peer) : new Promise((resolve) => waiters.push(resolve));
    },
    close: () =>
      new Promise((resolve) => {
        for (const client of wss.clients) client.terminate();
        wss.close(() => resolve());
      }),
  };
}
