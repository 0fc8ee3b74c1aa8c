/**
 * Recognises skin-lesion data sets in a flat list of relative '/'-separated
 * paths (what a folder drop or a directory walk yields) and pairs every image
 * with its mask. Known layouts: the official ISIC 2018 Task 1, ISIC 2017
 * Part 1 and PH2 distributions, two generic ones (images/ + masks/ sibling
 * folders, or `x.jpg` beside `x_mask.png`), and plain folders of images,
 * which become unlabeled pools for self-training.
 *
 * One pass groups the files by folder, then each folder's role is decided
 * from its own name and its siblings: linear in the number of paths, apart
 * from sorting for a deterministic result.
 */

export type LayoutName = 'isic2018' | 'isic2017' | 'ph2' | 'images-masks' | 'same-folder' | 'unlabeled';
export type Split = 'train' | 'val' | 'test' | 'unspecified';
export const SPLITS: readonly Split[] = ['train', 'val', 'test', 'unspecified'];

export interface Sample {
  id: string;
  /** Name of the DatasetSet it belongs to. */
  set: string;
  layout: LayoutName;
  split: Split;
  image: string;
  mask?: string;
}

export interface SplitCounts {
  labeled: number;
  unlabeled: number;
}

export interface DatasetSet {
  name: string;
  layout: LayoutName;
  /** Folder the layout hangs from ('' when the paths start inside it). */
  root: string;
  labeled: Sample[];
  unlabeled: Sample[];
  countsBySplit: Record<Split, SplitCounts>;
}

export type StrayKind = 'image-without-mask' | 'mask-without-image' | 'duplicate-id' | 'unsupported-file';

export interface Stray {
  path: string;
  kind: StrayKind;
  detail: string;
}

export interface DatasetIndex {
  sets: DatasetSet[];
  strays: Stray[];
}

export const LAYOUT_TITLES: Record<LayoutName, string> = {
  isic2018: 'ISIC 2018 Task 1',
  isic2017: 'ISIC 2017 Part 1',
  ph2: 'PH2',
  'images-masks': 'images/ + masks/ folders',
  'same-folder': 'images beside their _mask files',
  unlabeled: 'images without masks',
};

const IMAGE_EXTENSIONS = new Set(['jpg', 'jpeg', 'png', 'bmp']);
/** Metadata that ships with the data sets; never an image, never a stray. */
const IGNORED_EXTENSIONS = new Set(['csv', 'txt', 'md', 'json', 'xls', 'xlsx', 'pdf', 'html', 'htm', 'yml', 'yaml']);
const IGNORED_STEMS = /^(readme|licen[cs]e|manifest|attribution)\b/i;
const IGNORED_NAMES = new Set(['thumbs.db', 'desktop.ini']);
/** ISIC 2017 superpixel maps sit among the images they belong to. */
const SUPERPIXELS = /_superpixels$/i;
/**
 * Folders that hold something other than lesion masks: PH2 colour-class
 * regions, ISIC attribute masks (2018 Task 2, 2017 Part 2/3), macOS zip debris.
 */
const IGNORED_DIRS = /^(IMD\d+_roi|ISIC2018_Task2_.*|ISIC-2017_.*_Part[23]_GroundTruth|__MACOSX)$/i;

const ISIC_SPLITS: Record<string, Split> = { training: 'train', validation: 'val', test: 'test' };
const FOLDER_SPLITS: Record<string, Split> = {
  train: 'train',
  training: 'train',
  val: 'val',
  valid: 'val',
  validation: 'val',
  test: 'test',
  testing: 'test',
};

const ISIC2018_IMAGES = /^ISIC2018_Task1-2_(Training|Validation|Test)_Input$/i;
const ISIC2018_MASKS = /^ISIC2018_Task1_(Training|Validation|Test)_GroundTruth$/i;
const ISIC2017_IMAGES = /^ISIC-2017_(Training|Validation|Test)(?:_v2)?_Data$/i;
const ISIC2017_MASKS = /^ISIC-2017_(Training|Validation|Test)(?:_v2)?_Part1_GroundTruth$/i;
const PH2_IMAGES = /^(IMD\d+)_Dermoscopic_Image$/i;
const PH2_MASKS = /^(IMD\d+)_lesion$/i;
const ISIC_MASK_NAME = /^(.+)_segmentation$/i;
const PH2_MASK_NAME = /^(.+)_lesion$/i;
const GENERIC_MASK_NAME = /^(.+)_(mask|segmentation|lesion)$/i;

