// Sacred's browser client: the Rust client compiled to WebAssembly (reconnect,
// recovery, batching, the offline queue) under the JavaScript a page expects:
// event emitters, Promises with {timeout, signal}, async iterators and error
// classes. Types: index.d.ts.

import init, { RawClient } from "./sacred_client_wasm.js";

let loading;
/** Loads the WebAssembly module once (every client waits for it). */
export function load(moduleOrPath) {
  loading ??= init(moduleOrPath === undefined ? undefined : { module_or_path: moduleOrPath });
  return loading;
}

// ---- errors -------------------------------------------------------------

/** The root of every error the client raises. */
export class SacredError extends Error {
  constructor(message, { code = null, temporary = false, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = new.target.name;
    /** The server's error or close code, if any. */
    this.code = code;
    /** Whether the same call may succeed later. */
    this.temporary = temporary;
  }
}
/** No answer in time (a call's `timeout`, `ready({timeout})`). */
export class TimeoutError extends SacredError {}
/** The call was aborted by its `signal`. */
export class AbortError extends SacredError {}
/** The client is closed. */
export class ClientClosedError extends SacredError {}
/** The server refused the connection for good; `code` is its close code. */
export class RefusedError extends ClientClosedError {}
/** The user may not connect; throw it from `getToken` to stop reconnecting. */
export class UnauthorizedError extends RefusedError {
  constructor(message = "unauthorized", options = {}) {
    super(message, { code: 3507, ...options });
  }
}
/** The server answered with an error; `code` says which. */
export class ReplyError extends SacredError {}
/** The identity may not do this on this channel (103). */
export class PermissionDeniedError extends ReplyError {}
/** The stream position asked for is gone (112): reload with history. */
export class UnrecoverablePositionError extends ReplyError {}
/** Larger than the server accepts; nothing was sent. */
export class TooLargeError extends SacredError {}
/** A value or name the protocol cannot carry; nothing was sent. */
export class InvalidError extends SacredError {}
/** This client already subscribes to the channel. */
export class DuplicateSubscriptionError extends SacredError {}
/** The connection dropped before the reply; the call may have been applied. */
export class DisconnectedError extends SacredError {}
/** The offline queue was full, or the call waited in it too long. */
export class OfflineQueueError extends SacredError {}
/** A connection attempt failed (refused, DNS, TLS, an HTTP error). */
export class TransportError extends SacredError {}
/** `getToken` failed; the client retries. */
export class TokenError extends SacredError {}
/** The client's options are invalid. */
export class ConfigurationError extends SacredError {}

const CLASSES = {
  SacredError, TimeoutError, AbortError, ClientClosedError, RefusedError, UnauthorizedError,
  ReplyError, PermissionDeniedError, UnrecoverablePositionError, TooLargeError, InvalidError,
  DuplicateSubscriptionError, DisconnectedError, OfflineQueueError, TransportError, TokenError,
  ConfigurationError,
};

/** The error class instance for what the WebAssembly side threw. */
function toError(raw) {
  if (raw instanceof Error) return raw;
  if (raw && raw.sacredError) {
    const Class = CLASSES[raw.kind] ?? SacredError;
    return new Class(raw.message, { code: raw.code ?? null, temporary: raw.temporary });
  }
  return new SacredError(String(raw));
}

// ---- helpers --------------------------------------------------------------

/** Runs `promise` with an optional `timeout` (ms) and `signal`. */
function bounded(promise, { timeout, signal } = {}) {
  const wrapped = promise.then(undefined, (raw) => Promise.reject(toError(raw)));
  if (timeout === undefined && signal === undefined) return wrapped;
  if (signal?.aborted) {
    wrapped.catch(() => {}); // its outcome no longer matters to anyone
    return Promise.reject(new AbortError("aborted", { cause: signal.reason }));
  }
  return new Promise((resolve, reject) => {
    let timer;
    const onAbort = () => {
      done();
      reject(new AbortError("aborted", { cause: signal.reason }));
    };
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    };
    if (timeout !== undefined) {
      timer = setTimeout(() => {
        done();
        reject(new TimeoutError(`no answer within ${timeout} ms`, { temporary: true }));
      }, timeout);
    }
    signal?.addEventListener("abort", onAbort, { once: true });
    wrapped.then(
      (value) => { done(); resolve(value); },
      (err) => { done(); reject(err); },
    );
  });
}

