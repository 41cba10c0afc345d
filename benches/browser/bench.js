// One subscriber page of benches/browser.mjs. `wasm`: @sacred/client (the Rust
// client compiled to WebAssembly, `codec` json or msgpack, one `publication`
// listener counting);
// `websocket`: the page's own WebSocket speaking the JSON protocol by hand
// (JSON.parse per frame, pongs to pings, nothing else). Both subscribe, set
// window.__subscribed, count COUNT publications and set window.__result with
// the rate from the first to the last.
const params = new URLSearchParams(location.search);
const hub = params.get("hub");
const count = Number(params.get("count"));
let received = 0;
let started = 0;

function seen(n) {
  if (received === 0) started = performance.now();
  received += n;
  if (received >= count && !window.__result) {
    const seconds = (performance.now() - started) / 1000;
    window.__result = { received, seconds, per_s: received / seconds };
  }
}

if (params.get("kind") === "wasm") {
  const { Client } = await import("/pkg/index.js");
  const codec = params.get("codec") ?? "json";
  const client = new Client(hub, { name: "bench-wasm", codec, subscriptionBuffer: count });
  client.connect();
  await client.ready({ timeout: 10_000 });
  const sub = await client.subscribe("bench");
  sub.on("publication", () => seen(1));
  window.__subscribed = true;
} else {
  const ws = new WebSocket(hub, "sacred.v1.json");
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
  ws.send(JSON.stringify({ id: 1, connect: { client: { name: "bench-websocket", runtime: "browser" } } }));
  let subscribed;
  const ready = new Promise((resolve) => { subscribed = resolve; });
  ws.onmessage = (event) => {
    const decoded = JSON.parse(event.data);
    for (const message of Array.isArray(decoded) ? decoded : [decoded]) {
      if (message.publication !== undefined) seen(1);
      else if (message.ping !== undefined) ws.send('{"pong":{}}');
      else if (message.id === 2) subscribed();
    }
  };
  ws.send(JSON.stringify({ id: 2, subscribe: { channel: "bench" } }));
  await ready;
  window.__subscribed = true;
}
