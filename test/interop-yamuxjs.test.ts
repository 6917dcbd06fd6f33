/**
 * Conformance against yamux-js (npm), an independent JavaScript yamux on Node streams, for what it does
 * correctly: small echoes in both roles, several concurrent small streams, pings, GoAway.
 *
 * yamux-js 0.2.0 is known-broken elsewhere, so this suite stays away from it:
 * - it parses each chunk on its own: a Data frame whose body is not wholly inside the chunk carrying its
 *   header is lost (frames split across chunks, ~64 KB socket reads);
 * - it grants window credit on arrival and, on a zero send window, polls every 100 ms (large transfers crawl);
 * - it ignores a received FIN (its flag check tests SYN where it means FIN) and mishandles RST, so a
 *   yamux-js stream never sees our half-close: its echo below closes after the number of bytes the test
 *   tells it, and our side never waits on yamux-js noticing our FIN;
 * - streams it never forgets count against its accept backlog: the 257th stream of a session is reset.
 *
 * The two sessions talk over the yamux-js session itself (a Transform: wire bytes in, wire bytes out),
 * through {@link duplexTransport}. No sockets, so chunks arrive exactly as written: one frame each.
 */

import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import type { Duplex } from "node:stream";
import { describe, test } from "node:test";
import { Client, Server, type Config, type Stream as YamuxJsStream } from "yamux-js";
import { Flag, FrameType, readHeader } from "../src/yamux/frame.js";
import { Session } from "../src/yamux/session.js";
import type { Conn } from "../src/yamux/stream.js";
import { duplexTransport, hashingEcho, sendAndDigest, type Digest } from "./helpers/peers.js";
import { sha256Hex, within } from "./helpers/assert.js";

const KiB = 1024;
/** Small enough that no transfer needs yamux-js to wait for window credit (its 100 ms polling). */
const SIZES: [string, number][] = [
  ["1 KB", KiB],
  ["100 KB", 100 * KiB],
];
const CONCURRENT_STREAMS = 8;
const CONCURRENT_SIZE = 8 * KiB;
const TIMEOUT = 5_000;

/**
 * Our sessions' frame size toward yamux-js, in bytes. yamux-js can only parse a Data frame that arrives
 * whole in one chunk. Here each frame is one chunk and nothing re-chunks it, so bigger frames would pass;
 * 16 KiB keeps the suite within what yamux-js also survives on real sockets, whose reads split large
 * writes (at ~64 KB on loopback). The check on `sent` below proves the option is honoured.
 */
const MAX_FRAME_SIZE = 16 * KiB;

/** A yamux-js session plus what went wrong in it: errors it emitted and "[ERR]"/"[WARN]" lines it logged. */
interface YamuxJsPeer<T extends Client | Server> {
  session: T;
  problems: string[];
}

function yamuxJsConfig(problems: string[], extra: Config = {}): Config {
  return {
    enableKeepAlive: false,
    logger: (...args: unknown[]) => problems.push(args.map(String).join(" ")),
    ...extra,
  };
}

function watch<T extends Client | Server>(session: T, problems: string[]): YamuxJsPeer<T> {
  session.on("error", (error: Error) => problems.push(`error: ${error.message}`));
  return { session, problems };
}

/** Our session over a yamux-js one, and frames we sent (headers), for wire checks. */
function connect(peer: Duplex, role: "client" | "server"): { ours: Session; sent: ReturnType<typeof readHeader>[] } {
  const sent: ReturnType<typeof readHeader>[] = [];
  const transport = duplexTransport(peer, { onSend: (header) => sent.push(readHeader(header, 0)) });
  const ours = new Session(transport, { role, maxFrameSize: MAX_FRAME_SIZE, keepAliveInterval: 0 });
  return { ours, sent };
}

async function shutdown(ours: Session, peer: YamuxJsPeer<Client | Server>): Promise<void> {
  ours.close();
  peer.session.close();
  await within(ours.closed, TIMEOUT, "our session to close");
}

/**
 * A yamux-js server that echoes every stream and closes it (FIN) after `size` bytes, since it cannot see
 * our FIN. `echoes` holds, by stream ID, the digest of what it echoed.
 */
