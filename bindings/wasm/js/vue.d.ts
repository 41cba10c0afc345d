// Types of @sacred/client/vue (vue.js).
import type { MaybeRefOrGetter, Ref, ShallowRef } from "vue";
import type { Client, ClientOptions, ClientState, Publication, SacredError, Subscription } from "./index.js";
import type { SubscriptionOptions, SubscriptionState } from "./react.js";

export type { SubscriptionOptions, SubscriptionState };

/** A client for the current scope (`null` once disposed); a new one when a reactive `url` changes. */
export function useSacred(
  url: MaybeRefOrGetter<string>,
  options?: ClientOptions,
): { client: ShallowRef<Client | null>; state: Ref<ClientState> };

/** The latest publications of `channel`, oldest first, for the current scope. */
export function useSubscription(
  client: MaybeRefOrGetter<Client | null>,
  channel: MaybeRefOrGetter<string>,
  options?: SubscriptionOptions,
): {
  publications: ShallowRef<Publication[]>;
  subscription: ShallowRef<Subscription | null>;
  state: Ref<SubscriptionState>;
  error: ShallowRef<SacredError | null>;
};