/** A small typed event emitter; a listener that throws is reported, not propagated. */
class Emitter {
  #listeners = new Map();

  /** Calls `listener` on every `event`; returns `this`. */
  on(event, listener) {
    if (!this.#listeners.has(event)) this.#listeners.set(event, new Set());
    this.#listeners.get(event).add(listener);
    return this;
  }

  /** Calls `listener` on the next `event` only. */
  once(event, listener) {
    const wrapper = (ctx) => {
      this.off(event, wrapper);
      listener(ctx);
    };
    return this.on(event, wrapper);
  }

  /** Removes a listener (or every listener of `event`). */
  off(event, listener) {
    if (listener === undefined) this.#listeners.delete(event);
    else this.#listeners.get(event)?.delete(listener);
    return this;
  }

  /** @internal */
  emit(event, ctx) {
    for (const listener of [...(this.#listeners.get(event) ?? [])]) {
      try {
        listener(ctx);
      } catch (err) {
        // A listener's failure never stops the client: the page hears of it.
        queueMicrotask(() => { throw err; });
      }
    }
  }
}

/** A queue that async iterators read; `end()` finishes every reader. */
class Feed {
  #items = [];
  #waiting = [];
  #ended = false;

  push(item) {
    const reader = this.#waiting.shift();
    if (reader) reader.resolve({ value: item, done: false });
    else this.#items.push(item);
  }

  end() {
    this.#ended = true;
    for (const reader of this.#waiting.splice(0)) reader.resolve({ value: undefined, done: true });
  }

  next(signal) {
    if (this.#items.length) return Promise.resolve({ value: this.#items.shift(), done: false });
    if (this.#ended) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => {
      const reader = { resolve, reject };
      this.#waiting.push(reader);
      signal?.addEventListener("abort", () => {
        this.#waiting = this.#waiting.filter((r) => r !== reader);
        resolve({ value: undefined, done: true });
      }, { once: true });
    });
  }
}

/** An async iterator over `feeds` registered now, until `signal` aborts. */
function iterate(feeds, { signal } = {}) {
  const feed = new Feed();
  feeds.add(feed);
  if (signal?.aborted) feed.end();
  signal?.addEventListener("abort", () => { feeds.delete(feed); feed.end(); }, { once: true });
  return {
    next: () => feed.next(signal),
    return: () => { feeds.delete(feed); feed.end(); return Promise.resolve({ value: undefined, done: true }); },
    [Symbol.asyncIterator]() { return this; },
  };
}

const BATCH = 256;

/** A batch from the WebAssembly side: an array, or its JSON text (cheaper to cross). */
function items(batch) {
  return typeof batch === "string" ? JSON.parse(batch) : batch;
}

// ---- subscription ---------------------------------------------------------

/** One subscribed channel. Events: publication, join, leave, subscribing
 * ({code, reason}: the connection dropped, it resubscribes once back),
 * subscribed ({recovered}), unsubscribed ({code, reason}), lagged ({skipped}), error. */
export class Subscription extends Emitter {
  #raw;
  #client;
  #feeds = new Set();
  #state = "subscribed";
  /** `recovered` of the last resubscription; `undefined` before one. */
  recovered = undefined;

  /** @internal */
  constructor(client, raw) {
    super();
    this.#client = client;
    this.#raw = raw;
    this.channel = raw.channel;
    this.#pump();
  }

  /** "subscribed", "subscribing" (resubscribing after a reconnect) or "unsubscribed". */
  get state() {
    return this.#state;
  }

  async #pump() {
    for (;;) {
      let batch;
      try {
        batch = items(await this.#raw.nextBatch(BATCH));
      } catch (raw) {
        this.emit("error", { error: toError(raw) });
        break;
      }
      if (batch === null) break;
      for (const event of batch) {
        if (event.type === "publication") {
          for (const feed of this.#feeds) feed.push(event);
        } else if (event.type === "subscribed") {
          this.recovered = event.recovered;
          if (this.#state === "subscribing") this.#state = "subscribed";
        }
        this.emit(event.type, event);
      }
    }
    this.#end();
  }

  /** @internal The connection dropped and will come back: this subscription resubscribes then. */
  _resubscribing({ code, reason }) {
    if (this.#state !== "subscribed") return;
    this.#state = "subscribing";
    this.emit("subscribing", { type: "subscribing", code, reason });
  }

  #end() {
    if (this.#state === "unsubscribed") return;
    this.#state = "unsubscribed";
    for (const feed of this.#feeds) feed.end();
    this.#feeds.clear();
    this.#client._forget(this);
    try { this.#raw.free(); } catch { /* already freed */ }
  }

  /** Publications from now on: `for await (const pub of sub.publications({signal}))`. */
  publications(options) {
    return iterate(this.#feeds, options);
  }

  /** Publishes to this channel. */
  publish(data, options) {
    return this.#client.publish(this.channel, data, options);
  }

  /** A page of this channel's history. */
  history(options) {
    return this.#client.history(this.channel, options);
  }

  /** Who is subscribed to this channel. */
  presence(options) {
    return this.#client.presence(this.channel, options);
  }

  /** Unsubscribes; every iterator ends. */
  async unsubscribe() {
    if (this.#state === "unsubscribed") return;
    await this.#raw.unsubscribe();
  }
}

// ---- client ---------------------------------------------------------------

/** A client of one Sacred hub. Events: connecting, connected ({clientId}),
 * disconnected ({code, reason, reconnect}), error ({error}), lagged ({skipped}). */
export class Client extends Emitter {
  #raw;
  #ready;
  #subscriptions = new Map();
  #messageFeeds = new Set();
  #messages;
  #closed = false;
  #online = () => { if (this.#raw && this.state !== "connected") this.#raw.connect().catch(() => {}); };

  /**
   * @param {string} url `ws://` or `wss://` URL of the hub's WebSocket endpoint.
   * @param {import("./index.d.ts").ClientOptions} [options]
   */
  constructor(url, options = {}) {
    super();
    this.url = url;
    this.#ready = load().then(() => {
      this.#raw = new RawClient(url, options);
      this.#pump();
      return this.#raw;
    }, (err) => Promise.reject(toError(err)));
    this.#ready.catch(() => {});
    globalThis.addEventListener?.("online", this.#online);
  }

  /** "disconnected", "connecting", "connected" or "closed". */
  get state() {
    if (this.#closed) return "closed";
    try {
      return this.#raw?.state ?? "disconnected";
    } catch {
      return "closed"; // freed
    }
  }

  /** The id the server assigned; `undefined` while not connected. */
  get id() {
    if (this.#closed) return undefined;
    return this.#raw?.id;
  }

  async #client() {
    if (this.#closed) throw new ClientClosedError("the client is closed");
    return this.#ready;
  }

  /** Starts connecting (if not already); reconnects by itself from then on. */
  connect() {
    this.#client().then((raw) => raw.connect()).catch((err) => this.emit("error", { error: toError(err) }));
    return this;
  }

  /** Resolves once connected; rejects if refused for good, or after `timeout`. */
  async ready(options) {
    const raw = await this.#client();
    return bounded(raw.connect(), options);
  }

  /** Closes for good: pending calls reject, every subscription and iterator ends. */
  async disconnect() {
    if (this.#closed) return;
    const raw = await this.#ready.catch(() => undefined);
    this.#closed = true;
    globalThis.removeEventListener?.("online", this.#online);
    if (raw) await raw.close();
    for (const feed of this.#messageFeeds) feed.end();
    await this.#messages?.close();
  }

  async #pump() {
    for (;;) {
      const batch = await this.#raw.nextEvents(64);
      if (batch === null) break;
      for (const event of batch) {
        if (event.type === "error") event.error = toError(event.error);
        this.emit(event.type, event);
        if (event.type === "disconnected" && event.reconnect) {
          for (const subscription of this.#subscriptions.values()) subscription._resubscribing(event);
        }
      }
    }
    // Closed: nothing of this client runs any more; free its Rust memory.
    queueMicrotask(() => { try { this.#raw.free(); } catch { /* already freed */ } });
  }

  /** `await using client = new Client(...)`. */
  async [Symbol.asyncDispose]() {
    await this.disconnect();
  }

  /** Subscribes; resolves with the `Subscription` once the server confirmed. */
  async subscribe(channel, { joinLeave = false, timeout, signal } = {}) {
    const raw = await this.#client();
    const subscription = new Subscription(this, await bounded(raw.subscribe(channel, joinLeave), { timeout, signal }));
    this.#subscriptions.set(channel, subscription);
    return subscription;
  }

  /** The live subscription to `channel`, if any. */
  getSubscription(channel) {
    return this.#subscriptions.get(channel);
  }

  /** @internal */
  _forget(subscription) {
    if (this.#subscriptions.get(subscription.channel) === subscription) this.#subscriptions.delete(subscription.channel);
  }

  /**
   * Publishes; resolves with the server's ack `{offset, epoch}`. `traceparent`,
   * the W3C trace context of the publisher's span, reaches every subscriber as
   * the publication's `traceparent`; a malformed one is refused (InvalidError)
   * before anything is sent.
   */
  async publish(channel, data, { traceparent, timeout, signal } = {}) {
    return bounded((await this.#client()).publish(channel, data, traceparent), { timeout, signal });
  }

  /** Sends `data` to one client, by its id. */
  async send(to, data, options) {
    return bounded((await this.#client()).send(to, data), options);
  }

  /** Who is subscribed to `channel`. */
  async presence(channel, options) {
    return bounded((await this.#client()).presence(channel), options);
  }

  /** A page of history: at most `limit` after `since` ({offset, epoch}), newest first if `reverse`. */
  async history(channel, { limit, since, reverse = false, timeout, signal } = {}) {
    const raw = await this.#client();
    const offset = since === undefined ? undefined : Number(since.offset);
    return bounded(raw.history(channel, limit, offset, since?.epoch, reverse), { timeout, signal });
  }

  /**
   * Searches a channel's stored history for every word of `text` (`word*`
   * for a prefix), best match first: at most `limit` (10 by default) after
   * skipping `skip`, with the `total` of matches. Rejects with a ReplyError
   * of code 108 where the channel's namespace has search off.
   */
  async search(channel, text, { limit, skip, timeout, signal } = {}) {
    return bounded((await this.#client()).search(channel, text, limit, skip), { timeout, signal });
  }

  /** Calls an RPC handler of the host; resolves with its answer. */
  async rpc(method, data = null, options) {
    return bounded((await this.#client()).rpc(method, data), options);
  }

  /** The server's clock (ms since the Unix epoch), `null` before the first connect. */
  async serverTime() {
    return (await this.#client()).serverTime();
  }

  /** Direct messages to this client: `for await (const m of client.messages({signal}))`. */
  messages(options) {
    if (!this.#messages) {
      this.#messages = { close: async () => {} };
      this.#client().then((raw) => {
        const reader = raw.messages();
        this.#messages = reader;
        const pump = async () => {
          for (;;) {
            const batch = items(await reader.nextBatch(BATCH));
            if (batch === null) break;
            for (const message of batch) {
              for (const feed of this.#messageFeeds) feed.push(message);
              this.emit(message.type === "message" ? "message" : "lagged", message);
            }
          }
          for (const feed of this.#messageFeeds) feed.end();
        };
        pump();
      });
    }
    return iterate(this.#messageFeeds, options);
  }
}
