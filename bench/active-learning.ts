/**
 * The simulated active-learning loop (`lesion-studio simulate-al`) on the
 * shared ISIC 2018 and PH2 images: lesion IoU per round for ranked picks
 * against random ones. Prints the card, the seeds and the table the README
 * quotes; asserts nothing. --quick runs one seed and two short rounds.
 *
 *   tsx bench/active-learning.ts [--quick] [--json <file>]
 */
import { parseArgs } from 'node:util';
import { main } from '../src/node/cli.ts';
import { DATASETS } from './tasks.ts';

const { values } = parseArgs({
  options: { quick: { type: 'boolean' }, json: { type: 'string' } },
  // bench/all.sh hands run.ts's options to this script too.
  strict: false,
});

const settings = values.quick
  ? ['--seeds', '1', '--rounds', '2', '--per-round', '4', '--epochs', '10', '--fine-tune-epochs', '3', '--strategies', 'entropy,random']
  : ['--seeds', '1,2', '--rounds', '3', '--per-round', '6', '--epochs', '30', '--fine-tune-epochs', '8', '--strategies', 'entropy,flip,random'];
const json = typeof values.json === 'string' ? ['--json', values.json.replace(/\.json$/, '-active-learning.json')] : [];
process.exitCode = await main(['simulate-al', '--data', DATASETS.isic2018, DATASETS.ph2, ...settings, ...json]);
