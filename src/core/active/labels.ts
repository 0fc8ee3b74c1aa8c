/**
 * Expert labels: masks a person drew in the studio for images of the
 * unlabeled pool, kept in a key-value store of their own (the worker's
 * `labels` database), apart from the runs. A label is stored at its image's
 * own resolution, one byte per pixel (0/1), with who drew it, a note and when.
 *
 * A labeled image joins the labeled images of every later run: the run's
 * inputs list it with a mask path that the ExpertLabelSource serves as an
 * 8-bit BMP (black/white palette), so the pipeline reads, resizes and
 * binarises it exactly like a mask file from a folder, on either host.
 */
import type { Sample } from '../dataset/layouts.ts';
import { LesionError } from '../errors.ts';
import type { BinaryMask, FileSource, KeyValueStore } from '../io.ts';

export interface ExpertLabel {
  /** The image's path, as the open data set lists it: the label's identity. */
  image: string;
  id: string;
  set: string;
  width: number;
  height: number;
  /** 0 background, 1 lesion; width * height bytes. */
  data: Uint8Array;
  author: string;
  note: string;
  /** ISO 8601. */
  savedAt: string;
  /** Where the drawing started: the model's mask of the time, or an empty one. */
  startedFrom: 'pseudo-label' | 'empty' | 'previous-label';
}

export type ExpertLabelInfo = Omit<ExpertLabel, 'data'> & { lesionPixels: number };

const PREFIX = 'label/';
const labelKey = (image: string): string => `${PREFIX}${image}`;

/** Refuses a mask that does not fit its image or is not 0/1, naming the image. */
export function checkLabel(label: ExpertLabel): void {
  const { image, width, height, data } = label;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new LesionError('dataset', `expert label has an invalid size ${width}x${height}`, image);
  }
  if (data.length !== width * height) {
    throw new LesionError('dataset', `expert label holds ${data.length} pixels, but the image is ${width}x${height} (${width * height})`, image);
  }
  for (let i = 0; i < data.length; i++) {
    if (data[i] > 1) throw new LesionError('dataset', `expert label pixel ${i} is ${data[i]}; a mask holds only 0 and 1`, image);
  }
}

export class LabelStore {
  constructor(private readonly store: KeyValueStore) {}

  async save(label: ExpertLabel): Promise<void> {
    checkLabel(label);
    await this.store.set(labelKey(label.image), label);
  }

  get(image: string): Promise<ExpertLabel | undefined> {
    return this.store.get<ExpertLabel>(labelKey(image));
  }

  delete(image: string): Promise<void> {
    return this.store.delete(labelKey(image));
  }

  /** The labeled images' paths, without reading any mask. */
  async images(): Promise<Set<string>> {
    return new Set((await this.store.keys(PREFIX)).map((key) => key.slice(PREFIX.length)));
  }

  async all(): Promise<ExpertLabel[]> {
    const keys = await this.store.keys(PREFIX);
    const labels = await Promise.all(keys.map((key) => this.store.get<ExpertLabel>(key)));
    return labels.filter((l): l is ExpertLabel => l !== undefined).sort((a, b) => a.image.localeCompare(b.image));
  }

  async infos(): Promise<ExpertLabelInfo[]> {
    return (await this.all()).map(({ data, ...info }) => ({ ...info, lesionPixels: data.reduce((n, v) => n + v, 0) }));
  }
}

const EXPERT_MASK = '#expert-label.bmp';

/** The mask path under which a run reads an image's expert label. */
export function expertMaskPath(image: string): string {
  return `${image}${EXPERT_MASK}`;
}

export function hasExpertLabel(sample: Sample): boolean {
  return sample.mask?.endsWith(EXPERT_MASK) ?? false;
}

/**
 * The run's inputs with expert-labeled images moved from the unlabeled pool to
 * the labeled images. Only pool images move: an image that already has a mask
 * file keeps it.
 */
export function withExpertLabels<T extends { labeled: Sample[]; unlabeled: Sample[] }>(inputs: T, labeledImages: ReadonlySet<string>): T & { expert: number } {
  const promoted: Sample[] = [];
  const unlabeled: Sample[] = [];
  for (const sample of inputs.unlabeled) {
    if (labeledImages.has(sample.image)) promoted.push({ ...sample, mask: expertMaskPath(sample.image) });
    else unlabeled.push(sample);
  }
  return { ...inputs, labeled: [...inputs.labeled, ...promoted], unlabeled, expert: promoted.length };
}

/** The host's files plus each expert label as a mask file at expertMaskPath(image). */
export class ExpertLabelSource implements FileSource {
  private readonly byPath: Map<string, string>;

  constructor(private readonly inner: FileSource, private readonly labels: LabelStore, images: Iterable<string>) {
    this.byPath = new Map([...images].map((image) => [expertMaskPath(image), image]));
  }

  list(): Promise<string[]> {
    return this.inner.list();
  }

  async read(path: string): Promise<Uint8Array> {
    const image = this.byPath.get(path);
    if (image === undefined) return this.inner.read(path);
    const label = await this.labels.get(image);
    if (!label) throw new LesionError('storage', 'its expert label was deleted from this browser', image);
    return maskBmp(label);
  }
}

/** A 0/1 mask as an uncompressed 8-bit BMP whose palette maps 0 to black and 1 to white. */
export function maskBmp(mask: BinaryMask): Uint8Array {
  const { width, height, data } = mask;
  const stride = (width + 3) & ~3;
  const paletteBytes = 2 * 4;
  const offset = 14 + 40 + paletteBytes;
  const bytes = new Uint8Array(offset + stride * height);
  const view = new DataView(bytes.buffer);
  bytes[0] = 0x42; // 'B'
  bytes[1] = 0x4d; // 'M'
  view.setUint32(2, bytes.length, true);
  view.setUint32(10, offset, true);
  view.setUint32(14, 40, true);
  view.setInt32(18, width, true);
  view.setInt32(22, height, true);
  view.setUint16(26, 1, true);
  view.setUint16(28, 8, true);
  view.setUint32(34, stride * height, true);
  view.setUint32(46, 2, true);
  bytes.set([255, 255, 255, 0], 14 + 40 + 4);
  // Rows bottom-up, as BMP stores them by default.
  for (let y = 0; y < height; y++) bytes.set(data.subarray(y * width, (y + 1) * width), offset + (height - 1 - y) * stride);
  return bytes;
}
