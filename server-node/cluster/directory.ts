/**
 * The fleet directory: which node holds which device. The Server keeps one; without `cluster` it is the
 * in-memory {@link MemoryDirectory} below (this node is the whole fleet), with `cluster` the Redis one.
 * Both answer the same calls, so `server.fetch`/`dial`/`lookup`/`fleet` read the same on one node or many.
 */

import type { TypedEventTarget } from "../../src/events.js";
import type { Dialer } from "../dialer.js";
import type { DeviceRegistry } from "../server.js";

/** A device somewhere in the fleet, as `server.lookup` and `server.fleet()` give it. */
export interface DeviceRecord {
  /** The device id. */
  id: string;
  /** The id of the node the device is connected to. */
  node: string;
  /** When the device connected (ms since the epoch). */
  connectedAt: number;
  /**
   * When the device was last known alive (ms since the epoch): on this node, its last answered ping
   * (keepalive or `ping()`), else its connection time; on another node, that node's last lease renewal.
   */
  lastSeen: number;
}

/** Where to reach a device on another node. */
export interface Placement extends DeviceRecord {
  /** The fencing generation of the device's connection there: a request for an older one is refused. */
  generation: number;
  /** The base URL of its node (`cluster.advertise`). */
  advertise: string;
}

/** Detail of a fleet event (`server.fleetEvents`). */
export interface FleetEventDetail {
  /** The device id. */
  id: string;
  /** The node the device connected to (`connect`, `replace`) or left (`disconnect`). */
  node: string;
  /** Fencing generation of the connection, when a directory assigns them (the cluster). */
  generation?: number;
  /** When the connection was made (ms since the epoch); `connect` and `replace`. */
  connectedAt?: number;
  /** `replace`: the node that held the previous connection (it closes it with `ERR_REPLACED`). */
  previousNode?: string;
  /** `disconnect`: the error code of why the connection ended (`ERR_CONNECTION_LOST`, ...). */
  reason?: string;
}

/**
 * Events of the whole fleet, this node's devices included: `connect` (a device joined the fleet),
 * `replace` (a device connected again, maybe on another node; the previous connection is closed),
 * `disconnect` (a device left the fleet: its connection ended and no newer one took over). A map kept by
 * id from these events stays right: a replaced connection gives `replace`, not `disconnect`.
 */
export interface FleetEventMap {
  connect: CustomEvent<FleetEventDetail>;
  disconnect: CustomEvent<FleetEventDetail>;
  replace: CustomEvent<FleetEventDetail>;
}

/** An EventTarget whose events are those of {@link FleetEventMap}. */
export interface FleetEvents extends TypedEventTarget<FleetEventMap> {}

/** What the Server tells its directory, and asks it. */
export interface Directory {
  /** This node's id. */
  readonly node: string;
  /** Fleet events (see {@link FleetEventMap}). */
  readonly events: FleetEvents;
  /** A device connected to this node; `previous` is the local connection it replaced, if any. */
  connected(dialer: Dialer, previous: Dialer | undefined): void;
  /** A device's connection on this node ended (replaced ones included). */
  disconnected(dialer: Dialer, reason: Error): void;
  /**
   * Where a device that is not on this node is connected, or undefined when no node has it. Throws
   * `ClusterUnavailableError` when the directory cannot be asked.
   */
  find(id: string, options?: { fresh?: boolean }): Promise<Placement | undefined>;
  /**
   * A call through the placement of `id` failed (its node did not answer, or no longer has that
   * connection): the next `find` asks again.
   */
  forget(id: string): void;
  /** Every device of the fleet, once each. Throws `ClusterUnavailableError` when the directory cannot be asked. */
  list(): AsyncIterable<DeviceRecord>;
  /** The record of a device connected to this node. */
  record(dialer: Dialer): DeviceRecord;
  /** The fencing generation of a connection on this node, once the directory assigned one. */
  generation(dialer: Dialer): number | undefined;
  /** Removes this node's devices from the directory (before the server's GoAway). */
  drain(): Promise<void>;
  /** Stops the directory (timers, connections). */
  close(): Promise<void>;
}

/** The directory's view of a local device: its record. */
export function localRecord(dialer: Dialer, node: string, lastSeen: WeakMap<Dialer, number>): DeviceRecord {
  return { id: dialer.id, node, connectedAt: dialer.connectedAt, lastSeen: lastSeen.get(dialer) ?? dialer.connectedAt };
}

/** Tracks each local device's last answered ping. */
export function trackLastSeen(dialer: Dialer, lastSeen: WeakMap<Dialer, number>): void {
  dialer.session.addEventListener("rtt", () => lastSeen.set(dialer, Date.now()));
}

/** One node is the whole fleet: the directory is the server's own registry. */
export class MemoryDirectory implements Directory {
  readonly node: string;
  readonly events: FleetEvents = new EventTarget();
  readonly #devices: DeviceRegistry;
  readonly #lastSeen = new WeakMap<Dialer, number>();

  constructor(devices: DeviceRegistry, node: string) {
    this.#devices = devices;
    this.node = node;
  }

  connected(dialer: Dialer, previous: Dialer | undefined): void {
    trackLastSeen(dialer, this.#lastSeen);
    const detail: FleetEventDetail = { id: dialer.id, node: this.node, connectedAt: dialer.connectedAt };
    if (previous) this.events.dispatchEvent(new CustomEvent("replace", { detail: { ...detail, previousNode: this.node } }));
    else this.events.dispatchEvent(new CustomEvent("connect", { detail }));
  }

  disconnected(dialer: Dialer, reason: Error): void {
    // A replaced connection was announced by `replace`; only a device that left the fleet is a disconnect.
    if (this.#devices.has(dialer.id)) return;
    const code = (reason as { code?: unknown }).code;
    this.events.dispatchEvent(
      new CustomEvent("disconnect", {
        detail: { id: dialer.id, node: this.node, reason: typeof code === "string" ? code : reason.name },
      }),
    );
  }

  async find(): Promise<undefined> {
    return undefined;
  }

  forget(): void {}

  async *list(): AsyncIterable<DeviceRecord> {
    for (const dialer of [...this.#devices.values()]) yield localRecord(dialer, this.node, this.#lastSeen);
  }

  /** Records of local devices carry their last answered ping. */
  record(dialer: Dialer): DeviceRecord {
    return localRecord(dialer, this.node, this.#lastSeen);
  }

  generation(): undefined {
    return undefined;
  }

  async drain(): Promise<void> {}

  async close(): Promise<void> {}
}
