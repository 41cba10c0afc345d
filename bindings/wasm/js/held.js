// Subscriptions shared by the framework bindings (react.js, vue.js).
//
// A client has one subscription per channel, but a page may show a channel in
// several components, and React's StrictMode mounts every component twice.
// So the hooks hold a channel rather than subscribe to it: holders of the same
// channel of the same client share one Subscription, and the last to let go
// unsubscribes, a task later, so a release followed at once by a hold (a
// remount) keeps the subscription instead of racing a new subscribe against
// the old unsubscribe.

/** Client -> channel -> { count, subscription: Promise<Subscription>, timer } */
const held = new WeakMap();

/**
 * Holds `channel` of `client`: `{ subscription, release }`, where
 * `subscription` is a Promise of the shared `Subscription`.
 */
export function hold(client, channel, options) {
  let channels = held.get(client);
  if (!channels) held.set(client, (channels = new Map()));
  let entry = channels.get(channel);
  if (!entry) {
    entry = { count: 0, subscription: client.subscribe(channel, options), timer: undefined };
    const forget = () => { if (channels.get(channel) === entry) channels.delete(channel); };
    // A refused subscription, or one that ends (unsubscribed by the server,
    // the client closed), is asked for afresh by the next holder.
    entry.subscription.then((subscription) => subscription.once("unsubscribed", forget), forget);
    channels.set(channel, entry);
  }
  clearTimeout(entry.timer);
  entry.count += 1;
  let released = false;
  return {
    subscription: entry.subscription,
    release() {
      if (released) return;
      released = true;
      entry.count -= 1;
      if (entry.count > 0) return;
      entry.timer = setTimeout(() => {
        if (entry.count > 0 || channels.get(channel) !== entry) return;
        channels.delete(channel);
        entry.subscription.then((subscription) => subscription.unsubscribe()).catch(() => {});
      }, 0);
    },
  };
}
