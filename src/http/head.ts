/**
 * HTTP/1.1 message heads (RFC 9112), device side: parsing request lines and header lines, deciding how
 * a request body is framed, and encoding response heads. Pure and synchronous: strings and bytes in,
 * values out; the connection loop (server.ts) does the I/O.
 *
 * Heads are ISO-8859-1 on the wire: every byte maps to the char with the same code, which is also what
 * `Headers` accepts (ByteString), so obs-text bytes (0x80-0xFF) in values survive unchanged.
 */

import { HttpError } from "../errors.js";

/**
 * A request the device cannot serve, with the status it answers before closing the connection
 * (400 malformed, 413 body too large, 431 head too large, 417, 501, 505). Internal to the device side;
 * a handler only meets it as the error of a broken `request.body`. Code `ERR_HTTP`.
 */
export class BadRequestError extends HttpError {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

/** The request line and header fields of one request, before any body byte. */
export interface RequestHead {
  method: string;
  /** The request-target as sent: origin-form (`/path?q`) or absolute-form (`http://host/path`). */
  target: string;
  /** 0 for HTTP/1.0, 1 for HTTP/1.1 (and any later 1.x, which a server treats as 1.1). */
  minor: 0 | 1;
  /** Field lines in order, names lower-cased, values without surrounding whitespace. */
  fields: [name: string, value: string][];
}

/**
 * How a message body is delimited (RFC 9112 §6.3). "close" (the body runs until the connection ends) is
 * only ever a response's framing: a request must say its length.
 */
export type BodyFraming = { kind: "length"; length: number } | { kind: "chunked" } | { kind: "close" };

/** What a request asks of the connection besides its body. */
export interface RequestInfo {
  framing: BodyFraming;
  /** The client waits for `100 Continue` before sending the body. */
  expectContinue: boolean;
  /** The client wants the connection kept open after this exchange. */
  keepAlive: boolean;
  /** The URL the handler sees: `http://<Host>/<path>`. */
  url: string;
}

/** Methods a fetch `Request` cannot represent (the constructor throws): answered 501. */
const UNSUPPORTED_METHODS = new Set(["CONNECT", "TRACE", "TRACK"]);

const TCHAR = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Field values: visible chars, obs-text, SP and HTAB; never NUL, CR, LF or other controls. */
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
/** Request targets: visible ASCII only; clients percent-encode the rest. */
const TARGET = /^[\x21-\x7e]+$/;
/** uri-host [ ":" port ] (RFC 3986 reg-name or IP-literal): no userinfo, path, query or fragment. */
const HOST = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(:[0-9]*)?$/;

/** Parses `method SP request-target SP HTTP-version`. Throws {@link BadRequestError}. */
export function parseRequestLine(line: string): Omit<RequestHead, "fields"> {
  const parts = line.split(" ");
  if (parts.length !== 3) throw new BadRequestError(400, "malformed request line");
  const [method, target, version] = parts as [string, string, string];
  if (!TCHAR.test(method)) throw new BadRequestError(400, "malformed method");
  if (!TARGET.test(target)) throw new BadRequestError(400, "malformed request target");
  const match = /^HTTP\/(\d)\.(\d)$/.exec(version);
  if (!match) throw new BadRequestError(400, "malformed HTTP version");
  if (match[1] !== "1") throw new BadRequestError(505, `HTTP/${match[1]}.${match[2]} is not supported`);
  return { method, target, minor: match[2] === "0" ? 0 : 1 };
}

/**
 * Parses `field-name ":" OWS field-value OWS`. Whitespace before the colon and obsolete line folding
 * must be rejected (RFC 9112 §5.1, §5.2): both have been used to smuggle requests past proxies.
 */
export function parseFieldLine(line: string): [string, string] {
  const colon = line.indexOf(":");
  if (colon <= 0) throw new BadRequestError(400, "malformed header line");
  const name = line.slice(0, colon);
  if (!TCHAR.test(name)) throw new BadRequestError(400, "malformed header name");
  const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, "");
  if (!FIELD_VALUE.test(value)) throw new BadRequestError(400, "malformed header value");
  return [name.toLowerCase(), value];
}

/** Comma-separated list elements of every field named `name`, lower-cased, empty ones dropped. */
function listValues(fields: RequestHead["fields"], name: string): string[] {
  const out: string[] = [];
  for (const [n, v] of fields) {
    if (n !== name) continue;
    for (const item of v.split(",")) {
      const token = item.trim().toLowerCase();
      if (token) out.push(token);
    }
  }
  return out;
}

