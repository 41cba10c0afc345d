// Types of @sacred/client (index.js). Checked by `tsc --strict` against
// bindings/wasm/tests/usage.ts in the test command.

/** A payload: JSON's values, `bigint` for 64-bit integers, `Uint8Array` for bytes. */
export type Data =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | Data[]
  | { [key: string]: Data };

/** Offsets and times: a `number` while below 2^53 (every real stream and clock), else a `bigint`. */
export type Offset = number | bigint;

/** Loads the WebAssembly module (every client waits for it; call it to load early or from another path). */
export function load(moduleOrPath?: string | URL | Request | Response | BufferSource | WebAssembly.Module): Promise<unknown>;

export interface ClientOptions {
  /** A fixed token sent with every connect. */
  token?: string;
  /** Asked before every connect and before the token expires; throw `UnauthorizedError` to stop the client. */
  getToken?: () => string | Promise<string>;
  /** The name others see. */
  name?: string;
  /** What the client is: "app", "agent", "service"... */
  kind?: string;
  /** The application's version. */
  version?: string;
  /** The wire format; payloads are plain values either way. */
  codec?: "json" | "msgpack";
  /** How long a call waits for its reply, ms (5000). */
  timeout?: number;
  /** How long `ready()` waits by default, ms (10000). */
  connectTimeout?: number;
  /** Reconnect backoff bounds, ms (500 and 20000). */
  minReconnectDelay?: number;
  maxReconnectDelay?: number;
  /** Most commands in one frame. */
  maxBatch?: number;
  /** Calls that wait while disconnected (1024), and for how long, ms (30000). */
  offlineQueue?: number;
  offlineDeadline?: number;
  /** Events each subscription buffers (1024), direct messages each reader buffers (1024). */
  subscriptionBuffer?: number;
  messageBuffer?: number;
}

/** Per call: a timeout (ms) and an `AbortSignal`. */
export interface CallOptions {
  timeout?: number;
  signal?: AbortSignal;
}

export interface PublishOptions extends CallOptions {
  /** The W3C trace context of the publisher's span (`00-{trace id}-{span id}-{flags}`, lowercase hex). */
  traceparent?: string;
}

export interface Peer {
  id: string;
  user: string | null;
  name: string;
  kind: string;
  runtime: string;
  version: string;
}

export interface Publication {
  type: "publication";
  channel: string;
  data: Data;
  offset: Offset | null;
  epoch: string | null;
  publisher: Peer | null;
  time: Offset;
  /** The W3C `traceparent` its publish carried (same trace id and flags; the parent is the server's span when it traces), else `null`. */
  traceparent: string | null;
}

export interface PublishResult {
  offset: Offset | null;
  epoch: string | null;
}

export interface History {
  publications: Publication[];
  offset: Offset;
  epoch: string;
}

export interface SearchResult {
  /** The page's matches, best first. */
  publications: Publication[];
  /** How many publications match in all. */
  total: Offset;
}

export interface SearchOptions extends CallOptions {
  /** At most this many (10 by default; the server caps it, at 100). */
  limit?: number;
  /** Matches skipped before the first returned (paging). */
  skip?: number;
}

export interface Message {
  type: "message";
  data: Data;
  sender: Peer | null;
}

export interface Lagged {
  type: "lagged";
  skipped: Offset;
}

export type ClientState = "disconnected" | "connecting" | "connected" | "closed";

export interface ClientEvents {
  connecting: { type: "connecting" };
  connected: { type: "connected"; clientId: string };
  disconnected: { type: "disconnected"; code: number; reason: string; reconnect: boolean };
  error: { type?: "error"; error: SacredError };
  lagged: Lagged;
  message: Message;
}

export interface SubscriptionEvents {
  publication: Publication;
  join: { type: "join"; peer: Peer };
  leave: { type: "leave"; peer: Peer };
  /** The connection dropped; the subscription resubscribes once it is back. */
  subscribing: { type: "subscribing"; code: number; reason: string };
  subscribed: { type: "subscribed"; recovered: boolean };
  unsubscribed: { type: "unsubscribed"; code: number; reason: string };
  lagged: Lagged;
  error: { error: SacredError };
}

declare class Emitter<Events> {
  on<K extends keyof Events>(event: K, listener: (ctx: Events[K]) => void): this;
  once<K extends keyof Events>(event: K, listener: (ctx: Events[K]) => void): this;
  off<K extends keyof Events>(event: K, listener?: (ctx: Events[K]) => void): this;
}

export class Subscription extends Emitter<SubscriptionEvents> {
  readonly channel: string;
  readonly state: "subscribed" | "subscribing" | "unsubscribed";
  /** `recovered` of the last resubscription; `undefined` before one. */
  recovered: boolean | undefined;
  publications(options?: { signal?: AbortSignal }): AsyncIterableIterator<Publication>;
  publish(data: Data, options?: PublishOptions): Promise<PublishResult>;
  history(options?: HistoryOptions): Promise<History>;
  presence(options?: CallOptions): Promise<Peer[]>;
  unsubscribe(): Promise<void>;
}

export interface HistoryOptions extends CallOptions {
  limit?: number;
  since?: { offset: Offset; epoch: string };
  reverse?: boolean;
}

export class Client extends Emitter<ClientEvents> {
  constructor(url: string, options?: ClientOptions);
  readonly url: string;
  readonly state: ClientState;
  readonly id: string | undefined;
  connect(): this;
  ready(options?: CallOptions): Promise<void>;
  disconnect(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
  subscribe(channel: string, options?: CallOptions & { joinLeave?: boolean }): Promise<Subscription>;
  getSubscription(channel: string): Subscription | undefined;
  publish(channel: string, data: Data, options?: PublishOptions): Promise<PublishResult>;
  send(to: string, data: Data, options?: CallOptions): Promise<void>;
  presence(channel: string, options?: CallOptions): Promise<Peer[]>;
  history(channel: string, options?: HistoryOptions): Promise<History>;
  search(channel: string, text: string, options?: SearchOptions): Promise<SearchResult>;
  rpc(method: string, data?: Data, options?: CallOptions): Promise<Data>;
  serverTime(): Promise<Offset | null>;
  messages(options?: { signal?: AbortSignal }): AsyncIterableIterator<Message | Lagged>;
}

export interface SacredErrorOptions {
  code?: number | null;
  temporary?: boolean;
  cause?: unknown;
}

export class SacredError extends Error {
  constructor(message: string, options?: SacredErrorOptions);
  /** The server's error or close code, if any. */
  readonly code: number | null;
  /** Whether the same call may succeed later. */
  readonly temporary: boolean;
}
export class TimeoutError extends SacredError {}
export class AbortError extends SacredError {}
export class ClientClosedError extends SacredError {}
export class RefusedError extends ClientClosedError {}
export class UnauthorizedError extends RefusedError {
  constructor(message?: string, options?: SacredErrorOptions);
}
export class ReplyError extends SacredError {}
export class PermissionDeniedError extends ReplyError {}
export class UnrecoverablePositionError extends ReplyError {}
export class TooLargeError extends SacredError {}
export class InvalidError extends SacredError {}
export class DuplicateSubscriptionError extends SacredError {}
export class DisconnectedError extends SacredError {}
export class OfflineQueueError extends SacredError {}
export class TransportError extends SacredError {}
export class TokenError extends SacredError {}
export class ConfigurationError extends SacredError {}
