/** Vitest's global setup: without the test images, fail once, first, with the reason. */
import { requireDatasets } from './datasets.ts';

export default function setup(): void {
  requireDatasets();
}
