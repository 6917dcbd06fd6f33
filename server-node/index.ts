/**
 * wslis server for Node: `import { listenAndServe, Server } from "wslis/server"`.
 */

export { listenAndServe, Server, DeviceRegistry } from "./server.js";
export type { ServerOptions, Handler, Authorization, ServerLogger, ServerEventMap } from "./server.js";
export { Dialer } from "./dialer.js";
export type { Conn, DialOptions } from "./dialer.js";
export { DeviceHttp, StreamSocket } from "./http.js";
export type { FetchInit, DeviceHttpOptions, StreamDialer } from "./http.js";
export type { DeviceRecord, FleetEventDetail, FleetEventMap, FleetEvents } from "./cluster/directory.js";
export type { FleetConn } from "./cluster/fleet.js";
export { RTT_BUCKETS } from "./metrics.js";
export type { MetricsSnapshot } from "./metrics.js";
export * from "../src/errors.js";
export { CloseCode } from "../src/close-codes.js";
export { Session } from "../src/yamux/session.js";
export type { SessionOptions } from "../src/yamux/session.js";
