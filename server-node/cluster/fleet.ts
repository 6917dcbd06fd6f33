/**
 * Reaching devices wherever they are connected: `server.fetch`, `server.dial`, `server.lookup` and
 * `server.fleet()`. A device on this node is served directly; one on another node through that node
 * (see peer.ts); one no node has fails at once with `ERR_DEVICE_NOT_FOUND`.
 */

import { DeviceNotFoundError } from "../../src/errors.js";
import type { Conn } from "../../src/yamux/stream.js";
import type { DialOptions, Dialer } from "../dialer.js";
import type { FetchInit } from "../http.js";
import type { DeviceRegistry } from "../server.js";
import type { DeviceRecord, Directory, Placement } from "./directory.js";

/**
 * A stream to a device, local or through another node: the same shape as a local `Conn` (readable,
 * writable, half-close with `close()`, `reset()`, `closed`).
 */
export type FleetConn = Pick<Conn, "streamID" | "readable" | "writable" | "close" | "reset" | "closed">;

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
    return this.#peers!.fetch(placement, input, init);
  }

  async dial(id: string, options?: DialOptions): Promise<FleetConn> {
    const local = this.#devices.get(id);
    if (local) return local.dial(options);
    const placement = await this.#remote(id);
    return this.#peers!.dial(placement, options);
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