/**
 * Reads what the connection loop needs from a head: body framing, 100-continue, persistence, URL.
 * Throws {@link BadRequestError} for anything ambiguous: a server must not guess at framing.
 */
export function requestInfo(head: RequestHead): RequestInfo {
  if (UNSUPPORTED_METHODS.has(head.method.toUpperCase())) {
    throw new BadRequestError(501, `the ${head.method} method is not supported`);
  }
  const framing = bodyFraming(head);
  const connection = listValues(head.fields, "connection");
  const keepAlive = head.minor === 1 ? !connection.includes("close") : connection.includes("keep-alive") && !connection.includes("close");

  const expect = listValues(head.fields, "expect");
  if (expect.length > 0 && (expect.length > 1 || expect[0] !== "100-continue")) {
    throw new BadRequestError(417, "only Expect: 100-continue is supported");
  }
  return { framing, expectContinue: expect.length === 1 && head.minor === 1, keepAlive, url: requestUrl(head) };
}

/** RFC 9112 §6.3, for requests: chunked, else Content-Length, else no body. */
function bodyFraming(head: RequestHead): BodyFraming {
  const hasTransferEncoding = head.fields.some(([n]) => n === "transfer-encoding");
  const lengths = head.fields.filter(([n]) => n === "content-length");
  if (hasTransferEncoding) {
    if (head.minor === 0) throw new BadRequestError(400, "Transfer-Encoding in an HTTP/1.0 request");
    if (lengths.length > 0) throw new BadRequestError(400, "both Transfer-Encoding and Content-Length");
    const codings = listValues(head.fields, "transfer-encoding");
    if (codings.at(-1) !== "chunked" || codings.indexOf("chunked") !== codings.length - 1) {
      throw new BadRequestError(400, "chunked must be the last and only-once transfer coding");
    }
    if (codings.length > 1) throw new BadRequestError(501, `unsupported transfer coding ${codings[0]}`);
    return { kind: "chunked" };
  }
  let length: number | undefined;
  for (const [, value] of lengths) {
    for (const item of value.split(",")) {
      const n = parseLength(item.trim());
      if (n === undefined || (length !== undefined && n !== length)) throw new BadRequestError(400, "invalid Content-Length");
      length = n;
    }
  }
  return { kind: "length", length: length ?? 0 };
}

/** A non-negative decimal below 2^53, or undefined. */
export function parseLength(text: string): number | undefined {
  if (!/^\d{1,15}$/.test(text)) return undefined;
  return Number(text);
}

/** `http://<Host>/<path>` for origin-form; the target itself for absolute-form (sent to proxies). */
function requestUrl(head: RequestHead): string {
  const hosts = head.fields.filter(([n]) => n === "host");
  if (hosts.length > 1) throw new BadRequestError(400, "more than one Host header");
  if (hosts.length === 0 && head.minor === 1) throw new BadRequestError(400, "missing Host header");
  const host = hosts[0]?.[1] || "localhost";
  if (!HOST.test(host)) throw new BadRequestError(400, "malformed Host header");

  // String concatenation, never `new URL(target, base)`: a target like `//evil/x` would replace the host.
  // Not parsed here: the `Request` made of it parses it (once per request) and refuses what is not a URL.
  if (head.target.startsWith("/")) return `http://${host}${head.target}`;
  let url: URL | undefined;
  try {
    url = new URL(head.target);
  } catch {
    // refused below
  }
  if (url?.protocol !== "http:" && url?.protocol !== "https:") throw new BadRequestError(400, "malformed request target");
  return url.href;
}

/** The status line and header fields of one response, as the client direction reads them. */
export interface ResponseHead {
  /** 0 for HTTP/1.0, 1 for HTTP/1.1 (and any later 1.x). */
  minor: 0 | 1;
  status: number;
  reason: string;
  /** Field lines in order, names lower-cased. */
  fields: [name: string, value: string][];
}

/** reason-phrase = *( HTAB / SP / VCHAR / obs-text ) (RFC 9112 §4). */
const REASON = /^[\t\x20-\x7e\x80-\xff]*$/;

/** Parses `HTTP-version SP status-code SP [reason-phrase]`. Throws an {@link HttpError} (`ERR_HTTP`). */
export function parseStatusLine(line: string): Omit<ResponseHead, "fields"> {
  const match = /^HTTP\/1\.(\d) ([1-5]\d\d)(?: (.*))?$/.exec(line);
  if (!match) throw new HttpError(`invalid status line ${JSON.stringify(line.slice(0, 64))}`);
  const reason = match[3] ?? "";
  if (!REASON.test(reason)) throw new HttpError("invalid reason phrase");
  return { minor: match[1] === "0" ? 0 : 1, status: Number(match[2]), reason };
}

