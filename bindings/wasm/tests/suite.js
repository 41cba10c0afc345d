// The package's tests, run by a page in Chromium (see run.mjs). Each test
// gets a bounded time; results go to window.__results.

import {
  Client, SacredError, TimeoutError, AbortError, ClientClosedError, UnauthorizedError, RefusedError,
  ReplyError, InvalidError, DuplicateSubscriptionError, TooLargeError, load,
} from "/pkg/index.js";

const hub = new URLSearchParams(location.search).get("hub");
// A rejection nobody handles is a bug of the package: it fails the run.
const unhandled = [];
window.addEventListener("unhandledrejection", (event) => unhandled.push(String(event.reason?.stack ?? event.reason)));
const WAIT = 10_000;
const tests = [];
const test = (name, body) => tests.push({ name, body });

function assert(condition, message) {
  if (!condition) throw new Error(`assertion failed: ${message}`);
}
function equal(actual, expected, message) {
  const a = JSON.stringify(actual, (_, v) => (typeof v === "bigint" ? `${v}n` : v instanceof Uint8Array ? [...v] : v));
  const e = JSON.stringify(expected, (_, v) => (typeof v === "bigint" ? `${v}n` : v instanceof Uint8Array ? [...v] : v));
  if (a !== e) throw new Error(`${message}: ${a} !== ${e}`);
}
async function rejects(promise, Class, message) {
  try {
    await promise;
  } catch (err) {
    if (!(err instanceof Class)) throw new Error(`${message}: ${err} is not a ${Class.name}`);
    return err;
  }
  throw new Error(`${message}: did not reject`);
}
function within(ms, promise, what) {
  return Promise.race([promise, new Promise((_, reject) => setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms))]);
}
async function next(iterator, what = "the next item") {
  const { value, done } = await within(WAIT, iterator.next(), what);
  assert(!done, `${what}: the iterator ended`);
  return value;
}
function connected(options = {}) {
  const client = new Client(hub, { minReconnectDelay: 10, maxReconnectDelay: 50, ...options });
  client.connect();
  return client.ready({ timeout: WAIT }).then(() => client);
}

for (const codec of ["json", "msgpack"]) {
  test(`publish, subscribe and the ack (${codec})`, async () => {
    const client = await connected({ codec, name: "page", kind: "app" });
    assert(client.state === "connected" && typeof client.id === "string", "connected with an id");
    const sub = await client.subscribe("lobby");
    const publications = sub.publications();
    const ack = await client.publish("lobby", { text: "hello" });
    assert(typeof ack.offset === "number" && typeof ack.epoch === "string", "the ack has a position");
    const pub = await next(publications);
    equal(pub.data, { text: "hello" }, "the payload");
    assert(pub.offset === ack.offset && pub.publisher.name === "page" && pub.publisher.runtime === "browser", "who and where");
    await client.disconnect();
    assert(client.state === "closed", "closed");
  });

  test(`payloads as plain values, bytes as Uint8Array (${codec})`, async () => {
    const client = await connected({ codec });
    const sub = await client.subscribe("values");
    const publications = sub.publications();
    const values = [null, true, 0, -1, 1.5, "héllo ✓", [1, "two", [null]], { nested: { n: 3 } }, 2 ** 53 - 1];
    for (const value of values) await client.publish("values", value);
    for (const value of values) equal((await next(publications)).data, value, "round trip");
    await client.publish("values", 2n ** 63n);
    equal((await next(publications)).data, 2n ** 63n, "a u64 beyond 2^53 arrives as a bigint");
    // A batch that JSON cannot carry exactly (here a bigint among numbers)
    // crosses as objects, whole and in order.
    await Promise.all([client.publish("values", 1), client.publish("values", 2n ** 60n), client.publish("values", 3)]);
    equal([(await next(publications)).data, (await next(publications)).data, (await next(publications)).data], [1, 2n ** 60n, 3], "a mixed batch");
    await client.publish("values", { raw: new Uint8Array([0, 255, 98]) });
    const bytes = (await next(publications)).data.raw;
    if (codec === "msgpack") assert(bytes instanceof Uint8Array && bytes.length === 3 && bytes[1] === 255, "bytes kept");
    else equal(bytes, "AP9i", "base64 for a JSON reader");
    await client.disconnect();
  });
}

