// A typed use of every part of @sacred/client; `tsc --strict --noEmit` over
// it (scripts/test) checks that index.d.ts describes what pages write.
import {
  Client, Subscription, UnauthorizedError, SacredError, TimeoutError, type Data, type Publication,
  type PublishResult, type History, type Peer, type SearchResult,
} from "@sacred/client";

export async function main(url: string): Promise<void> {
  const client = new Client(url, {
    name: "page",
    kind: "app",
    codec: "msgpack",
    timeout: 5_000,
    getToken: async () => {
      const response = await fetch("/token");
      if (response.status === 401) throw new UnauthorizedError("signed out");
      return response.text();
    },
  });
  client
    .on("connected", ({ clientId }) => console.log(clientId.toUpperCase()))
    .on("disconnected", ({ code, reason, reconnect }) => console.log(code + 1, reason.length, !reconnect))
    .on("error", ({ error }) => console.log(error.code ?? 0, error.temporary));
  client.connect();
  await client.ready({ timeout: 10_000 });
  const state: "disconnected" | "connecting" | "connected" | "closed" = client.state;
  const sub: Subscription = await client.subscribe("lobby", { joinLeave: true });
  sub.on("subscribed", ({ recovered }) => console.log(recovered ? "all there" : "reload"));
  sub.on("join", ({ peer }) => console.log(peer.name));
  const ack: PublishResult = await sub.publish({ text: "hi", n: 1, raw: new Uint8Array([1]), big: 2n ** 60n });
  await client.publish("lobby", "traced", { traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", timeout: 1_000 });
  console.log(ack.offset, ack.epoch, state);
  const controller = new AbortController();
  for await (const pub of sub.publications({ signal: controller.signal })) {
    const p: Publication = pub;
    const data: Data = p.data;
    console.log(data, p.publisher?.name, p.offset);
    const traceparent: string | null = p.traceparent;
    if (traceparent !== null) console.log(traceparent.split("-")[1]);
    controller.abort();
  }
  const page: History = await client.history("lobby", { limit: 10, reverse: true, signal: controller.signal });
  const peers: Peer[] = await client.presence("lobby");
  const found: SearchResult = await client.search("lobby", "deploy*", { limit: 20, skip: 20 });
  console.log(found.total, found.publications.length);
  console.log(page.publications.length, peers.map((peer) => peer.id));
  try {
    await client.rpc("tools.sum", [1, 2, 3], { timeout: 1_000 });
  } catch (err) {
    if (err instanceof TimeoutError) console.log("slow", err.temporary);
    else if (err instanceof SacredError) console.log(err.code);
  }
  for await (const item of client.messages()) {
    if (item.type === "message") console.log(item.data, item.sender?.id);
    else console.log(item.skipped);
    break;
  }
  const time = await client.serverTime();
  console.log(time);
  await sub.unsubscribe();
  await client.disconnect();
}

// What the types refuse (each line must be an error, or tsc fails).
export function misuse(client: Client): void {
  // @ts-expect-error: no such event
  client.on("conected", () => {});
  // @ts-expect-error: a Map has no place in a payload
  void client.publish("lobby", new Map());
  // @ts-expect-error: a traceparent is a string
  void client.publish("lobby", 1, { traceparent: 7 });
  // @ts-expect-error: codec is "json" or "msgpack"
  new Client("ws://x", { codec: "xml" });
  // @ts-expect-error: the context of "disconnected" has no clientId
  client.on("disconnected", ({ clientId }) => clientId);
}