interface FileEntry {
  path: string;
  name: string;
  stem: string;
  ext: string;
}

/** What a folder's files are, once its name and siblings have been read. */
interface FolderRole {
  side: 'image' | 'mask';
  layout: Exclude<LayoutName, 'same-folder' | 'unlabeled'>;
  root: string;
  split: Split;
  /** Images and masks pair only within the same scope (e.g. one split). */
  scope: string;
  /** The id a file name stands for, or undefined when it breaks the layout's naming. */
  idOf(stem: string): string | undefined;
  /** How a mask must be named, for the stray's detail. */
  maskNaming: string;
}

interface Candidate {
  id: string;
  path: string;
  split: Split;
  scope: string;
}

interface SetBuilder {
  layout: LayoutName;
  root: string;
  images: Candidate[];
  masks: Candidate[];
}

export function recogniseDatasets(paths: string[]): DatasetIndex {
  const strays: Stray[] = [];
  const folders = groupByFolder(paths);
  const foldersLower = new Set([...folders.keys()].map((dir) => dir.toLowerCase()));
  const builders = new Map<string, SetBuilder>();
  const builderFor = (layout: LayoutName, root: string): SetBuilder => {
    const key = `${layout}\u0000${root}`;
    let builder = builders.get(key);
    if (!builder) {
      builder = { layout, root, images: [], masks: [] };
      builders.set(key, builder);
    }
    return builder;
  };

  for (const [dir, files] of folders) {
    const images: FileEntry[] = [];
    for (const file of files) {
      if (IMAGE_EXTENSIONS.has(file.ext)) images.push(file);
      else strays.push({ path: file.path, kind: 'unsupported-file', detail: 'not a JPEG, PNG or BMP image' });
    }
    if (images.length === 0) continue;

    const role = knownRole(dir, foldersLower);
    if (role) {
      const builder = builderFor(role.layout, role.root);
      for (const file of images) {
        const id = role.idOf(file.stem);
        if (id === undefined) {
          strays.push({
            path: file.path,
            kind: 'unsupported-file',
            detail: `not named like a mask of this layout (${role.maskNaming})`,
          });
          continue;
        }
        const candidate = { id, path: file.path, split: role.split, scope: role.scope };
        (role.side === 'image' ? builder.images : builder.masks).push(candidate);
      }
      continue;
    }

    const { root, split } = stripSplitFolder(dir);
    const hasMasks = images.some((file) => GENERIC_MASK_NAME.test(file.stem));
    const builder = builderFor(hasMasks ? 'same-folder' : 'unlabeled', root);
    for (const file of images) {
      const maskOf = hasMasks ? GENERIC_MASK_NAME.exec(file.stem) : null;
      const candidate = { id: maskOf ? maskOf[1] : file.stem, path: file.path, split, scope: dir };
      (maskOf ? builder.masks : builder.images).push(candidate);
    }
  }

  const built = [...builders.values()].map((builder) => pairSet(builder, strays)).filter((set) => set !== undefined);
  const names = uniqueNames(built);
  const sets = built
    .map(({ builder, labeled, unlabeled }, i): DatasetSet => {
      const name = names[i];
      const named = (sample: Candidate, mask?: string): Sample => ({
        id: sample.id,
        set: name,
        layout: builder.layout,
        split: sample.split,
        image: sample.path,
        ...(mask === undefined ? {} : { mask }),
      });
      const labeledSamples = labeled.map(({ image, mask }) => named(image, mask));
      const unlabeledSamples = unlabeled.map((image) => named(image));
      return {
        name,
        layout: builder.layout,
        root: builder.root,
        labeled: labeledSamples,
        unlabeled: unlabeledSamples,
        countsBySplit: countBySplit(labeledSamples, unlabeledSamples),
      };
    })
    .sort((a, b) => compareText(a.name, b.name));
  strays.sort((a, b) => compareText(a.path, b.path) || compareText(a.kind, b.kind));
  return { sets, strays };
}

