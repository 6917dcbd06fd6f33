/**
 * The cluster directory on Redis: which node holds which device, node leases, fleet events.
 *
 * Keys (under `prefix`, default "wslis:"):
 * - `gen:<id>`: the fencing counter of a device id. Each connection gets the next value (INCR), floored
 *   at Redis's clock in ms so that a Redis restarted empty never hands out a generation lower than one
 *   still alive on a node. Expires after a day unused.
 * - `dev:<id>`: the directory entry, a hash { node, gen, connectedAt }. Written only by the claim script,
 *   which refuses a generation older than the one there (compare-and-set), so a stale node can never
 *   overwrite a newer entry. It expires with its node's lease (the lease renewal extends it).
 * - `node:<nodeId>`: the node's lease, a hash { advertise, renewedAt }, expiring after `ttl` ms unless
 *   renewed (every ttl/3). `devices:<nodeId>`: the ids the node claimed. `nodes`: every node id seen.
 * - channel `events`: JSON { type: connect|replace|disconnect, id, node, generation, ... }.
 *
 * Redis trouble never touches local devices: while Redis is away claims wait, cross-node calls fail at
 * once (`ERR_CLUSTER_UNAVAILABLE`), and when it is back (also restarted empty) the node claims every live
 * device again with its generation; a node that lost one that way closes it as replaced.
 */

import { randomUUID } from "node:crypto";
import { createRequire } from "node:module";
import type { Redis } from "ioredis";
import { ClusterUnavailableError, SessionClosedError } from "../../src/errors.js";
import type { Dialer } from "../dialer.js";
import type { ServerLogger } from "../server.js";
import {
  localRecord,
  trackLastSeen,
  type DeviceRecord,
  type Directory,
  type FleetEventDetail,
  type FleetEvents,
  type Placement,
} from "./directory.js";

/** ioredis, loaded on first use: a server without `cluster` never loads it (nor its dependencies). */
const ioredis = (): typeof import("ioredis") => createRequire(import.meta.url)("ioredis");

/** Redis settings of a cluster node (see `ServerOptions.cluster`). */
export interface RedisDirectoryOptions {
  /** A Redis URL (`redis://host:6379/0`) or an ioredis client (left open on close; a duplicate subscribes). */
  redis: string | Redis;
  /** This node's id. */
  nodeId: string;
  /** This node's base URL for other nodes. */
  advertise: string;
  /** Lease of this node's presence and entries, in ms. */
  ttl: number;
  /** Key and channel prefix. */
  prefix: string;
  logger: ServerLogger;
}

// Claims device ARGV[2] for node ARGV[1]. ARGV[3]: the generation to re-claim, or "" for a new connection.
// Returns { won (1/0), generation, previous node or false, previous generation or false }.
const CLAIM = `
local gen = tonumber(ARGV[3])
if not gen then
  gen = redis.call('INCR', KEYS[2])
  local t = redis.call('TIME')
  local floor = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  if gen < floor then gen = floor; redis.call('SET', KEYS[2], string.format('%d', gen)) end
else
  local cur = tonumber(redis.call('GET', KEYS[2]) or '0')
  if cur < gen then redis.call('SET', KEYS[2], string.format('%d', gen)) end
end
redis.call('PEXPIRE', KEYS[2], 86400000)
local g = string.format('%d', gen)
local old = redis.call('HMGET', KEYS[1], 'node', 'gen')
local oldGen = tonumber(old[2])
if oldGen and (oldGen > gen or (oldGen == gen and old[1] ~= ARGV[1])) then
  return {0, g, old[1], old[2]}
end
redis.call('HSET', KEYS[1], 'node', ARGV[1], 'gen', g, 'connectedAt', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('SADD', KEYS[3], ARGV[2])
redis.call('PEXPIRE', KEYS[3], ARGV[5])
if oldGen ~= gen then
  local event = {type = 'connect', id = ARGV[2], node = ARGV[1], generation = g, connectedAt = ARGV[4]}
  if oldGen then event.type = 'replace'; event.previousNode = old[1] end
  redis.call('PUBLISH', ARGV[6], cjson.encode(event))
end
return {1, g, old[1] or false, old[2] or false}
`;

