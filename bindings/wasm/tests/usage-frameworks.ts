// A typed use of @sacred/client/react and @sacred/client/vue; checked by
// `tsc --strict` with usage.ts (scripts/test).
import { useSacred as useReactClient, useSubscription as useReactSubscription } from "@sacred/client/react";
import { useSacred as useVueClient, useSubscription as useVueSubscription } from "@sacred/client/vue";
import type { Publication, SacredError } from "@sacred/client";
import { computed, ref } from "vue";

export function ReactFeed(): string {
  const { client, state } = useReactClient("ws://127.0.0.1:8000/ws", { name: "page", getToken: async () => "t" });
  const { publications, error, subscription } = useReactSubscription(client, "news", { keep: 10 });
  const first: Publication | undefined = publications[0];
  const failed: SacredError | null = error;
  void subscription?.publish({ text: "hi" });
  // @ts-expect-error the state is one of the client's states
  const wrong: "open" = state;
  void wrong;
  return `${state} ${first?.data ?? ""} ${failed?.code ?? ""}`;
}

export function vueFeed(): unknown {
  const url = ref("ws://127.0.0.1:8000/ws");
  const { client, state } = useVueClient(url, { name: "page" });
  const channel = computed(() => "news");
  const { publications, state: subscribed } = useVueSubscription(client, () => channel.value);
  // @ts-expect-error a channel is a string
  useVueSubscription(client, 42);
  return [state.value === "connected", publications.value.map((p) => p.data), subscribed.value];
}
