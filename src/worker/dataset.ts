/**
 * The data set the worker holds: one FileSource, the index recogniseDatasets
 * made of its paths, and which roots the user marked labeled or unlabeled.
 * Everything the Dataset and Configure views show is computed here, in the
 * worker, from that state.
 */
import { binariseMask } from '../core/dataset/loader.ts';
import { inputsByRole, LAYOUT_TITLES, recogniseDatasets, rootOf, type DatasetIndex, type Sample, type Split, type SplitCounts } from '../core/dataset/layouts.ts';
import { LesionError } from '../core/errors.ts';
import type { FileSource } from '../core/io.ts';
import { withExpertLabels } from '../core/active/labels.ts';
import type { DatasetOrigin, DatasetSummary, RootRole, Thumbnail, ThumbnailPage, ThumbnailRequest } from './api.ts';
import { bitmapPixels, decodeBitmap } from './decode.ts';
import { fitWithin, maskOverlay } from './imaging.ts';

export interface RunInputs {
  labeled: Sample[];
  unlabeled: Sample[];
}

export class OpenDataset {
  readonly roles = new Map<string, RootRole>();
  /** Pool images the user labeled in the studio: they join the labeled images (see withLabels). */
  private expert: ReadonlySet<string> = new Set();

  constructor(
    readonly origin: DatasetOrigin,
    readonly source: FileSource,
    readonly index: DatasetIndex,
    readonly files: string[],
    roles: Record<string, RootRole> = {},
  ) {
    for (const root of this.rootNames()) this.roles.set(root, roles[root] ?? guessRole(index, root));
  }

  static async open(origin: DatasetOrigin, source: FileSource, roles?: Record<string, RootRole>): Promise<OpenDataset> {
    const files = await source.list();
    if (files.length === 0) throw new LesionError('dataset', 'the folder holds no files');
    return new OpenDataset(origin, source, recogniseDatasets(files), files, roles);
  }

  rootNames(): string[] {
    return [...new Set(this.files.map(rootOf))].sort();
  }

  setRole(root: string, role: RootRole): void {
    if (!this.roles.has(root)) throw new LesionError('dataset', `no opened folder is called '${root}'`);
    this.roles.set(root, role);
  }

  /**
   * The same folders with the user's expert labels: `source` serves their
   * masks (core/active/labels.ts). Runs and split previews use this one.
   */
  withLabels(source: FileSource, images: ReadonlySet<string>): OpenDataset {
    const labeled = new OpenDataset(this.origin, source, this.index, this.files, Object.fromEntries(this.roles));
    labeled.expert = images;
    return labeled;
  }

  /** Labeled pairs of labeled roots train and validate; every other image can get a pseudo-label. */
  inputs(): RunInputs {
    const inputs = inputsByRole(this.index, (root) => this.roles.get(root) === 'labeled');
    return this.expert.size > 0 ? withExpertLabels(inputs, this.expert) : inputs;
  }

  summary(): DatasetSummary {
    const inputs = this.inputs();
    return {
      origin: this.origin,
      roots: this.rootNames().map((name) => ({
        name,
        role: this.roles.get(name)!,
        files: this.files.filter((path) => rootOf(path) === name).length,
      })),
      sets: this.index.sets.map((set) => {
        const root = rootOf(set.labeled[0]?.image ?? set.unlabeled[0].image);
        const role = this.roles.get(root)!;
        // In a pool, pairs count as the unlabeled images inputs() makes of them, as a run uses them.
        const pool = role === 'unlabeled';
        const countsBySplit = pool
          ? mapSplits(set.countsBySplit, (c) => ({ labeled: 0, unlabeled: c.labeled + c.unlabeled }))
          : set.countsBySplit;
        return {
          name: set.name,
          layout: set.layout,
          layoutTitle: LAYOUT_TITLES[set.layout],
          folder: set.root,
          root,
          role,
          labeled: pool ? 0 : set.labeled.length,
          unlabeled: pool ? set.labeled.length + set.unlabeled.length : set.unlabeled.length,
          masksUnused: pool ? set.labeled.length : 0,
          countsBySplit,
        };
      }),
      strays: this.index.strays,
      files: this.files.length,
      labeled: inputs.labeled.length,
      unlabeled: inputs.unlabeled.length,
    };
  }

  samples(filter: ThumbnailRequest['filter']): Sample[] {
    const all = this.index.sets.flatMap((set) => [...set.labeled, ...set.unlabeled]);
    if (filter === 'labeled') return all.filter((sample) => sample.mask !== undefined);
    if (filter === 'unlabeled') return all.filter((sample) => sample.mask === undefined);
    return all;
  }

  async thumbnails(request: ThumbnailRequest): Promise<ThumbnailPage> {
    const samples = this.samples(request.filter);
    const page = samples.slice(request.offset, request.offset + request.count);
    const items = await Promise.all(page.map((sample) => this.thumbnail(sample, request.size)));
    return { total: samples.length, items };
  }

  /** Aspect kept; a file that fails to decode becomes a tile that says why, not a failed page. */
  async thumbnail(sample: Sample, size: number): Promise<Thumbnail> {
    const base = { id: sample.id, set: sample.set, split: sample.split, image: sample.image, mask: sample.mask };
    try {
      const full = await decodeBitmap(sample.image, await this.source.read(sample.image));
      const fit = fitWithin(full.width, full.height, size);
      const bitmap = await createImageBitmap(full, { resizeWidth: fit.width, resizeHeight: fit.height, resizeQuality: 'medium' });
      const thumb: Thumbnail = { ...base, bitmap, sourceWidth: full.width, sourceHeight: full.height };
      full.close();
      if (sample.mask !== undefined) {
        const maskFull = await decodeBitmap(sample.mask, await this.source.read(sample.mask));
        const maskSmall = await createImageBitmap(maskFull, {
          resizeWidth: fit.width,
          resizeHeight: fit.height,
          resizeQuality: 'pixelated',
        });
        maskFull.close();
        thumb.overlay = maskOverlay(binariseMask(bitmapPixels(maskSmall)).mask);
        maskSmall.close();
      }
      return thumb;
    } catch (error) {
      const empty = new OffscreenCanvas(1, 1).transferToImageBitmap();
      return { ...base, bitmap: empty, sourceWidth: 0, sourceHeight: 0, error: (error as Error).message };
    }
  }
}

function mapSplits(counts: Record<Split, SplitCounts>, f: (c: SplitCounts) => SplitCounts): Record<Split, SplitCounts> {
  return Object.fromEntries(Object.entries(counts).map(([split, c]) => [split, f(c)])) as Record<Split, SplitCounts>;
}

/** A root with labeled pairs is labeled until the user says otherwise; a plain image folder is a pool. */
function guessRole(index: DatasetIndex, root: string): RootRole {
  const labeled = index.sets.some((set) => set.labeled.some((sample) => rootOf(sample.image) === root));
  return labeled ? 'labeled' : 'unlabeled';
}