function yamuxJsEchoServer(size: number): YamuxJsPeer<Server> & { echoes: Map<number, Promise<Digest>> } {
  const problems: string[] = [];
  const echoes = new Map<number, Promise<Digest>>();
  const session = new Server((duplex) => {
    const stream = duplex as YamuxJsStream;
    const hash = createHash("sha256");
    let bytes = 0;
    echoes.set(
      stream.ID(),
      new Promise((resolve) => {
        stream.on("data", (chunk: Buffer) => {
          hash.update(chunk);
          bytes += chunk.length;
          const done = bytes >= size;
          // FIN once this write went out, so it follows the data.
          stream.write(chunk, () => {
            if (!done) return;
            stream.close();
            resolve({ bytes, sha256: hash.digest("hex") });
          });
        });
      }),
    );
  }, yamuxJsConfig(problems));
  return { ...watch(session, problems), echoes };
}

/** yamux-js opens a stream, sends `data`, reads `data.length` bytes of echo, then closes (FIN). */
function yamuxJsRoundTrip(client: Client, data: Buffer): Promise<{ stream: number; received: Digest }> {
  const stream = client.open();
  const hash = createHash("sha256");
  let bytes = 0;
  const done = new Promise<{ stream: number; received: Digest }>((resolve, reject) => {
    stream.on("error", reject);
    stream.on("data", (chunk: Buffer) => {
      hash.update(chunk);
      bytes += chunk.length;
      if (bytes < data.length) return;
      stream.close();
      resolve({ stream: stream.ID(), received: { bytes, sha256: hash.digest("hex") } });
    });
  });
  stream.write(data);
  return within(done, TIMEOUT, `yamux-js echo of ${data.length} bytes on stream ${stream.ID()}`);
}

/** Our session as the yamux server (a device), echoing what yamux-js opens; digests by stream ID. */
function echoEverything(ours: Session): Map<number, Promise<Digest>> {
  const echoes = new Map<number, Promise<Digest>>();
  void (async () => {
    for (;;) {
      const conn: Conn = await ours.accept();
      const echo = hashingEcho(conn);
      echo.catch(() => {}); // a test that cares awaits it
      echoes.set(conn.streamID, echo);
    }
  })().catch(() => {}); // accept() rejects once the session closes
  return echoes;
}

describe("our session (yamux client) opens streams to a yamux-js server", () => {
  async function echo(size: number, count: number): Promise<void> {
    const peer = yamuxJsEchoServer(size);
    const { ours, sent } = connect(peer.session, "client");
    try {
      const results = await Promise.all(
        Array.from({ length: count }, async () => {
          const data = randomBytes(size);
          const sent = sha256Hex(data); // before sending: what the application meant to send
          const conn = await ours.open();
          const received = await within(sendAndDigest(conn, data), TIMEOUT, `echo on stream ${conn.streamID}`);
          return { stream: conn.streamID, sent, received };
        }),
      );
      for (const { stream, sent: sentHash, received } of results) {
        assert.equal(stream % 2, 1);
        assert.deepEqual(received, { bytes: size, sha256: sentHash }, `stream ${stream}: what came back`);
        const echoed = await within(peer.echoes.get(stream)!, TIMEOUT, `yamux-js echo of stream ${stream}`);
        assert.deepEqual(echoed, { bytes: size, sha256: sentHash }, `stream ${stream}: what yamux-js echoed`);
      }
      for (const frame of sent) {
        if (frame.type === FrameType.Data) assert.ok(frame.length <= MAX_FRAME_SIZE, `a ${frame.length}-byte frame`);
      }
      assert.deepEqual(peer.problems, []);
    } finally {
      await shutdown(ours, peer);
    }
  }

  for (const [label, size] of SIZES) {
    test(`echo ${label}`, () => echo(size, 1));
  }
  test(`${CONCURRENT_STREAMS} concurrent streams of 8 KB`, () => echo(CONCURRENT_SIZE, CONCURRENT_STREAMS));

  test("our ping is answered by yamux-js", async () => {
    const peer = yamuxJsEchoServer(0);
    const { ours } = connect(peer.session, "client");
    try {
      const rtt = await ours.ping({ timeout: TIMEOUT });
      assert.ok(rtt >= 0 && Number.isFinite(rtt), `RTT ${rtt} ms`);
      assert.deepEqual(peer.problems, []);
    } finally {
      await shutdown(ours, peer);
    }
  });
});

