/**
 * wslis server for Node: `import { listenAndServe, Server } from "wslis/server"`.
 */

export { listenAndServe, Server } from "./server.js";
export type { ServerOptions, Handler, Authorization, AuthorizedDevice, ServerLogger, ServerEventMap, DeviceRegistry } from "./server.js";
export type { Dialer, Conn, DialOptions } from "./dialer.js";
export type { TypedEventTarget } from "../src/events.js";
export { DeviceHttp, StreamSocket } from "./http.js";
export type { FetchInit, DeviceHttpOptions, StreamDialer } from "./http.js";
export type { DeviceRecord, FleetEventDetail, FleetEventMap, FleetEvents } from "./cluster/directory.js";
export type { FleetConn } from "./cluster/fleet.js";
export { RTT_BUCKETS } from "./metrics.js";
export type { MetricsSnapshot } from "./metrics.js";
export * from "../src/errors.js";
export { CloseCode } from "../src/close-codes.js";
export { Session } from "../src/yamux/session.js";
export type { SessionOptions, SessionInit } from "../src/yamux/session.js";