// Removes the entry of device ARGV[2] if it is still node ARGV[1]'s connection of generation ARGV[3].
const RELEASE = `
local old = redis.call('HMGET', KEYS[1], 'node', 'gen')
if old[1] == ARGV[1] and old[2] == ARGV[3] then
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[2])
  redis.call('PUBLISH', ARGV[4], cjson.encode({type = 'disconnect', id = ARGV[2], node = ARGV[1], generation = ARGV[3], reason = ARGV[5]}))
  return 1
end
if old[1] ~= ARGV[1] then redis.call('SREM', KEYS[2], ARGV[2]) end
return 0
`;

// Renews node ARGV[1]'s lease (ARGV[2] ms) and its entries. Returns { lease existed (1/0), ids in its set
// whose entry is not its own any more, with ARGV[5] = "1" its own entries as id, generation, ..., and how
// many own entries it kept }.
const RENEW = `
local existed = redis.call('EXISTS', KEYS[1])
local t = redis.call('TIME')
redis.call('HSET', KEYS[1], 'advertise', ARGV[3], 'renewedAt', string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[1])
local lost = {}
local owned = {}
local kept = 0
for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local key = ARGV[4] .. 'dev:' .. id
  local e = redis.call('HMGET', key, 'node', 'gen')
  if e[1] == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
    kept = kept + 1
    if ARGV[5] == '1' then owned[#owned + 1] = id; owned[#owned + 1] = e[2] end
  else
    redis.call('SREM', KEYS[2], id)
    lost[#lost + 1] = id
  end
end
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return {existed, lost, owned, kept}
`;

// Where device KEYS[1] is: { node, gen, connectedAt, advertise, renewedAt }, or false (none, or its node's lease expired).
const FIND = `
local e = redis.call('HMGET', KEYS[1], 'node', 'gen', 'connectedAt')
if not e[1] then return false end
local n = redis.call('HMGET', ARGV[1] .. 'node:' .. e[1], 'advertise', 'renewedAt')
if not n[1] then return false end
return {e[1], e[2], e[3], n[1], n[2]}
`;

// Node ARGV[1] leaves: its entries go (with a disconnect event each), then its lease.
const LEAVE = `
for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local key = ARGV[2] .. 'dev:' .. id
  local old = redis.call('HMGET', key, 'node', 'gen')
  if old[1] == ARGV[1] then
    redis.call('DEL', key)
    redis.call('PUBLISH', ARGV[3], cjson.encode({type = 'disconnect', id = id, node = ARGV[1], generation = old[2], reason = 'ERR_SERVER_SHUTDOWN'}))
  end
end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('SREM', KEYS[3], ARGV[1])
return 1
`;

type Claim = [won: number, generation: string, previousNode: string | null, previousGeneration: string | null];

interface Scripts {
  wslisClaim(dev: string, gen: string, devices: string, node: string, id: string, generation: string, connectedAt: number, ttl: number, channel: string): Promise<Claim>;
  wslisRelease(dev: string, devices: string, node: string, id: string, generation: string, channel: string, reason: string): Promise<number>;
  wslisRenew(
    lease: string,
    devices: string,
    nodes: string,
    node: string,
    ttl: number,
    advertise: string,
    prefix: string,
    listOwned: string,
  ): Promise<[existed: number, lost: string[], owned: string[], kept: number]>;
  wslisFind(dev: string, prefix: string): Promise<[string, string, string, string, string] | null>;
  wslisLeave(lease: string, devices: string, nodes: string, node: string, prefix: string, channel: string): Promise<number>;
}

/**
 * The scripts' answers, checked before use: what answers under a script's name may not be the script (a
 * proxy, another program's script, a broken server), and a reply of the wrong shape must fail the one
 * call as Redis failing does, not throw later where nobody catches it.
 */
const isText = (value: unknown): value is string | number => typeof value === "string" || typeof value === "number";
const isTexts = (value: unknown): value is string[] => Array.isArray(value) && value.every(isText);

