/**
 * Training and validation items, and the cache that turns them into pixels.
 *
 * An item's mask is either an expert mask file or a pseudo-label kept in the
 * key-value store. Decoded pixels are cached at the training size up to a byte
 * budget (a 256 px RGB image is 192 KiB), so epochs after the first decode
 * nothing; a file that cannot be read is reported once, named, and skipped.
 */
import type { Sample } from './layouts.ts';
import { loadSample, type SampleWarning, type Size } from './loader.ts';
import { LesionError } from '../errors.ts';
import type { EventSink } from '../events.ts';
import type { BinaryMask, FileSource, KeyValueStore, PixelDecoder, RgbImage } from '../io.ts';

export interface TrainItem {
  id: string;
  set: string;
  image: string;
  mask: { kind: 'file'; path: string } | { kind: 'pseudo'; key: string };
}

export interface Pixels {
  image: RgbImage;
  mask: BinaryMask;
}

export function itemFromSample(sample: Sample): TrainItem {
  if (!sample.mask) throw new Error(`${sample.image}: a training item needs a mask`);
  return { id: sample.id, set: sample.set, image: sample.image, mask: { kind: 'file', path: sample.mask } };
}

/** Stored form of a pseudo-label mask. */
export interface StoredMask {
  width: number;
  height: number;
  data: Uint8Array;
}

export class PixelCache {
  private readonly cache = new Map<string, Pixels>();
  private bytes = 0;
  private readonly failed = new Map<string, string>();
  /** Warnings already emitted: a file read again (evicted, or pseudo-labelled each round) is not reported again. */
  private readonly warned = new Set<string>();

  constructor(
    private readonly source: FileSource,
    private readonly decoder: PixelDecoder,
    private readonly store: KeyValueStore,
    readonly size: Size,
    private readonly emit: EventSink,
    private readonly budgetBytes = 1 << 30,
  ) {}

  /** Files that could not be read, with the reason. */
  get failures(): ReadonlyMap<string, string> {
    return this.failed;
  }

  /** The item's pixels, or undefined (reported once) when a file is unreadable. */
  async get(item: TrainItem): Promise<Pixels | undefined> {
    const key = `${item.image}|${item.mask.kind === 'file' ? item.mask.path : item.mask.key}`;
    const hit = this.cache.get(key);
    if (hit) {
      // Refresh its place in the LRU order.
      this.cache.delete(key);
      this.cache.set(key, hit);
      return hit;
    }
    if (this.failed.has(item.image)) return undefined;
    let pixels: Pixels;
    try {
      pixels = await this.load(item);
    } catch (error) {
      this.skip(item.image, error);
      return undefined;
    }
    this.remember(key, pixels);
    return pixels;
  }

  /** The image alone (unlabeled pool), not cached: pseudo-labelling streams once. */
  async image(sample: Sample): Promise<{ image: RgbImage; sourceWidth: number; sourceHeight: number } | undefined> {
    if (this.failed.has(sample.image)) return undefined;
    try {
      const { image, sourceWidth, sourceHeight, warnings } = await loadSample({ ...sample, mask: undefined }, this.source, this.decoder, this.size);
      this.report(warnings);
      return { image, sourceWidth, sourceHeight };
    } catch (error) {
      this.skip(sample.image, error);
      return undefined;
    }
  }

  private report(warnings: SampleWarning[]): void {
    for (const warning of warnings) {
      if (this.warned.has(warning.message)) continue;
      this.warned.add(warning.message);
      this.emit({ type: 'warning', ...warning });
    }
  }

  /** Remembers the failure and reports it once, naming the file at fault (the image or its mask). */
  private skip(image: string, error: unknown): void {
    const message = error instanceof Error ? error.message : String(error);
    const file = error instanceof LesionError && error.file !== undefined ? error.file : image;
    this.failed.set(image, message);
    this.emit({ type: 'warning', file, message: file === image ? `skipped: ${message}` : `skipped ${image}: ${message}` });
  }

  private async load(item: TrainItem): Promise<Pixels> {
    if (item.mask.kind === 'file') {
      const loaded = await loadSample(
        { id: item.id, set: item.set, layout: 'images-masks', split: 'unspecified', image: item.image, mask: item.mask.path },
        this.source,
        this.decoder,
        this.size,
      );
      this.report(loaded.warnings);
      return { image: loaded.image, mask: loaded.mask! };
    }
    const stored = await this.store.get<StoredMask>(item.mask.key);
    if (!stored) throw new Error(`pseudo-label ${item.mask.key} is missing from storage`);
    if (stored.width !== this.size.width || stored.height !== this.size.height) {
      throw new Error(`pseudo-label ${item.mask.key} is ${stored.width}x${stored.height}, expected ${this.size.width}x${this.size.height}`);
    }
    const { image, warnings } = await loadSample(
      { id: item.id, set: item.set, layout: 'unlabeled', split: 'unspecified', image: item.image },
      this.source,
      this.decoder,
      this.size,
    );
    this.report(warnings);
    return { image, mask: { width: stored.width, height: stored.height, data: stored.data } };
  }

  private remember(key: string, pixels: Pixels): void {
    const bytes = pixels.image.data.byteLength + pixels.mask.data.byteLength;
    if (bytes > this.budgetBytes) return;
    while (this.bytes + bytes > this.budgetBytes && this.cache.size > 0) {
      const [oldest, evicted] = this.cache.entries().next().value as [string, Pixels];
      this.cache.delete(oldest);
      this.bytes -= evicted.image.data.byteLength + evicted.mask.data.byteLength;
    }
    this.cache.set(key, pixels);
    this.bytes += bytes;
  }
}

/** Packs images into a [B, H, W, 3] float batch in [0, 1]. */
export function imagesToBatch(images: RgbImage[]): Float32Array {
  const per = images[0].data.length;
  const out = new Float32Array(images.length * per);
  images.forEach((img, b) => {
    const d = img.data;
    const o = b * per;
    for (let i = 0; i < per; i++) out[o + i] = d[i] / 255;
  });
  return out;
}

/** Packs masks into a [B, H, W, 1] float batch of 0/1. */
export function masksToBatch(masks: BinaryMask[]): Float32Array {
  const per = masks[0].data.length;
  const out = new Float32Array(masks.length * per);
  masks.forEach((m, b) => out.set(m.data, b * per));
  return out;
}