function groupByFolder(paths: string[]): Map<string, FileEntry[]> {
  const folders = new Map<string, FileEntry[]>();
  const ignoredDirs = new Map<string, boolean>();
  for (const raw of paths) {
    const path = raw.startsWith('./') ? raw.slice(2) : raw;
    const slash = path.lastIndexOf('/');
    const dir = slash < 0 ? '' : path.slice(0, slash);
    const name = path.slice(slash + 1);
    let dirIgnored = ignoredDirs.get(dir);
    if (dirIgnored === undefined) {
      dirIgnored = dir.split('/').some((segment) => segment.startsWith('.') || IGNORED_DIRS.test(segment));
      ignoredDirs.set(dir, dirIgnored);
    }
    if (dirIgnored || name === '') continue;
    const dot = name.lastIndexOf('.');
    const stem = dot <= 0 ? name : name.slice(0, dot);
    const ext = dot <= 0 ? '' : name.slice(dot + 1).toLowerCase();
    const ignored =
      name.startsWith('.') ||
      IGNORED_NAMES.has(name.toLowerCase()) ||
      IGNORED_EXTENSIONS.has(ext) ||
      IGNORED_STEMS.test(stem) ||
      SUPERPIXELS.test(stem);
    if (ignored) continue;
    let files = folders.get(dir);
    if (!files) {
      files = [];
      folders.set(dir, files);
    }
    files.push({ path, name, stem, ext });
  }
  return folders;
}

function knownRole(dir: string, foldersLower: Set<string>): FolderRole | undefined {
  const { parent, base } = splitPath(dir);
  const imageId = (stem: string) => stem;
  const isic = (layout: 'isic2018' | 'isic2017', side: 'image' | 'mask', splitWord: string): FolderRole => {
    const split = ISIC_SPLITS[splitWord.toLowerCase()];
    return {
      side,
      layout,
      root: parent,
      split,
      scope: split,
      idOf: side === 'image' ? imageId : (stem) => ISIC_MASK_NAME.exec(stem)?.[1],
      maskNaming: '<id>_segmentation.png',
    };
  };

  let match: RegExpExecArray | null;
  if ((match = ISIC2018_IMAGES.exec(base))) return isic('isic2018', 'image', match[1]);
  if ((match = ISIC2018_MASKS.exec(base))) return isic('isic2018', 'mask', match[1]);
  if ((match = ISIC2017_IMAGES.exec(base))) return isic('isic2017', 'image', match[1]);
  if ((match = ISIC2017_MASKS.exec(base))) return isic('isic2017', 'mask', match[1]);

  const phImages = PH2_IMAGES.exec(base);
  const phMasks = phImages ? null : PH2_MASKS.exec(base);
  const phCase = phImages ?? phMasks;
  const caseFolder = splitPath(parent);
  // PH2 case folders are IMDxxx/IMDxxx_Dermoscopic_Image and IMDxxx/IMDxxx_lesion.
  if (phCase && caseFolder.base.toLowerCase() === phCase[1].toLowerCase()) {
    return {
      side: phImages ? 'image' : 'mask',
      layout: 'ph2',
      root: caseFolder.parent,
      split: 'unspecified',
      scope: '',
      idOf: phImages ? imageId : (stem) => PH2_MASK_NAME.exec(stem)?.[1],
      maskNaming: '<id>_lesion.bmp',
    };
  }

  return imagesMasksRole(dir, foldersLower);
}

/**
 * `<root>/[split/]images/` beside `<root>/[split/]masks/`, or
 * `<root>/images/<split>/` beside `<root>/masks/<split>/`. An images folder
 * without its masks sibling is a plain folder (unlabeled); a masks folder
 * without images stays a masks folder so its files are reported, not
 * mistaken for photographs.
 */
function imagesMasksRole(dir: string, foldersLower: Set<string>): FolderRole | undefined {
  const segments = dir.split('/');
  const last = segments.length - 1;
  const lastSplit = FOLDER_SPLITS[segments[last].toLowerCase()];
  const position = lastSplit && last > 0 ? last - 1 : last;
  const word = segments[position].toLowerCase();
  if (word !== 'images' && word !== 'masks') return undefined;

  const imagesSegments = [...segments];
  imagesSegments[position] = 'images';
  const imagesDir = imagesSegments.join('/').toLowerCase();
  if (word === 'images') {
    const masksSegments = [...segments];
    masksSegments[position] = 'masks';
    if (!foldersLower.has(masksSegments.join('/').toLowerCase())) return undefined;
  }
  const outer = stripSplitFolder(segments.slice(0, position).join('/'));
  return {
    side: word === 'images' ? 'image' : 'mask',
    layout: 'images-masks',
    root: outer.root,
    split: lastSplit && last > 0 ? lastSplit : outer.split,
    scope: imagesDir,
    idOf: (stem) => (word === 'images' ? stem : (GENERIC_MASK_NAME.exec(stem)?.[1] ?? stem)),
    maskNaming: '<id>[_mask|_segmentation|_lesion].<ext>',
  };
}