function malformed(what: string): never {
  throw new TypeError(`Redis answered ${what} with something the script does not return`);
}

function checkClaim(reply: unknown): Claim {
  // Lua ends a table at its first nil: without a previous owner the reply is [won, generation].
  if (!Array.isArray(reply) || reply.length < 2 || typeof reply[0] !== "number" || !isText(reply[1])) malformed("the claim");
  if ((reply[2] != null && typeof reply[2] !== "string") || (reply[3] != null && !isText(reply[3]))) malformed("the claim");
  return reply as Claim;
}

function checkRenew(reply: unknown): Awaited<ReturnType<Scripts["wslisRenew"]>> {
  if (!Array.isArray(reply) || reply.length !== 4) malformed("the lease renewal");
  const [existed, lost, owned, kept] = reply as unknown[];
  if (typeof existed !== "number" || !isTexts(lost) || !isTexts(owned) || typeof kept !== "number") malformed("the lease renewal");
  return [existed, lost.map(String), owned.map(String), kept];
}

function checkFind(reply: unknown): Awaited<ReturnType<Scripts["wslisFind"]>> {
  if (reply === null) return null;
  if (!Array.isArray(reply) || reply.length !== 5 || !reply.every(isText)) malformed("the lookup");
  return reply.map(String) as [string, string, string, string, string];
}

/** How long a placement found in Redis is used without asking again, in ms (see RedisDirectory #placements). */
export const PLACEMENT_MAX_AGE = 1000;
/** Most placements kept; the oldest goes first. */
const PLACEMENT_CACHE_SIZE = 10_000;

/** A generated node id: the host's name is not unique enough (containers, restarts). */
export function generatedNodeId(): string {
  return `node-${randomUUID().slice(0, 8)}`;
}

export class RedisDirectory implements Directory {
  readonly node: string;
  readonly events: FleetEvents = new EventTarget();
  readonly #options: RedisDirectoryOptions;
  readonly #redis: Redis & Scripts;
  readonly #subscriber: Redis;
  readonly #ownsClient: boolean;
  readonly #channel: string;
  /** Live local connections by id (the newest; replaced ones leave at once). */
  readonly #local = new Map<string, Dialer>();
  readonly #generations = new WeakMap<Dialer, number>();
  /** The claim in flight per connection, so its release follows it. */
  readonly #claims = new WeakMap<Dialer, Promise<void>>();
  readonly #lastSeen = new WeakMap<Dialer, number>();
  #renewTimer: ReturnType<typeof setTimeout> | undefined;
  #renewing: Promise<void> | undefined;
  #closed = false;
  #draining = false;
  #wasUp = false;
  /**
   * Placements of devices on other nodes, found recently: a cross-node call is then one hop, not a
   * Redis round trip and a hop. An entry goes when an event names its device (connect, replace,
   * disconnect: every change of an entry publishes one), when a call through it fails, and after
   * PLACEMENT_MAX_AGE ms in any case (a node whose lease expired publishes nothing). Entries are kept only
   * while the subscriber listens: events missed while it reconnects cannot leave one behind.
   */
  readonly #placements = new Map<string, { placement: Placement; at: number }>();
  /** Lookups in flight by id, shared by concurrent calls; `stale` once an event overtook one. */
  readonly #finding = new Map<string, { promise: Promise<Placement | undefined>; stale: boolean }>();
  /** The subscriber is subscribed (events reach us). */
  #listening = false;
  /** Resolves when Redis is first ready, or #startupWait ms after the start (see `ready`). */
  readonly #started: Promise<void>;
  /** #started resolved: from now on a Redis away fails calls at once. */
  #startedDone = false;
  /** How long a call waits for Redis's first connection, in ms (the bound of a Redis that hangs). */
  readonly #startupWait: number;

