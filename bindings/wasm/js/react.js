// React hooks over @sacred/client: `import { useSacred, useSubscription } from "@sacred/client/react"`.
//
//   const { client, state } = useSacred("wss://hub.example/ws", { name: "page" });
//   const { publications } = useSubscription(client, "news");
//
// useSacred owns a client for the component's lifetime (connected on mount,
// disconnected on unmount or when the URL or options change); useSubscription
// shows a channel's publications as state. Components that show the same
// channel share one subscription (see held.js), so StrictMode's double mount
// and several views of one channel just work.

import { useEffect, useRef, useState } from "react";
import { Client } from "./index.js";
import { hold } from "./held.js";

const STATE_EVENTS = ["connecting", "connected", "disconnected"];

/** A key for options that changes when a value does (a new `getToken` function does not count). */
function optionsKey(options) {
  return JSON.stringify(options ?? {}, (_, value) => (typeof value === "function" ? "function" : value));
}

/**
 * A client for this component: `{ client, state }`; `client` is `null` until
 * created (the first effect) and after unmount.
 */
export function useSacred(url, options) {
  const latest = useRef(options);
  latest.current = options;
  const [client, setClient] = useState(null);
  const [state, setState] = useState("disconnected");
  const key = optionsKey(options);
  useEffect(() => {
    const given = { ...latest.current };
    // The newest render's getToken, without reconnecting when its identity changes.
    if (typeof given.getToken === "function") given.getToken = () => latest.current.getToken();
    const created = new Client(url, given);
    const update = () => setState(created.state);
    for (const event of STATE_EVENTS) created.on(event, update);
    setClient(created);
    created.connect();
    update();
    return () => {
      for (const event of STATE_EVENTS) created.off(event, update);
      setClient(null);
      setState("closed");
      created.disconnect();
    };
  }, [url, key]);
  return { client, state };
}

/**
 * The publications of `channel` (the last `keep`, oldest first) while the
 * component is mounted: `{ publications, subscription, state, error }`.
 * `state` is "idle" (no client yet), "subscribing" (also while
 * resubscribing after a reconnect), "subscribed", "unsubscribed" or "error".
 */
export function useSubscription(client, channel, { keep = 100, joinLeave = false } = {}) {
  const [publications, setPublications] = useState([]);
  const [subscription, setSubscription] = useState(null);
  const [state, setState] = useState("idle");
  const [error, setError] = useState(null);
  useEffect(() => {
    setPublications([]);
    setSubscription(null);
    setError(null);
    if (!client) {
      setState("idle");
      return undefined;
    }
    setState("subscribing");
    const held = hold(client, channel, { joinLeave });
    let live = true;
    let current = null;
    const onPublication = (publication) => setPublications((list) => [...list, publication].slice(-keep));
    const onSubscribing = () => setState("subscribing");
    const onSubscribed = () => setState("subscribed");
    const onUnsubscribed = () => setState("unsubscribed");
    held.subscription.then((found) => {
      if (!live) return;
      current = found;
      found.on("publication", onPublication).on("subscribing", onSubscribing).on("subscribed", onSubscribed).on("unsubscribed", onUnsubscribed);
      setSubscription(found);
      setState(found.state);
    }, (err) => {
      if (!live) return;
      setError(err);
      setState("error");
    });
    return () => {
      live = false;
      current?.off("publication", onPublication).off("subscribing", onSubscribing).off("subscribed", onSubscribed).off("unsubscribed", onUnsubscribed);
      held.release();
    };
  }, [client, channel, keep, joinLeave]);
  return { publications, subscription, state, error };
}
