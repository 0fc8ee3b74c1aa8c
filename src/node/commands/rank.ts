/**
 * `lesion-studio rank --run <dir> --pool <dir>... [--stage teacher|student|student-star]
 *  [--score entropy|flip|mc-dropout|random] [--mc-passes 4] [--limit <n>]
 *  [--backend auto|cpu|wasm|webgpu] [--run-id run] [--json <file>]`
 *
 * The studio's label queue for a run that `train` wrote: every image of the
 * pool folders (their masks, if any, are ignored) scored from the stage's
 * best checkpoint and ranked, highest score first, by the core function the
 * Label view calls (core/active/rank.ts). Prints a table; --json writes every
 * ranked image with all of its scores.
 */
import { writeFile } from 'node:fs/promises';
import { ACQUISITION_SCORES, SCORE_TITLES, type AcquisitionScore } from '../../core/active/acquisition.ts';
import { rankPool } from '../../core/active/rank.ts';
import { inputsByRole } from '../../core/dataset/layouts.ts';
import { ConfigError } from '../../core/errors.ts';
import { backendLine, initNodeBackend, type NodeBackendName } from '../backends.ts';
import { EXIT_USAGE, positiveFlag, type Command } from '../command.ts';
import { SharpDecoder } from '../decode.ts';
import { FsFileSource } from '../files.ts';
import { openRunFolder } from '../run-folder.ts';

const rank: Command = {
  usage: '--run <dir> --pool <dir>... [--stage teacher|student|student-star] [--score entropy|flip|mc-dropout|random] [--mc-passes <n>] [--limit <n>] [--backend auto|cpu|wasm|webgpu] [--run-id <id>] [--json <file>]',
  options: {
    run: { type: 'string' },
    pool: { type: 'string', multiple: true },
    stage: { type: 'string' },
    score: { type: 'string' },
    'mc-passes': { type: 'string' },
    limit: { type: 'string' },
    backend: { type: 'string' },
    'run-id': { type: 'string' },
    json: { type: 'string' },
  },
  async run({ values }, io) {
    const runDir = values.run as string | undefined;
    const poolDirs = (values.pool as string[] | undefined) ?? [];
    if (!runDir || poolDirs.length === 0) {
      io.err(`usage: lesion-studio rank ${rank.usage}`);
      return EXIT_USAGE;
    }
    const score = (values.score as string | undefined) ?? 'entropy';
    let mcPasses: number;
    let limit: number;
    try {
      if (!(ACQUISITION_SCORES as readonly string[]).includes(score)) throw new ConfigError('--score', `must be one of ${ACQUISITION_SCORES.join(', ')}, got '${score}'`);
      mcPasses = positiveFlag(values['mc-passes'], '--mc-passes', 4);
      limit = positiveFlag(values.limit, '--limit', Number.POSITIVE_INFINITY);
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      io.err(`lesion-studio rank: ${error.message}\nusage: lesion-studio rank ${rank.usage}`);
      return EXIT_USAGE;
    }
    const folder = await openRunFolder(runDir, (values['run-id'] as string | undefined) ?? 'run', values.stage as string | undefined);
    const backend = await initNodeBackend((values.backend as NodeBackendName | undefined) ?? (folder.card.backend === 'webgl' ? 'auto' : folder.card.backend));
    io.err(backendLine(backend));

    const source = new FsFileSource(poolDirs);
    const { unlabeled } = inputsByRole(await source.index(), () => false);
    const request = { runId: folder.run.runId, stage: folder.stage, score: score as AcquisitionScore, mcPasses };
    const { ranked, skipped } = await rankPool({ source, decoder: new SharpDecoder(), runs: folder.store }, unlabeled, request);
    for (const s of skipped) io.err(`warning: skipped ${s.reason}`);

    const shown = ranked.slice(0, limit);
    io.out(`${folder.stage} of ${runDir}: ${ranked.length} pool images ranked by ${SCORE_TITLES[request.score]}, highest first`);
    const rows = shown.map((r) => [String(r.rank), r.value.toFixed(4), `${(100 * r.lesionFraction).toFixed(1)} %`, r.sample.image, r.why]);
    const header = ['rank', request.score, 'lesion', 'image', 'why'];
    const widths = header.map((h, c) => Math.max(h.length, ...rows.map((row) => row[c].length)));
    for (const row of [header, ...rows]) io.out(row.map((cell, c) => (c === row.length - 1 ? cell : c < 3 ? cell.padStart(widths[c]) : cell.padEnd(widths[c]))).join('  '));
    if (values.json !== undefined) {
      const json = {
        run: runDir,
        stage: folder.stage,
        score: request.score,
        mcPasses: request.score === 'mc-dropout' ? mcPasses : undefined,
        ranked: shown.map((r) => ({ rank: r.rank, id: r.sample.id, set: r.sample.set, image: r.sample.image, value: r.value, scores: r.scores, lesionFraction: r.lesionFraction, why: r.why })),
        skipped,
      };
      await writeFile(values.json as string, `${JSON.stringify(json, null, 2)}\n`);
      io.err(`wrote ${values.json as string}`);
    }
    return ranked.length > 0 ? 0 : 1;
  },
};

export default rank;