  constructor(options: RedisDirectoryOptions) {
    this.#options = options;
    this.node = options.nodeId;
    const p = options.prefix;
    this.#channel = `${p}events`;
    this.#startupWait = Math.max(1000, Math.min(2000, options.ttl / 2));
    const settings = {
      // Commands fail at once while Redis is away, instead of queueing: cross-node calls fail fast.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      // A Redis that hangs (rather than closing) is as good as away after this.
      commandTimeout: this.#startupWait,
      retryStrategy: (attempt: number) => Math.min(100 * 2 ** Math.min(attempt, 5), 2000),
      lazyConnect: false,
    };
    let client: Redis;
    if (typeof options.redis === "string") {
      client = new (ioredis().Redis)(options.redis, settings);
      this.#ownsClient = true;
    } else {
      client = options.redis;
      this.#ownsClient = false;
    }
    this.#redis = client as Redis & Scripts;
    this.#redis.defineCommand("wslisClaim", { numberOfKeys: 3, lua: CLAIM });
    this.#redis.defineCommand("wslisRelease", { numberOfKeys: 2, lua: RELEASE });
    this.#redis.defineCommand("wslisRenew", { numberOfKeys: 3, lua: RENEW });
    this.#redis.defineCommand("wslisFind", { numberOfKeys: 1, lua: FIND });
    this.#redis.defineCommand("wslisLeave", { numberOfKeys: 3, lua: LEAVE });
    // The subscriber subscribes on every connection itself (not ioredis's autoResubscribe), so it knows
    // from when on events reach it (see #placements).
    this.#subscriber = client.duplicate({
      ...settings,
      enableOfflineQueue: true,
      maxRetriesPerRequest: null,
      commandTimeout: undefined,
      autoResubscribe: false,
    });

    this.#redis.on("error", (error: Error) => this.#trouble(error));
    this.#subscriber.on("error", () => {});
    let started!: () => void;
    this.#started = new Promise<void>((resolve) => (started = resolve)).then(() => {
      this.#startedDone = true;
    });
    const startTimer = setTimeout(started, this.#startupWait);
    startTimer.unref?.();
    this.#redis.once("ready", () => {
      clearTimeout(startTimer);
      started();
    });
    this.#redis.on("ready", () => {
      // Back (or up for the first time, or restarted empty): renew at once, which claims every live device again.
      void this.#renew(true);
    });
    this.#redis.on("close", () => {
      this.#forgetAll();
      if (this.#wasUp && !this.#closed) this.#options.logger.warn(`wslis: cluster node ${this.node} lost Redis; local devices are still served`);
      this.#wasUp = false;
    });
    this.#subscriber.on("message", (_channel: string, message: string) => this.#handleEvent(message));
    this.#subscriber.on("ready", () => {
      this.#subscriber.subscribe(this.#channel).then(
        () => {
          if (this.#subscriber.status === "ready") this.#listening = true;
        },
        () => {},
      );
    });
    this.#subscriber.on("close", () => {
      this.#listening = false;
      this.#forgetAll();
    });
    if (this.#redis.status === "ready") {
      clearTimeout(startTimer);
      started();
      void this.#renew(true);
    }
  }

  #key(kind: "gen" | "dev" | "node" | "devices", id: string): string {
    return `${this.#options.prefix}${kind}:${id}`;
  }

  get #up(): boolean {
    return this.#redis.status === "ready";
  }

  #trouble(error: Error): void {
    if (this.#wasUp) this.#options.logger.warn(`wslis: Redis error on cluster node ${this.node}: ${error.message}`);
  }

  connected(dialer: Dialer, previous: Dialer | undefined): void {
    trackLastSeen(dialer, this.#lastSeen);
    this.#local.set(dialer.id, dialer);
    if (previous) this.#emit("replace", { id: dialer.id, node: this.node, connectedAt: dialer.connectedAt, previousNode: this.node });
    else this.#emit("connect", { id: dialer.id, node: this.node, connectedAt: dialer.connectedAt });
    void this.#claim(dialer);
  }

  disconnected(dialer: Dialer, reason: Error): void {
    if (this.#local.get(dialer.id) === dialer) this.#local.delete(dialer.id);
    const replaced = this.#local.has(dialer.id) || (reason as { code?: string }).code === "ERR_REPLACED";
    const code = (reason as { code?: unknown }).code;
    const why = typeof code === "string" ? code : reason.name;
    if (!replaced) this.#emit("disconnect", { id: dialer.id, node: this.node, reason: why });
    if (this.#draining) return; // leave() removes every entry at once
    void (this.#claims.get(dialer) ?? Promise.resolve()).then(() => {
      const generation = this.#generations.get(dialer);
      // Never claimed, or Redis away: nothing to remove, or the next resync removes it.
      if (generation !== undefined) return this.#release(dialer.id, generation, why);
    });
  }

  async #release(id: string, generation: number | string, reason: string): Promise<void> {
    if (!this.#up) return;
    await this.#redis
      .wslisRelease(this.#key("dev", id), this.#key("devices", this.node), this.node, id, String(generation), this.#channel, reason)
      .catch(() => {});
  }

  /** Claims a connection's entry, after any claim of it in flight (so a connection gets one generation). */
  #claim(dialer: Dialer): Promise<void> {
    const next = (this.#claims.get(dialer) ?? Promise.resolve()).then(() => this.#claimNow(dialer));
    this.#claims.set(dialer, next);
    return next;
  }

  /** Claims a connection's entry (new: a fresh generation; known: its own again). */
  async #claimNow(dialer: Dialer): Promise<void> {
    if (!this.#up || this.#closed) return; // claimed when Redis is back
    const known = this.#generations.get(dialer);
    let result: Claim;
    try {
      result = checkClaim(await this.#redis.wslisClaim(
        this.#key("dev", dialer.id),
        this.#key("gen", dialer.id),
        this.#key("devices", this.node),
        this.node,
        dialer.id,
        known === undefined ? "" : String(known),
        dialer.connectedAt,
        this.#options.ttl,
        this.#channel,
      ));
    } catch (error) {
      // Redis went away meanwhile: claimed again when it is back. An answer of the wrong shape is said.
      if (error instanceof TypeError) this.#options.logger.warn(`wslis: cluster node ${this.node} could not claim a device: ${error.message}`);
      return;
    }
    const [won, generation, previousNode] = result;
    this.#generations.set(dialer, Number(generation));
    if (!won) {
      // A newer connection of this device is on another node: this one is stale.
      this.#replaced(dialer, previousNode ?? "another node");
    } else if (previousNode && previousNode !== this.node) {
      this.#emit("replace", { id: dialer.id, node: this.node, generation: Number(generation), connectedAt: dialer.connectedAt, previousNode });
    }
  }

  #replaced(dialer: Dialer, node: string): void {
    if (dialer.closeReason) return;
    dialer.close(new SessionClosedError("ERR_REPLACED", `device ${dialer.id} connected again on node ${node}; this session was replaced`));
  }

  /** An event from the channel. Another node's connection of a device held here with an older generation replaces it. */
  #handleEvent(message: string): void {
    let event: FleetEventDetail & { type?: string; generation?: string | number; connectedAt?: string | number };
    try {
      event = JSON.parse(message);
    } catch {
      return;
    }
    const { type, id, node } = event;
    if (typeof id === "string") this.forget(id);
    if (typeof id !== "string" || typeof node !== "string" || node === this.node) return;
    if (type !== "connect" && type !== "replace" && type !== "disconnect") return;
    const generation = Number(event.generation);
    const detail: FleetEventDetail = { id, node, generation };
    if (event.connectedAt !== undefined) detail.connectedAt = Number(event.connectedAt);
    if (typeof event.previousNode === "string") detail.previousNode = event.previousNode;
    if (typeof event.reason === "string") detail.reason = event.reason;
    if (type !== "disconnect") {
      const local = this.#local.get(id);
      const mine = local && this.#generations.get(local);
      if (local && mine !== undefined && mine < generation) {
        // Announce it as a replace: the fleet-wide map by id moves the device to that node.
        this.#replaced(local, node);
        this.#emit("replace", { ...detail, previousNode: this.node });
        return;
      }
    }
    this.#emit(type, detail);
  }

  /** Renews the lease; on `resync` (Redis back) or a lost lease, claims every live device again. */
  #renew(resync = false): Promise<void> {
    this.#renewing ??= this.#doRenew(resync).finally(() => {
      this.#renewing = undefined;
      this.#schedule();
    });
    return this.#renewing;
  }

  #schedule(): void {
    clearTimeout(this.#renewTimer);
    if (this.#closed || this.#draining) return;
    this.#renewTimer = setTimeout(() => void this.#renew(), Math.max(50, this.#options.ttl / 3));
    this.#renewTimer.unref?.();
  }

  async #doRenew(resync: boolean): Promise<void> {
    if (this.#closed || this.#draining || !this.#up) return;
    let existed: number;
    let lost: string[];
    let owned: string[];
    let kept: number;
    // Devices claimed before this renewal: each should have its entry.
    const claimed = [...this.#local.values()].filter((dialer) => this.#generations.has(dialer)).length;
    try {
      [existed, lost, owned, kept] = checkRenew(await this.#redis.wslisRenew(
        this.#key("node", this.node),
        this.#key("devices", this.node),
        `${this.#options.prefix}nodes`,
        this.node,
        this.#options.ttl,
        this.#options.advertise,
        this.#options.prefix,
        resync ? "1" : "0",
      ));
    } catch (error) {
      this.#options.logger.warn(`wslis: cluster node ${this.node} could not renew its lease: ${(error as Error).message}`);
      return;
    }
    // Entries of connections that ended while Redis was away go now.
    for (let i = 0; i + 1 < owned.length; i += 2) {
      const [id, generation] = [owned[i]!, owned[i + 1]!];
      const local = this.#local.get(id);
      if (!local || (this.#generations.has(local) && String(this.#generations.get(local)) !== generation)) {
        await this.#release(id, generation, "ERR_CONNECTION_LOST");
      }
    }
    // Redis forgot entries of ours: restarted empty, or our lease expired (a Redis frozen past ttl expires
    // it on waking, and then a renewal of ours queued before the freeze may have made the lease again, its
    // answer lost to a timeout: so the entries are counted, not just the lease looked at).
    const forgot = existed === 0 || kept + lost.length < claimed;
    if (!this.#wasUp) {
      if (resync && forgot && this.#local.size > 0) {
        this.#options.logger.info?.(`wslis: cluster node ${this.node} registers its ${this.#local.size} devices again`);
      }
      this.#wasUp = true;
    }
    // Claim again what Redis forgot (restarted empty, our lease expired) or what the set says we lost:
    // the claim script keeps what is still ours and tells us what a newer connection took.
    const again = resync || forgot ? [...this.#local.values()] : lost.flatMap((id) => this.#local.get(id) ?? []);
    await Promise.all(again.map((dialer) => this.#claim(dialer)));
  }

  find(id: string, options: { fresh?: boolean } = {}): Promise<Placement | undefined> {
    // Just started: Redis has not answered yet. Waiting (a few ms, usually) beats failing a call that
    // would work; once it was up, a Redis that goes away fails calls at once.
    if (!this.#up && !this.#startedDone) return this.#started.then(() => this.#findNow(id, options));
    return this.#findNow(id, options);
  }

  #findNow(id: string, options: { fresh?: boolean }): Promise<Placement | undefined> {
    if (!this.#up) return Promise.reject(new ClusterUnavailableError(`the cluster directory (Redis) is unreachable from node ${this.node}`));
    if (!options.fresh) {
      const cached = this.#placements.get(id);
      if (cached && performance.now() - cached.at < PLACEMENT_MAX_AGE) return Promise.resolve(cached.placement);
      const inFlight = this.#finding.get(id);
      if (inFlight && !inFlight.stale) return inFlight.promise;
    }
    this.#placements.delete(id);
    const lookup = { promise: this.#lookUp(id), stale: !this.#listening };
    this.#finding.set(id, lookup);
    return lookup.promise.then(
      (placement) => {
        if (this.#finding.get(id) === lookup) this.#finding.delete(id);
        // Kept only if no event about this device came meanwhile (the answer may predate it).
        if (placement && !lookup.stale && this.#listening) {
          if (this.#placements.size >= PLACEMENT_CACHE_SIZE) this.#placements.delete(this.#placements.keys().next().value!);
          this.#placements.set(id, { placement, at: performance.now() });
        }
        return placement;
      },
      (error: unknown) => {
        if (this.#finding.get(id) === lookup) this.#finding.delete(id);
        throw error;
      },
    );
  }

  async #lookUp(id: string): Promise<Placement | undefined> {
    let found: Awaited<ReturnType<Scripts["wslisFind"]>>;
    try {
      found = checkFind(await this.#redis.wslisFind(this.#key("dev", id), this.#options.prefix));
    } catch (error) {
      throw new ClusterUnavailableError(`the cluster directory (Redis) failed: ${(error as Error).message}`, { cause: error });
    }
    if (!found) return undefined;
    const [node, generation, connectedAt, advertise, renewedAt] = found;
    return { id, node, generation: Number(generation), connectedAt: Number(connectedAt), lastSeen: Number(renewedAt), advertise };
  }

  forget(id: string): void {
    this.#placements.delete(id);
    const inFlight = this.#finding.get(id);
    if (inFlight) inFlight.stale = true;
  }

  #forgetAll(): void {
    this.#placements.clear();
    for (const lookup of this.#finding.values()) lookup.stale = true;
  }

  async *list(): AsyncIterable<DeviceRecord> {
    if (!this.#up && !this.#startedDone) await this.#started;
    if (!this.#up) throw new ClusterUnavailableError(`the cluster directory (Redis) is unreachable from node ${this.node}`);
    let nodes: string[];
    try {
      nodes = await this.#redis.smembers(`${this.#options.prefix}nodes`);
    } catch (error) {
      throw new ClusterUnavailableError(`the cluster directory (Redis) failed: ${(error as Error).message}`, { cause: error });
    }
    for (const node of nodes) {
      let records: DeviceRecord[];
      try {
        records = await this.#listNode(node);
      } catch (error) {
        throw new ClusterUnavailableError(`the cluster directory (Redis) failed: ${(error as Error).message}`, { cause: error });
      }
      yield* records;
    }
  }

  async #listNode(node: string): Promise<DeviceRecord[]> {
    const [lease, ids] = await Promise.all([
      this.#redis.hget(this.#key("node", node), "renewedAt"),
      this.#redis.smembers(this.#key("devices", node)),
    ]);
    if (lease === null) {
      await this.#redis.srem(`${this.#options.prefix}nodes`, node);
      return [];
    }
    const records: DeviceRecord[] = [];
    // In pages, so a node of many devices is one round trip per thousand.
    for (let i = 0; i < ids.length; i += 1000) {
      const page = ids.slice(i, i + 1000);
      const pipeline = this.#redis.pipeline();
      for (const id of page) pipeline.hmget(this.#key("dev", id), "node", "connectedAt");
      const results = (await pipeline.exec()) ?? [];
      page.forEach((id, n) => {
        const [error, value] = results[n] ?? [];
        const [owner, connectedAt] = (value as (string | null)[] | undefined) ?? [];
        if (!error && owner === node) records.push({ id, node, connectedAt: Number(connectedAt), lastSeen: Number(lease) });
      });
    }
    return records;
  }

  record(dialer: Dialer): DeviceRecord {
    return localRecord(dialer, this.node, this.#lastSeen);
  }

  generation(dialer: Dialer): number | undefined {
    return this.#generations.get(dialer);
  }

  async drain(): Promise<void> {
    if (this.#draining) return;
    this.#draining = true;
    clearTimeout(this.#renewTimer);
    await this.#renewing;
    if (!this.#up) return; // the lease ends our entries within ttl
    await this.#redis.wslisLeave(
      this.#key("node", this.node),
      this.#key("devices", this.node),
      `${this.#options.prefix}nodes`,
      this.node,
      this.#options.prefix,
      this.#channel,
    );
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#renewTimer);
    await this.#renewing;
    this.#subscriber.disconnect();
    if (this.#ownsClient) this.#redis.disconnect();
  }

  #emit(type: "connect" | "replace" | "disconnect", detail: FleetEventDetail): void {
    this.events.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
