/** Playwright's global setup: without the test images, fail once, first, with the reason. */
import { requireDatasets } from '../test/helpers/datasets.ts';

export default function globalSetup(): void {
  requireDatasets();
}
