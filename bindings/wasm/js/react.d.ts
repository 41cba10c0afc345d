// Types of @sacred/client/react (react.js).
import type { Client, ClientOptions, ClientState, Publication, SacredError, Subscription } from "./index.js";

/** What `useSubscription` reports. */
export type SubscriptionState = "idle" | "subscribing" | "subscribed" | "unsubscribed" | "error";

export interface SubscriptionOptions {
  /** How many of the latest publications to keep (100). */
  keep?: number;
  /** Ask for join and leave events. */
  joinLeave?: boolean;
}

/** A client for this component: `null` until the first effect ran, and after unmount. */
export function useSacred(url: string, options?: ClientOptions): { client: Client | null; state: ClientState };

/** The latest publications of `channel`, oldest first, while the component is mounted. */
export function useSubscription(
  client: Client | null,
  channel: string,
  options?: SubscriptionOptions,
): {
  publications: Publication[];
  subscription: Subscription | null;
  state: SubscriptionState;
  error: SacredError | null;
};