/** A trailing train/val/test folder names the split, not the data set. */
function stripSplitFolder(dir: string): { root: string; split: Split } {
  const { parent, base } = splitPath(dir);
  const split = FOLDER_SPLITS[base.toLowerCase()];
  return split && dir !== base ? { root: parent, split } : { root: dir, split: split ?? 'unspecified' };
}

function splitPath(path: string): { parent: string; base: string } {
  const slash = path.lastIndexOf('/');
  return slash < 0 ? { parent: '', base: path } : { parent: path.slice(0, slash), base: path.slice(slash + 1) };
}

interface PairedSet {
  builder: SetBuilder;
  labeled: { image: Candidate; mask: string }[];
  unlabeled: Candidate[];
}

/** Windows and macOS file systems ignore case by default: ids that differ only in case cannot both exist there. */
const CASE_NOTE = '(Windows and macOS would see one file)';

/**
 * Pairs images with masks of the same id in the same scope. Ids that differ
 * only in case are one id: an image takes the mask of its exact name first,
 * else one that differs only in case. Within one set an id is used once: a
 * labeled copy wins over an unlabeled one, then the first path in sorted
 * order; every file left out is a stray that names the file used instead.
 */
function pairSet(builder: SetBuilder, strays: Stray[]): PairedSet | undefined {
  const key = (candidate: Candidate) => `${candidate.scope}\u0000${candidate.id.toLowerCase()}`;
  const masksByKey = groupBy([...builder.masks].sort(byPath), key);
  const candidates: { image: Candidate; mask?: Candidate }[] = [];
  for (const [group, images] of groupBy([...builder.images].sort(byPath), key)) {
    const masks = masksByKey.get(group) ?? [];
    masksByKey.delete(group);
    const free = [...masks];
    const exact = images.map((image) => {
      const index = free.findIndex((mask) => mask.id === image.id);
      return index < 0 ? undefined : free.splice(index, 1)[0];
    });
    const paired = images.map((image, i) => ({ image, mask: exact[i] ?? free.shift() }));
    candidates.push(...paired);
    // A mask is left over only once every image of the group has one.
    const used = paired[0].mask;
    for (const mask of free) {
      strays.push({
        path: mask.path,
        kind: 'duplicate-id',
        detail: mask.id === used!.id
          ? `a second mask for ${mask.id} (kept ${used!.path})`
          : `mask id ${mask.id} differs only in case from ${used!.path}, which is used ${CASE_NOTE}; this mask is not used`,
      });
    }
  }
  for (const mask of [...masksByKey.values()].flat()) {
    strays.push({ path: mask.path, kind: 'mask-without-image', detail: `no image with id ${mask.id}` });
  }

  candidates.sort((a, b) => Number(!a.mask) - Number(!b.mask) || byPath(a.image, b.image));
  const kept = new Map<string, Candidate>();
  const labeled: PairedSet['labeled'] = [];
  const unlabeled: Candidate[] = [];
  for (const { image, mask } of candidates) {
    const idKey = image.id.toLowerCase();
    const other = kept.get(idKey);
    if (other !== undefined) {
      const unused = mask ? `this image and its mask ${mask.path} are not used` : 'this image is not used';
      strays.push({
        path: image.path,
        kind: 'duplicate-id',
        detail: other.id === image.id
          ? `id ${image.id} already taken by ${other.path}; ${unused}`
          : `id ${image.id} differs only in case from ${other.path}, which is used ${CASE_NOTE}; ${unused}`,
      });
      continue;
    }
    kept.set(idKey, image);
    if (mask) {
      labeled.push({ image, mask: mask.path });
    } else {
      unlabeled.push(image);
      if (builder.layout !== 'unlabeled') {
        strays.push({
          path: image.path,
          kind: 'image-without-mask',
          detail: `no mask for ${image.id}; used as an unlabeled image`,
        });
      }
    }
  }
  if (labeled.length === 0 && unlabeled.length === 0) return undefined;
  labeled.sort((a, b) => compareText(a.image.id, b.image.id) || byPath(a.image, b.image));
  unlabeled.sort((a, b) => compareText(a.id, b.id) || byPath(a, b));
  return { builder, labeled, unlabeled };
}

/** Items by key, each group in the items' order. */
function groupBy<T>(items: T[], keyOf: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const key = keyOf(item);
    const group = groups.get(key);
    if (group) group.push(item);
    else groups.set(key, [item]);
  }
  return groups;
}