test("values the protocol cannot carry are InvalidError, nothing sent", async () => {
  const client = await connected();
  for (const [value, words] of [[new Map(), "Map"], [NaN, "finite"], [2n ** 70n, "64 bits"], [{ f() {} }, "function"], [new Date(), "Date"]]) {
    const err = await rejects(client.publish("values", value), InvalidError, `refused ${words}`);
    assert(err.message.toLowerCase().includes(words.toLowerCase()) && err instanceof SacredError, `${err.message} names ${words}`);
  }
  assert((await client.publish("values", 1)).offset !== null, "the client goes on");
  await client.disconnect();
});

const TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
// Same trace id and flags (the parent id is the server's span when it traces).
const sameTrace = (carried) =>
  typeof carried === "string" && carried.length === 55 && carried.slice(3, 35) === TRACEPARENT.slice(3, 35) && carried.slice(53) === TRACEPARENT.slice(53);

for (const codec of ["json", "msgpack"]) {
  test(`a traceparent reaches the subscriber and history (${codec})`, async () => {
    const client = await connected({ codec });
    const channel = `traced-${codec}`;
    const sub = await client.subscribe(channel);
    const publications = sub.publications();
    await client.publish(channel, "traced", { traceparent: TRACEPARENT });
    await sub.publish("plain");
    const traced = await next(publications);
    assert(traced.data === "traced" && sameTrace(traced.traceparent), `continued: ${traced.traceparent}`);
    const plain = await next(publications);
    assert(plain.data === "plain" && plain.traceparent === null, "none in, null out");
    // A batch that crosses as objects (bytes in it) carries it too.
    await Promise.all([
      client.publish(channel, new Uint8Array([1]), { traceparent: TRACEPARENT }),
      client.publish(channel, 2n ** 60n, { traceparent: TRACEPARENT }),
    ]);
    assert(sameTrace((await next(publications)).traceparent) && sameTrace((await next(publications)).traceparent), "the object path");
    const stored = (await client.history(channel)).publications;
    equal(stored.map((p) => sameTrace(p.traceparent)), [true, false, true, true], "history carries it");
    await client.disconnect();
  });
}

test("a malformed traceparent is InvalidError, nothing sent", async () => {
  const client = await connected();
  const sub = await client.subscribe("malformed");
  const publications = sub.publications();
  for (const bad of ["", "not-a-trace", TRACEPARENT.toUpperCase(), `00-${"0".repeat(32)}${TRACEPARENT.slice(35)}`]) {
    const err = await rejects(client.publish("malformed", "never", { traceparent: bad }), InvalidError, `refused ${JSON.stringify(bad)}`);
    assert(err.message.includes("traceparent is not a W3C trace context") && err.code === null, `the server's 107 text, locally: ${err.message}`);
  }
  await client.publish("malformed", "after");
  equal((await next(publications)).data, "after", "nothing was sent and the client goes on");
  await client.disconnect();
});

test("search: ranked, paged, refused where off", async () => {
  const client = await connected();
  const channel = "search:browser";
  for (const words of ["rollback on node 3", "lunch", "node 4 is fine", "rollback done", "coffee", "standup"]) {
    await client.publish(channel, { text: words });
  }
  const found = await client.search(channel, "rollback node*");
  equal(Number(found.total), 1, "every word");
  equal(found.publications.map((p) => p.data), [{ text: "rollback on node 3" }], "the match");
  const page = await client.search(channel, "NODE", { limit: 1, skip: 1 });
  equal([Number(page.total), page.publications.length], [2, 1], "a page");
  let refused;
  try {
    await client.search("room", "node");
  } catch (err) {
    refused = err;
  }
  assert(refused instanceof ReplyError && refused.code === 108, `search off: ${refused}`);
  await client.disconnect();
});

