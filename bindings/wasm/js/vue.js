// Vue composables over @sacred/client: `import { useSacred, useSubscription } from "@sacred/client/vue"`.
//
//   const { client, state } = useSacred("wss://hub.example/ws", { name: "page" });
//   const { publications } = useSubscription(client, "news");
//
// Call them in `setup()` (or any effect scope): the client lives as long as
// the scope, reconnecting with a new client when a reactive URL changes; a
// subscription follows its (reactive) client and channel. Components that
// show the same channel share one subscription (see held.js).

import { ref, shallowRef, toValue, watch } from "vue";
import { Client } from "./index.js";
import { hold } from "./held.js";

const STATE_EVENTS = ["connecting", "connected", "disconnected"];

/**
 * A client for the current scope: `{ client, state }`, a shallow ref of the
 * `Client` (`null` once the scope is disposed) and a ref of its state.
 * `url` may be a string, a ref or a getter.
 */
export function useSacred(url, options) {
  const client = shallowRef(null);
  const state = ref("disconnected");
  watch(() => toValue(url), (target, _, onCleanup) => {
    const created = new Client(target, options);
    const update = () => { state.value = created.state; };
    for (const event of STATE_EVENTS) created.on(event, update);
    client.value = created;
    created.connect();
    update();
    onCleanup(() => {
      for (const event of STATE_EVENTS) created.off(event, update);
      client.value = null;
      state.value = "closed";
      created.disconnect();
    });
  }, { immediate: true });
  return { client, state };
}

/**
 * The publications of `channel` (the last `keep`, oldest first) for the
 * current scope: refs `{ publications, subscription, state, error }`.
 * `client` and `channel` may be values, refs or getters; `state` is "idle"
 * (no client), "subscribing" (also while resubscribing after a reconnect),
 * "subscribed", "unsubscribed" or "error".
 */
export function useSubscription(client, channel, { keep = 100, joinLeave = false } = {}) {
  const publications = shallowRef([]);
  const subscription = shallowRef(null);
  const state = ref("idle");
  const error = shallowRef(null);
  watch(() => [toValue(client), toValue(channel)], ([target, name], _, onCleanup) => {
    publications.value = [];
    subscription.value = null;
    error.value = null;
    if (!target) {
      state.value = "idle";
      return;
    }
    state.value = "subscribing";
    const held = hold(target, name, { joinLeave });
    let live = true;
    let current = null;
    const onPublication = (publication) => { publications.value = [...publications.value, publication].slice(-keep); };
    const onSubscribing = () => { state.value = "subscribing"; };
    const onSubscribed = () => { state.value = "subscribed"; };
    const onUnsubscribed = () => { state.value = "unsubscribed"; };
    held.subscription.then((found) => {
      if (!live) return;
      current = found;
      found.on("publication", onPublication).on("subscribing", onSubscribing).on("subscribed", onSubscribed).on("unsubscribed", onUnsubscribed);
      subscription.value = found;
      state.value = found.state;
    }, (err) => {
      if (!live) return;
      error.value = err;
      state.value = "error";
    });
    onCleanup(() => {
      live = false;
      current?.off("publication", onPublication).off("subscribing", onSubscribing).off("subscribed", onSubscribed).off("unsubscribed", onUnsubscribed);
      held.release();
    });
  }, { immediate: true });
  return { publications, subscription, state, error };
}
