/**
 * Assembles a node's fleet: the directory (in memory, or on Redis with `cluster`), the node-to-node
 * client and the endpoint other nodes call.
 */

import type { Redis } from "ioredis";
import { msOption } from "../../src/options.js";
import type { DeviceRegistry, ServerLogger } from "../server.js";
import { MemoryDirectory, type Directory } from "./directory.js";
import { NodeEndpoint } from "./endpoint.js";
import { Fleet } from "./fleet.js";
import { PeerClient, type PeerClientOptions } from "./peer.js";
import { generatedNodeId, RedisDirectory } from "./redis.js";

/** `ServerOptions.cluster`: many server nodes, one fleet, on Redis. */
export interface ClusterOptions {
  /** Redis: a URL (`redis://host:6379/0`, `rediss://` for TLS) or an ioredis client (the server leaves it open). */
  redis: string | Redis;
  /** This node's id, unique in the cluster. Default: `node-` and 8 random hex digits, new at every start. */
  nodeId?: string;
  /**
   * The base URL other nodes reach this one at (`http://10.0.0.5:8080`); node-to-node requests go to
   * its reserved `path` on the same listener. Required.
   */
  advertise: string;
  /** Shared by every node; node-to-node requests without it are refused (401). Required, 16 characters or more. */
  secret: string;
  /**
   * Lease of this node's presence, in ms: renewed every ttl/3; a node that stops renewing (crashed,
   * partitioned from Redis) loses its devices' entries after it, so they are routed wherever they
   * reconnect. Default 15 000.
   */
  ttl?: number;
  /** The path prefix reserved for node-to-node requests on the listener. Default "/.wslis/node". */
  path?: string;
  /** Prefix of every Redis key and channel, to share one Redis among clusters. Default "wslis:". */
  prefix?: string;
}

export interface FleetParts {
  directory: Directory;
  fleet: Fleet;
  endpoint?: NodeEndpoint;
  peers?: PeerClient;
}

export function createFleet(
  devices: DeviceRegistry,
  cluster: ClusterOptions | undefined,
  /** The server's timeouts and keepalive, which forwarded calls share (see {@link PeerClientOptions}). */
  defaults: Omit<PeerClientOptions, "secret" | "path"> & { logger: ServerLogger },
): FleetParts {
  if (!cluster) {
    const directory = new MemoryDirectory(devices, "local");
    return { directory, fleet: new Fleet(devices, directory) };
  }
  const { redis, advertise, secret, ttl = 15_000, path = "/.wslis/node", prefix = "wslis:" } = cluster;
  const nodeId = cluster.nodeId ?? generatedNodeId();
  if (typeof redis !== "string" && (typeof redis !== "object" || redis === null || typeof redis.duplicate !== "function")) {
    throw new TypeError("wslis: cluster.redis must be a Redis URL or an ioredis client");
  }
  let url: URL;
  try {
    url = new URL(advertise);
  } catch {
    throw new TypeError(`wslis: cluster.advertise must be an http(s) URL, not ${JSON.stringify(advertise)}`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new TypeError(`wslis: cluster.advertise must be an http(s) URL, not ${JSON.stringify(advertise)}`);
  }
  if (typeof secret !== "string" || secret.length < 16) throw new TypeError("wslis: cluster.secret must be a string of 16 characters or more");
  msOption("cluster.ttl", ttl, 300);
  if (typeof nodeId !== "string" || !/^[\w.:-]{1,128}$/.test(nodeId)) {
    throw new TypeError(`wslis: cluster.nodeId must be 1-128 letters, digits, '_', '.', ':' or '-', not ${JSON.stringify(nodeId)}`);
  }
  if (!/^\/[^?#]*[^/?#]$/.test(path)) throw new TypeError(`wslis: cluster.path must start with '/' and not end with one, not ${JSON.stringify(path)}`);
  const directory = new RedisDirectory({ redis, nodeId, advertise, ttl, prefix, logger: defaults.logger });
  const peers = new PeerClient({
    secret,
    path,
    fetchTimeout: defaults.fetchTimeout,
    bodyTimeout: defaults.bodyTimeout,
    dialTimeout: defaults.dialTimeout,
    idleTimeout: defaults.idleTimeout,
    keepAliveInterval: defaults.keepAliveInterval,
    keepAliveTimeout: defaults.keepAliveTimeout,
    ...(defaults.http ? { http: defaults.http } : {}),
  });
  const fleet = new Fleet(devices, directory, peers);
  const endpoint = new NodeEndpoint({
    node: nodeId,
    secret,
    path,
    localDevice: (id, generation) => fleet.localDevice(id, generation),
    keepAliveInterval: defaults.keepAliveInterval,
    keepAliveTimeout: defaults.keepAliveTimeout,
  });
  return { directory, fleet, endpoint, peers };
}