/**
 * How a response body is delimited (RFC 9112 §6.3): none for HEAD, 1xx, 204, 205 and 304; chunked when
 * it is the final transfer coding; else until the connection ends when Transfer-Encoding is present or no
 * length is given; else Content-Length. Both Transfer-Encoding and Content-Length, or conflicting
 * lengths, are refused (as undici's parser does): a client must not guess at framing either.
 */
export function responseFraming(head: ResponseHead, method: string): BodyFraming {
  const status = head.status;
  if (method === "HEAD" || status < 200 || status === 204 || status === 205 || status === 304) return { kind: "length", length: 0 };
  const codings = listValues(head.fields, "transfer-encoding");
  const hasTransferEncoding = head.fields.some(([n]) => n === "transfer-encoding");
  const lengths = head.fields.filter(([n]) => n === "content-length");
  if (hasTransferEncoding) {
    if (lengths.length > 0) throw new HttpError("both Transfer-Encoding and Content-Length in the response");
    return codings.at(-1) === "chunked" && head.minor === 1 ? { kind: "chunked" } : { kind: "close" };
  }
  let length: number | undefined;
  for (const [, value] of lengths) {
    for (const item of value.split(",")) {
      const n = parseLength(item.trim());
      if (n === undefined || (length !== undefined && n !== length)) throw new HttpError("invalid Content-Length in the response");
      length = n;
    }
  }
  return length === undefined ? { kind: "close" } : { kind: "length", length };
}

/** Whether the connection may carry another request after this response (RFC 9112 §9.3). */
export function responseKeepsAlive(head: ResponseHead): boolean {
  const connection = listValues(head.fields, "connection");
  return head.minor === 1 ? !connection.includes("close") : connection.includes("keep-alive") && !connection.includes("close");
}

/** Status codes that never carry a body (RFC 9110 §6.4.1). */
export function statusHasBody(status: number): boolean {
  return !(status < 200 || status === 204 || status === 304);
}

const REASONS: Record<number, string> = {
  100: "Continue", 200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 206: "Partial Content",
  301: "Moved Permanently", 302: "Found", 303: "See Other", 304: "Not Modified", 307: "Temporary Redirect",
  308: "Permanent Redirect", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
  405: "Method Not Allowed", 408: "Request Timeout", 409: "Conflict", 410: "Gone", 411: "Length Required",
  413: "Content Too Large", 415: "Unsupported Media Type", 417: "Expectation Failed", 422: "Unprocessable Content",
  429: "Too Many Requests", 431: "Request Header Fields Too Large", 500: "Internal Server Error",
  501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
  505: "HTTP Version Not Supported",
};

/** The standard reason phrase of a status, or "" (an empty reason phrase is valid HTTP/1.1). */
export function reasonPhrase(status: number): string {
  return REASONS[status] ?? "";
}

/**
 * Headers a handler may set that describe this connection, not the message (RFC 9110 §7.6.1); the
 * framing code writes its own.
 */
export const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "te",
  "trailer",
  "upgrade",
]);

/** Encodes a status line and header fields, then `more` (field lines already formatted), and the empty line. */
export function encodeResponseHead(status: number, statusText: string, fields: Iterable<[string, string]>, more = ""): Uint8Array {
  let text = `HTTP/1.1 ${status} ${statusText || reasonPhrase(status)}\r\n`;
  for (const [name, value] of fields) text += `${name}: ${value}\r\n`;
  return encodeLatin1(`${text}${more}\r\n`);
}

/** Bytes of a string whose chars are all below 0x100 (what `Headers` guarantees). */
export function encodeLatin1(text: string): Uint8Array {
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

/** The string whose char codes are these bytes (ISO-8859-1; `TextDecoder("latin1")` is windows-1252). */
export function decodeLatin1(bytes: Uint8Array): string {
  // `apply` takes the typed array as it is; a spread (`...bytes`) iterates it, ten times slower per line.
  const STEP = 8192; // String.fromCharCode's argument count is bounded by the engine's stack.
  if (bytes.length <= STEP) return String.fromCharCode.apply(null, bytes as unknown as number[]);
  let text = "";
  for (let i = 0; i < bytes.length; i += STEP) {
    text += String.fromCharCode.apply(null, bytes.subarray(i, i + STEP) as unknown as number[]);
  }
  return text;
}
