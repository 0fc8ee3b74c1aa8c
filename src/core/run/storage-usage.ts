/**
 * What the studio's stores hold, for its Storage view: each run (its masks
 * included), the expert labels and the fine-tunes, which live in stores of
 * their own and so are counted apart. The host adds what only it knows (the
 * browser's usage and quota) and routes the answer.
 */
import { LabelStore } from '../active/labels.ts';
import type { KeyValueStore } from '../io.ts';
import { RunStore, storedBytes } from './run-store.ts';

export interface StoresUsage<Listing> {
  runs: { listing: Listing; bytes: number }[];
  expertLabels: { count: number; bytes: number };
  fineTuneBytes: number;
}

export interface Stores {
  runs: KeyValueStore;
  /** The expert labels' own store (active/labels.ts), nothing else in it. */
  labels: KeyValueStore;
  /** The fine-tunes' own store (active/fine-tune.ts), nothing else in it. */
  fineTunes: KeyValueStore;
}

export async function storesUsage<Listing extends { runId: string }>(stores: Stores, listings: Listing[]): Promise<StoresUsage<Listing>> {
  const runs = await Promise.all(listings.map(async (listing) => ({ listing, bytes: await new RunStore(stores.runs, listing.runId).bytes() })));
  return {
    runs,
    // The labels' keys, not their masks, give the count.
    expertLabels: { count: (await new LabelStore(stores.labels).images()).size, bytes: await storedBytes(stores.labels) },
    fineTuneBytes: await storedBytes(stores.fineTunes),
  };
}
