/**
 * A message body, read off the connection by its framing (RFC 9112 §6 and §7.1): a Content-Length run
 * of bytes, chunks (`size[;ext] CRLF data CRLF`, ended by `0 CRLF`, trailers and an empty line), or (a
 * response only) everything until the connection ends. It reads nothing past its own end, so the next
 * pipelined message stays in the reader. The device reads requests with it, the Node client responses.
 */

import { HttpError } from "../errors.js";
import { BadRequestError, decodeLatin1, type BodyFraming } from "./head.js";
import type { ByteReader } from "./reader.js";

export interface BodyLimits {
  /** Largest body, in bytes; a chunked body growing beyond it fails with a 413 {@link BadRequestError}. */
  maxBodySize: number;
  /** Largest chunk-size line, and largest trailer section, in bytes. */
  maxLineSize: number;
  /** Which message this is, for error messages. Default "request". */
  message?: "request" | "response";
}

const SETTLED = Promise.resolve();

/** What #nextBytes returns when a close-delimited body ends. */
const EMPTY_END = new Uint8Array(0);

/** Hex digits of a chunk size: 13 keep it below 2^52, far beyond any body we accept. */
const CHUNK_SIZE = /^([0-9A-Fa-f]{1,13})[ \t]*(;.*)?$/;

export class BodySource {
  readonly #reader: ByteReader;
  readonly #chunked: boolean;
  /** The body runs until the stream ends. */
  readonly #untilEnd: boolean;
  readonly #what: string;
  readonly #limits: BodyLimits;
  /** Bytes left in the body (length framing) or in the current chunk (chunked). */
  #remaining: number;
  /** Chunked only: where we are between chunks. */
  #phase: "size" | "data" | "data-end" | "done";
  #received = 0;
  #started = false;
  #error: Error | undefined;
  /** Runs before the first read of a non-empty body: sends `100 Continue` when the client waits for it. */
  #beforeFirstRead: (() => Promise<void>) | undefined;
  /** Reads are serialized: the handler's stream and the connection loop's `discard` may both ask. */
  #tail: Promise<unknown> = SETTLED;

  constructor(reader: ByteReader, framing: BodyFraming, limits: BodyLimits, beforeFirstRead?: () => Promise<void>) {
    this.#reader = reader;
    this.#chunked = framing.kind === "chunked";
    this.#untilEnd = framing.kind === "close";
    this.#what = limits.message ?? "request";
    this.#limits = limits;
    this.#remaining = framing.kind === "length" ? framing.length : framing.kind === "close" ? Infinity : 0;
    this.#phase = framing.kind === "chunked" ? "size" : this.#remaining > 0 ? "data" : "done";
    this.#beforeFirstRead = beforeFirstRead;
  }

  /** True once the whole body has been read off the connection. */
  get complete(): boolean {
    return this.#phase === "done";
  }

  /** True once anyone asked for body bytes (the handler's stream, or a `discard`). */
  get started(): boolean {
    return this.#started;
  }

  /** Why the body could not be read (malformed, too large, connection lost), if it failed. */
  get error(): Error | undefined {
    return this.#error;
  }

  /** Bytes of a Content-Length body not read yet; undefined for chunked and close-delimited bodies. */
  get remainingLength(): number | undefined {
    return this.#chunked || this.#untilEnd ? undefined : this.#remaining;
  }

  /** The next run of body bytes, or null at the end of the body. */
  next(): Promise<Uint8Array | null> {
    this.#started = true;
    const result = this.#tail.then(() => this.#next());
    this.#tail = result.catch(() => {});
    return result;
  }

  /**
   * Reads and drops up to `limit` more bytes, so the connection can carry the next request. Resolves true
   * if the body ended within the limit, false otherwise (or when the body is broken).
   */
  async discard(limit: number): Promise<boolean> {
    let dropped = 0;
    try {
      while (!this.complete && dropped <= limit) {
        const chunk = await this.next();
        if (chunk === null) break;
        dropped += chunk.length;
      }
    } catch {
      return false;
    }
    return this.complete;
  }

  /** The body as a web stream, pulled on demand (backpressure reaches the peer through the yamux window). */
  stream(): ReadableStream<Uint8Array> {
    return new ReadableStream<Uint8Array>(
      {
        pull: async (controller) => {
          const chunk = await this.next();
          if (chunk === null) controller.close();
          else controller.enqueue(chunk);
        },
      },
      { highWaterMark: 0 },
    );
  }

  async #next(): Promise<Uint8Array | null> {
    if (this.#error) throw this.#error;
    if (this.#phase === "done") return null;
    try {
      const hook = this.#beforeFirstRead;
      this.#beforeFirstRead = undefined;
      if (hook) await hook();
      if (this.#chunked) return await this.#nextChunked();
      const bytes = await this.#nextBytes();
      return bytes === EMPTY_END ? null : bytes;
    } catch (error) {
      this.#error = error instanceof Error ? error : new HttpError(String(error));
      throw this.#error;
    }
  }

  /** Up to #remaining bytes of the current run (the whole body, or the current chunk). */
  async #nextBytes(): Promise<Uint8Array> {
    const bytes = await this.#reader.read(this.#remaining);
    if (bytes === null) {
      if (this.#untilEnd) {
        this.#phase = "done";
        return EMPTY_END;
      }
      throw new BadRequestError(400, `the ${this.#what} body ended early`);
    }
    this.#remaining -= bytes.length;
    if (this.#remaining === 0) this.#phase = this.#chunked ? "data-end" : "done";
    return bytes;
  }

  async #nextChunked(): Promise<Uint8Array | null> {
    for (;;) {
      switch (this.#phase) {
        case "size": {
          const size = await this.#readChunkSize();
          if (size === 0) {
            await this.#skipTrailers();
            this.#phase = "done";
            return null;
          }
          this.#received += size;
          if (this.#received > this.#limits.maxBodySize) {
            throw new BadRequestError(413, `the ${this.#what} body is larger than ${this.#limits.maxBodySize} bytes`);
          }
          this.#remaining = size;
          this.#phase = "data";
          break;
        }
        case "data":
          return this.#nextBytes();
        case "data-end": {
          const line = await this.#line(this.#limits.maxLineSize);
          if (line.length !== 0) throw new BadRequestError(400, "chunk data not followed by CRLF");
          this.#phase = "size";
          break;
        }
        case "done":
          return null;
      }
    }
  }

  async #readChunkSize(): Promise<number> {
    const line = await this.#line(this.#limits.maxLineSize);
    const match = CHUNK_SIZE.exec(decodeLatin1(line));
    if (!match) throw new BadRequestError(400, "malformed chunk size");
    // Chunk extensions (after ";") carry nothing we use; they are bounded by maxLineSize.
    return parseInt(match[1]!, 16);
  }

  /** Trailer fields are read and dropped: a fetch `Request` has no place for them. */
  async #skipTrailers(): Promise<void> {
    let budget = this.#limits.maxLineSize;
    for (;;) {
      const line = await this.#line(budget);
      if (line.length === 0) return;
      budget -= line.length + 2;
      if (budget < 0) throw new BadRequestError(431, `the ${this.#what} trailers are too large`);
    }
  }

  async #line(limit: number): Promise<Uint8Array> {
    const line = await this.#reader.readLine(
      limit,
      () => new BadRequestError(400, "a chunk line is too long"),
      () => new BadRequestError(400, `the ${this.#what} body ended early`),
    );
    if (line === null) throw new BadRequestError(400, `the ${this.#what} body ended early`);
    return line;
  }
}