test("history, presence, rpc, serverTime and direct messages", async () => {
  const a = await connected({ name: "a" });
  const b = await connected({ name: "b" });
  const sub = await a.subscribe("room");
  for (let n = 0; n < 5; n++) await a.publish("room", n);
  const page = await a.history("room", { limit: 3 });
  equal(page.publications.map((p) => p.data), [0, 1, 2], "oldest first");
  const after = await a.history("room", { since: { offset: page.publications[1].offset, epoch: page.epoch } });
  equal(after.publications.map((p) => p.data), [2, 3, 4], "after a position");
  equal((await a.history("room", { limit: 2, reverse: true })).publications.map((p) => p.data), [4, 3], "newest first");
  equal((await a.presence("room")).map((p) => p.name), ["a"], "presence");
  equal(await a.rpc("test.echo", { ask: [1, 2] }), { ask: [1, 2] }, "rpc");
  assert((await a.serverTime()) > 1_600_000_000_000, "server time");
  const inbox = b.messages();
  await a.send(b.id, { hi: "b" });
  const message = await next(inbox, "a direct message");
  equal(message.data, { hi: "b" }, "the message");
  assert(message.sender.id === a.id, "from a");
  await sub.unsubscribe();
  await a.disconnect();
  await b.disconnect();
});

test("errors are classes: reply, duplicate, too large, timeout, abort, closed", async () => {
  const client = await connected();
  const reply = await rejects(client.rpc("no.such.method"), ReplyError, "unknown method");
  assert(reply.code === 104 && reply.temporary === false, "code 104");
  await client.subscribe("once");
  const duplicate = await rejects(client.subscribe("once"), DuplicateSubscriptionError, "second subscribe");
  assert(duplicate.code === 105, "code 105");
  await rejects(client.publish("once", "x".repeat(2 * 1024 * 1024)), TooLargeError, "too large");
  await rejects(client.rpc("test.echo", 1, { timeout: 0 }), TimeoutError, "timeout 0");
  const controller = new AbortController();
  const aborted = client.rpc("test.echo", 1, { signal: controller.signal });
  controller.abort();
  await rejects(aborted, AbortError, "aborted");
  await client.disconnect();
  await rejects(client.publish("once", 1), ClientClosedError, "after disconnect");
});

test("a refused token is UnauthorizedError; getToken throwing it stops the client", async () => {
  const bad = new Client(hub, { token: "not-valid" });
  bad.connect();
  const refused = await rejects(bad.ready({ timeout: WAIT }), UnauthorizedError, "invalid token");
  assert(refused instanceof RefusedError && refused.code === 3500, "3500");
  let asked = 0;
  const stopped = new Client(hub, {
    minReconnectDelay: 10,
    getToken: async () => { asked += 1; throw new UnauthorizedError("signed out"); },
  });
  stopped.connect();
  await rejects(stopped.ready({ timeout: WAIT }), UnauthorizedError, "getToken refused");
  assert(asked === 1 && stopped.state === "closed", "asked once, closed");
});

test("short-lived tokens are refreshed", async () => {
  let asked = 0;
  const client = await connected({ getToken: async () => { asked += 1; return "short:ada:600"; } });
  const disconnects = [];
  client.on("disconnected", (e) => disconnects.push(e));
  await within(WAIT, new Promise((ok) => { const t = setInterval(() => { if (asked >= 4) { clearInterval(t); ok(); } }, 20); }), "four tokens");
  assert(disconnects.length === 0, "never disconnected for expiry");
  await client.disconnect();
});

test("a kick: disconnected with its code, reconnected, everything recovered in order", async () => {
  const reader = await connected();
  const writer = await connected();
  const events = [];
  reader.on("disconnected", (e) => events.push(`disconnected ${e.code}`)).on("connected", () => events.push("connected"));
  const sub = await reader.subscribe("stream");
  const recovered = [];
  const lifecycle = [];
  sub.on("subscribing", (e) => lifecycle.push(`subscribing ${e.code} ${sub.state}`));
  sub.on("subscribed", (e) => { recovered.push(e.recovered); lifecycle.push(`subscribed ${sub.state}`); });
  const publications = sub.publications();
  for (let n = 0; n < 20; n++) await writer.publish("stream", n);
  equal(await writer.rpc("test.kick", { channel: "stream" }), 1, "kicked one");
  for (let n = 20; n < 40; n++) await writer.publish("stream", n);
  const got = [];
  while (got.length < 40) got.push((await next(publications)).data);
  equal(got, [...Array(40).keys()], "in order, nothing lost or repeated");
  await within(WAIT, new Promise((ok) => { const t = setInterval(() => { if (recovered.length) { clearInterval(t); ok(); } }, 10); }), "the resubscription");
  equal(recovered, [true], "recovered");
  equal(lifecycle, ["subscribing 3006 subscribing", "subscribed subscribed"], "the subscription's events");
  assert(events[0] === "disconnected 3006" && events.includes("connected"), events.join(", "));
  await reader.disconnect();
  await writer.disconnect();
});

