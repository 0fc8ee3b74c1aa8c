/**
 * `lesion-studio inspect <dir>... [--json]`: which data sets the folders hold,
 * how many pairs per split, and every file that could not be used.
 */
import { summariseIndex, type DatasetIndex } from '../../core/dataset/layouts.ts';
import { EXIT_USAGE, type Command } from '../command.ts';
import { FsFileSource } from '../files.ts';

const inspect: Command = {
  usage: '<dir>... [--json]',
  options: { json: { type: 'boolean' } },
  positionals: true,
  paths: { '': 'folder' },
  async run({ positionals, values }, io) {
    if (positionals.length === 0) {
      io.err(`lesion-studio inspect: give at least one folder\nusage: lesion-studio inspect ${inspect.usage}`);
      return EXIT_USAGE;
    }
    const index = await new FsFileSource(positionals).index();
    io.out(values.json ? JSON.stringify(indexReport(index), null, 2) : summariseIndex(index));
    return 0;
  },
};

export default inspect;

/** Counts, not sample lists: the JSON stays small for 30,000 images. */
function indexReport(index: DatasetIndex) {
  return {
    sets: index.sets.map((set) => ({
      name: set.name,
      layout: set.layout,
      root: set.root,
      labeled: set.labeled.length,
      unlabeled: set.unlabeled.length,
      bySplit: set.countsBySplit,
    })),
    strays: index.strays.map(({ path, kind, detail }) => ({ path, kind, detail })),
  };
}
