/**
 * Reaching devices wherever they are connected: `server.fetch`, `server.dial`, `server.lookup` and
 * `server.fleet()`. A device on this node is served directly; one on another node through that node
 * (see peer.ts); one no node has fails at once with `ERR_DEVICE_NOT_FOUND`.
 */

import { ClusterUnavailableError, DeviceNotFoundError } from "../../src/errors.js";
import type { Conn } from "../../src/yamux/stream.js";
import type { DialOptions, Dialer } from "../dialer.js";
import type { FetchInit } from "../http.js";
import type { DeviceRegistry } from "../server.js";
import type { DeviceRecord, Directory, Placement } from "./directory.js";

/**
 * A stream to a device, local or through another node: the same shape as a local `Conn` (readable,
 * writable, half-close with `close()`, `reset()`, `closed`).
 */
export type FleetConn = Conn;

/** Requests to devices on other nodes, through their node. */
export interface Peers {
  fetch(placement: Placement, input: string | URL | Request, init?: FetchInit): Promise<Response>;
  dial(placement: Placement, options?: DialOptions): Promise<FleetConn>;
}

export class Fleet {
  readonly #devices: DeviceRegistry;
  readonly #directory: Directory;
  readonly #peers: Peers | undefined;

  constructor(devices: DeviceRegistry, directory: Directory, peers?: Peers) {
    this.#devices = devices;
    this.#directory = directory;
    this.#peers = peers;
  }

  async fetch(id: string, input: string | URL | Request, init?: FetchInit): Promise<Response> {
    const local = this.#devices.get(id);
    if (local) return local.fetch(input, init);
    const placement = await this.#remote(id);
    // A request whose body is a stream cannot be sent twice; anything else can.
    const replayable = !(init?.body instanceof ReadableStream) && !(input instanceof Request && input.body !== null && init?.body === undefined);
    return this.#through(placement, replayable, (p) => this.#peers!.fetch(p, input, init));
  }

  async dial(id: string, options?: DialOptions): Promise<FleetConn> {
    const local = this.#devices.get(id);
    if (local) return local.dial(options);
    const placement = await this.#remote(id);
    return this.#through(placement, true, (p) => this.#peers!.dial(p, options));
  }

  /**
   * A call through the device's node. The placement may be out of date (the directory keeps recent ones,
   * and the device may move meanwhile anyway): when its node answers that it no longer has that connection
   * (nothing reached any device), the directory is asked again, and if the device is elsewhere now the
   * call goes there, once. A node that does not answer is forgotten too; that call fails.
   */
  async #through<T>(placement: Placement, replayable: boolean, call: (placement: Placement) => Promise<T>): Promise<T> {
    try {
      return await call(placement);
    } catch (error) {
      if (error instanceof ClusterUnavailableError) this.#directory.forget(placement.id);
      if (!(error instanceof DeviceNotFoundError)) throw error;
      const now = await this.#directory.find(placement.id, { fresh: true }).catch(() => undefined);
      if (!replayable || !now || now.node === this.#directory.node || (now.node === placement.node && now.generation === placement.generation)) throw error;
      return call(now);
    }
  }

  async lookup(id: string): Promise<DeviceRecord | undefined> {
    const local = this.#devices.get(id);
    if (local) return this.#directory.record(local);
    const placement = await this.#directory.find(id);
    if (!placement || placement.node === this.#directory.node) return undefined;
    const { generation: _generation, advertise: _advertise, ...record } = placement;
    return record;
  }

  async *fleet(): AsyncIterable<DeviceRecord> {
    const seen = new Set<string>();
    for await (const record of this.#directory.list()) {
      if (seen.has(record.id)) continue;
      seen.add(record.id);
      const local = this.#devices.get(record.id);
      yield local ? this.#directory.record(local) : record;
    }
  }

  /** The local connection of `id` if it has the given generation (node-to-node requests use it). */
  localDevice(id: string, generation: number): Dialer | undefined {
    const dialer = this.#devices.get(id);
    if (!dialer || this.#directory.generation(dialer) !== generation) return undefined;
    return dialer;
  }

  async #remote(id: string) {
    const placement = this.#peers ? await this.#directory.find(id) : undefined;
    // An entry naming this node for a device it does not have is a leftover (it is being cleaned up).
    if (!placement || placement.node === this.#directory.node) throw new DeviceNotFoundError(id);
    return placement;
  }
}