test("calls made while the hub restarts wait in the offline queue", async () => {
  const client = await connected();
  const sub = await client.subscribe("offline");
  const publications = sub.publications();
  const down = new Promise((ok) => client.once("disconnected", ok));
  await client.rpc("test.restart");
  await within(WAIT, down, "the disconnect");
  const acks = await within(WAIT, Promise.all([0, 1, 2].map((n) => client.publish("offline", n))), "the queued publishes");
  assert(acks.every((a) => typeof a.offset === "number"), "acked after the restart");
  const got = [];
  while (got.length < 3) got.push((await next(publications)).data);
  equal(got, [0, 1, 2], "delivered");
  await client.disconnect();
});

test("an AbortSignal ends a publications() loop; disconnect ends them all", async () => {
  const client = await connected();
  const sub = await client.subscribe("loops");
  const controller = new AbortController();
  const loop = (async () => { const seen = []; for await (const pub of sub.publications({ signal: controller.signal })) seen.push(pub.data); return seen; })();
  await client.publish("loops", 1);
  await new Promise((ok) => setTimeout(ok, 50));
  controller.abort();
  equal(await within(WAIT, loop, "the aborted loop"), [1], "saw the one before the abort");
  const open = (async () => { for await (const _ of sub.publications()) { /* until the end */ } return "ended"; })();
  await client.disconnect();
  equal(await within(WAIT, open, "the loop ends on disconnect"), "ended", "ended");
});

test("the page's send buffer stays bounded (bufferedAmount)", async () => {
  const client = await connected();
  let most = 0;
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    most = Math.max(most, this.bufferedAmount);
    return send.call(this, data);
  };
  try {
    // 16 MB published at once, far faster than the socket carries it.
    const payload = "x".repeat(8000);
    const acks = await within(WAIT, Promise.all(Array.from({ length: 2000 }, () => client.publish("bulk", payload))), "2000 publishes");
    assert(acks.length === 2000, "all acked");
  } finally {
    WebSocket.prototype.send = send;
  }
  assert(most > 0 && most < 1 << 20, `the socket held ${most} bytes before a send (the mark is 1 MiB)`);
  await client.disconnect();
});

test("many connect/disconnect cycles: the WebAssembly memory stops growing", async () => {
  const cycle = async () => {
    const client = await connected();
    const sub = await client.subscribe("cycle");
    const publications = sub.publications();
    await client.publish("cycle", { n: 1 });
    await next(publications);
    await client.disconnect();
  };
  const { memory } = await load();
  for (let i = 0; i < 30; i++) await cycle(); // the allocator's working set
  const before = memory.buffer.byteLength;
  for (let i = 0; i < 300; i++) await cycle();
  const grown = memory.buffer.byteLength - before;
  // A client that was not freed keeps its session and buffers (tens of KB):
  // 300 of them would grow the memory by megabytes.
  assert(grown <= 256 * 1024, `the memory grew by ${grown} bytes over 300 cycles`);
});

const results = [];
for (const { name, body } of tests) {
  const started = performance.now();
  try {
    await within(30_000, body(), name);
    results.push({ name, ok: true, ms: Math.round(performance.now() - started) });
  } catch (err) {
    results.push({ name, ok: false, error: String(err?.stack ?? err), ms: Math.round(performance.now() - started) });
  }
}
results.push({ name: "no unhandled rejections", ok: unhandled.length === 0, error: unhandled.join("\n"), ms: 0 });
window.__results = results;