describe("a yamux-js client opens streams to our session (yamux server)", () => {
  function yamuxJsClient(extra: Config = {}): YamuxJsPeer<Client> {
    const problems: string[] = [];
    return watch(new Client(yamuxJsConfig(problems, extra)), problems);
  }

  async function echo(size: number, count: number): Promise<void> {
    const peer = yamuxJsClient();
    const { ours } = connect(peer.session, "server");
    const echoes = echoEverything(ours);
    try {
      const results = await Promise.all(
        Array.from({ length: count }, async () => {
          const data = randomBytes(size);
          const sent = sha256Hex(data);
          return { ...(await yamuxJsRoundTrip(peer.session, data)), sent };
        }),
      );
      for (const { stream, sent, received } of results) {
        assert.equal(stream % 2, 1);
        assert.deepEqual(received, { bytes: size, sha256: sent }, `stream ${stream}: what yamux-js got back`);
        // Our echo ends when yamux-js's FIN arrives after it read everything.
        const echoed = await within(echoes.get(stream) ?? Promise.reject(new Error("never accepted")), TIMEOUT, `our echo of stream ${stream}`);
        assert.deepEqual(echoed, { bytes: size, sha256: sent }, `stream ${stream}: what our session echoed`);
      }
      assert.equal(ours.numStreams, 0, "FIN went both ways on every stream: our session forgot them");
      assert.deepEqual(peer.problems, []);
    } finally {
      await shutdown(ours, peer);
    }
  }

  for (const [label, size] of SIZES) {
    test(`echo ${label}`, () => echo(size, 1));
  }
  test(`${CONCURRENT_STREAMS} concurrent streams of 8 KB`, () => echo(CONCURRENT_SIZE, CONCURRENT_STREAMS));

  test("we answer yamux-js keepalive pings (Ping ACK with its ID)", async () => {
    // keepAliveInterval is in seconds in yamux-js; an unanswered ping there is an error after
    // connectionWriteTimeout seconds, which `problems` would show.
    const peer = yamuxJsClient({ enableKeepAlive: true, keepAliveInterval: 0.02, connectionWriteTimeout: 2 });
    const { ours, sent } = connect(peer.session, "server");
    try {
      await within(
        (async () => {
          while (sent.filter((f) => f.type === FrameType.Ping && f.flags === Flag.ACK).length < 3) {
            await new Promise((resolve) => setTimeout(resolve, 10));
          }
        })(),
        TIMEOUT,
        "three Ping ACKs",
      );
      const acks = sent.filter((f) => f.type === FrameType.Ping && f.flags === Flag.ACK);
      assert.deepEqual(
        acks.slice(0, 3).map((f) => [f.streamID, f.length]),
        [
          [0, 0],
          [0, 1],
          [0, 2],
        ],
        "each ACK echoes the ping's opaque value (yamux-js numbers them 0, 1, 2...) on stream 0",
      );
      assert.deepEqual(peer.problems, []);
    } finally {
      await shutdown(ours, peer);
    }
  });

  test("after our GoAway, yamux-js refuses to open streams", async () => {
    const peer = yamuxJsClient();
    const { ours } = connect(peer.session, "server");
    try {
      ours.goAway();
      // Our writes reach yamux-js synchronously (it is a Transform); one turn lets anything buffered through.
      await new Promise((resolve) => setImmediate(resolve));
      const refused = new Promise<Error>((resolve) => peer.session.once("error", resolve));
      peer.session.open();
      const error = await within(refused, TIMEOUT, "yamux-js refusing open()");
      assert.match(error.message, /not accepting connections/);
      assert.equal(ours.numStreams, 0, "no stream reached our session");
    } finally {
      await shutdown(ours, peer);
    }
  });
});