/** Layout names for the official sets, folder names otherwise; clashes get their root. */
function uniqueNames(sets: PairedSet[]): string[] {
  const preferred = sets.map(({ builder }) =>
    builder.layout === 'isic2018' || builder.layout === 'isic2017' || builder.layout === 'ph2'
      ? builder.layout
      : splitPath(builder.root).base || builder.layout,
  );
  const withRoot = preferred.map((name, i) =>
    count(preferred, name) > 1 ? `${name} (${sets[i].builder.root || '.'})` : name,
  );
  return withRoot.map((name, i) => (count(withRoot, name) > 1 ? `${name} [${sets[i].builder.layout}]` : name));
}

function count(items: string[], item: string): number {
  return items.reduce((n, other) => n + Number(other === item), 0);
}

function countBySplit(labeled: Sample[], unlabeled: Sample[]): Record<Split, SplitCounts> {
  const counts = Object.fromEntries(SPLITS.map((split) => [split, { labeled: 0, unlabeled: 0 }])) as Record<
    Split,
    SplitCounts
  >;
  for (const sample of labeled) counts[sample.split].labeled++;
  for (const sample of unlabeled) counts[sample.split].unlabeled++;
  return counts;
}

function byPath(a: { path: string }, b: { path: string }): number {
  return compareText(a.path, b.path);
}

/** Code-unit order: the same on every machine, unlike localeCompare. */
/** The root folder a listed path lies in (paths are `<root>/<below>`, as both hosts list them). */
export function rootOf(path: string): string {
  const slash = path.indexOf('/');
  return slash < 0 ? path : path.slice(0, slash);
}

/**
 * What a run trains on: the pairs of labeled roots, and as the unlabeled pool
 * every image without a mask plus the images of pairs whose root is marked
 * unlabeled (their masks left out).
 */
export function inputsByRole(index: DatasetIndex, isLabeledRoot: (root: string) => boolean): { labeled: Sample[]; unlabeled: Sample[] } {
  const labeled: Sample[] = [];
  const unlabeled: Sample[] = [];
  for (const set of index.sets) {
    if (isLabeledRoot(rootOf(set.labeled[0]?.image ?? set.unlabeled[0].image))) labeled.push(...set.labeled);
    else unlabeled.push(...set.labeled.map(({ mask: _mask, ...image }) => image));
    unlabeled.push(...set.unlabeled);
  }
  return { labeled, unlabeled };
}

export function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

const STRAY_EXAMPLES = 5;

export function summariseIndex(index: DatasetIndex): string {
  const labeled = index.sets.reduce((n, set) => n + set.labeled.length, 0);
  const unlabeled = index.sets.reduce((n, set) => n + set.unlabeled.length, 0);
  const lines = [
    `${plural(index.sets.length, 'data set')}: ${plural(labeled, 'labeled pair')}, ` +
      `${plural(unlabeled, 'unlabeled image')}, ${plural(index.strays.length, 'stray')}`,
  ];
  const width = Math.max(0, ...index.sets.map((set) => set.name.length));
  for (const set of index.sets) {
    const parts = [`${set.labeled.length} labeled${splitBreakdown(set, 'labeled')}`];
    if (set.unlabeled.length > 0) parts.push(`${set.unlabeled.length} unlabeled${splitBreakdown(set, 'unlabeled')}`);
    lines.push(`  ${set.name.padEnd(width)}  ${parts.join(', ')}  (${LAYOUT_TITLES[set.layout]}, ${set.root || '.'})`);
  }
  const kinds = [...new Set(index.strays.map((stray) => stray.kind))];
  for (const kind of kinds) {
    const ofKind = index.strays.filter((stray) => stray.kind === kind);
    lines.push(`Strays, ${kind}: ${ofKind.length}`);
    for (const stray of ofKind.slice(0, STRAY_EXAMPLES)) lines.push(`  ${stray.path}: ${stray.detail}`);
    if (ofKind.length > STRAY_EXAMPLES) lines.push(`  ... and ${ofKind.length - STRAY_EXAMPLES} more`);
  }
  return lines.join('\n');
}

function splitBreakdown(set: DatasetSet, which: keyof SplitCounts): string {
  const parts = SPLITS.filter((split) => set.countsBySplit[split][which] > 0).map(
    (split) => `${split} ${set.countsBySplit[split][which]}`,
  );
  return parts.length > 0 ? ` [${parts.join(', ')}]` : '';
}

function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}
