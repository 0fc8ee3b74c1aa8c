/**
 * Synthetic demo data, so the studio does something before any download:
 * irregular dark blobs on noisy skin-coloured backgrounds, with exact masks.
 * Generated from a fixed seed (the same files on every machine, so a demo run
 * resumes after a reload) and served as BMP files through the ordinary
 * FileSource, so the demo exercises the same decoding and layout code as a
 * real folder. It is not dermoscopy and is labeled as synthetic wherever it
 * shows.
 */
import type { FileSource } from '../core/io.ts';
import { LesionError } from '../core/errors.ts';
import { Rng, deriveSeed } from '../core/random.ts';

export const DEMO_LABELED_ROOT = 'synthetic-demo-labeled';
export const DEMO_UNLABELED_ROOT = 'synthetic-demo-unlabeled';
export const DEMO_TITLE = 'synthetic demo data';

const SIZE = 128;
const LABELED = 24;
const UNLABELED = 24;
const SEED = 20_17;

interface DemoFile {
  index: number;
  kind: 'image' | 'mask';
}

function name(prefix: string, i: number): string {
  return `${prefix}${String(i + 1).padStart(3, '0')}.bmp`;
}

export class DemoFileSource implements FileSource {
  private readonly files = new Map<string, DemoFile>();
  private readonly cache = new Map<number, { image: Uint8Array; mask: Uint8Array }>();

  constructor() {
    for (let i = 0; i < LABELED; i++) {
      this.files.set(`${DEMO_LABELED_ROOT}/images/${name('synthetic_', i)}`, { index: i, kind: 'image' });
      this.files.set(`${DEMO_LABELED_ROOT}/masks/${name('synthetic_', i)}`, { index: i, kind: 'mask' });
    }
    for (let i = 0; i < UNLABELED; i++) {
      this.files.set(`${DEMO_UNLABELED_ROOT}/${name('synthetic_u', i)}`, { index: LABELED + i, kind: 'image' });
    }
  }

  async list(): Promise<string[]> {
    return [...this.files.keys()].sort();
  }

  async read(path: string): Promise<Uint8Array> {
    const file = this.files.get(path);
    if (!file) throw new LesionError('read', 'not a file of the synthetic demo data', path);
    let pair = this.cache.get(file.index);
    if (!pair) {
      const lesion = drawLesion(file.index);
      pair = { image: encodeBmp(lesion.rgb, SIZE, SIZE), mask: encodeBmp(maskToRgb(lesion.mask), SIZE, SIZE) };
      this.cache.set(file.index, pair);
    }
    return file.kind === 'image' ? pair.image : pair.mask;
  }
}

/** One synthetic case: RGB bytes and a 0/1 mask, both SIZE x SIZE. */
export function drawLesion(index: number): { rgb: Uint8Array; mask: Uint8Array } {
  const rng = new Rng(deriveSeed(SEED, `demo/${index}`));
  const skin = [rng.uniform(200, 235), rng.uniform(150, 190), rng.uniform(125, 165)];
  const lesion = [rng.uniform(70, 130), rng.uniform(40, 80), rng.uniform(25, 60)];
  const cx = SIZE / 2 + rng.uniform(-16, 16);
  const cy = SIZE / 2 + rng.uniform(-16, 16);
  const radius = rng.uniform(16, 34);
  // The outline: a circle bent by a few low harmonics, so every blob is irregular.
  const harmonics = [2, 3, 4, 5, 7].map((k) => ({ k, a: rng.uniform(0, 0.16), phase: rng.uniform(0, 2 * Math.PI) }));
  const shadeX = rng.uniform(-0.25, 0.25);
  const shadeY = rng.uniform(-0.25, 0.25);
  const hairs = Array.from({ length: rng.int(0, 3) }, () => ({
    x0: rng.uniform(0, SIZE), y0: rng.uniform(0, SIZE), angle: rng.uniform(0, Math.PI), width: rng.uniform(0.35, 0.7),
  }));

  const rgb = new Uint8Array(SIZE * SIZE * 3);
  const mask = new Uint8Array(SIZE * SIZE);
  for (let y = 0; y < SIZE; y++) {
    for (let x = 0; x < SIZE; x++) {
      const dx = x + 0.5 - cx;
      const dy = y + 0.5 - cy;
      const theta = Math.atan2(dy, dx);
      const edge = radius * (1 + harmonics.reduce((s, h) => s + h.a * Math.cos(h.k * theta + h.phase), 0));
      const r = Math.hypot(dx, dy);
      const inside = r < edge;
      // Vignetting and a little lighting slope, as dermoscopes give.
      const light = 1 + shadeX * (x / SIZE - 0.5) + shadeY * (y / SIZE - 0.5) - 0.25 * ((r / SIZE) ** 2);
      // Darker towards the centre; a soft 2 px rim blends into the skin (the mask stays exact).
      const depth = inside ? 0.6 + 0.4 * (r / edge) : 1;
      const blend = Math.min(1, Math.max(0, (edge - r) / 2 + 0.5));
      const hair = hairs.some((h) => Math.abs((x - h.x0) * Math.sin(h.angle) - (y - h.y0) * Math.cos(h.angle)) < h.width);
      for (let c = 0; c < 3; c++) {
        const tone = skin[c] * (1 - blend) + lesion[c] * depth * blend;
        const value = (hair ? tone * 0.35 : tone * light) + rng.normal() * 6;
        rgb[(y * SIZE + x) * 3 + c] = Math.max(0, Math.min(255, Math.round(value)));
      }
      mask[y * SIZE + x] = inside ? 1 : 0;
    }
  }
  return { rgb, mask };
}

function maskToRgb(mask: Uint8Array): Uint8Array {
  const rgb = new Uint8Array(mask.length * 3);
  for (let i = 0; i < mask.length; i++) rgb.fill(mask[i] ? 255 : 0, i * 3, i * 3 + 3);
  return rgb;
}

/** 24-bit uncompressed BMP: rows bottom-up, BGR, each row padded to 4 bytes. */
export function encodeBmp(rgb: Uint8Array, width: number, height: number): Uint8Array {
  const rowBytes = Math.ceil((width * 3) / 4) * 4;
  const pixelBytes = rowBytes * height;
  const bytes = new Uint8Array(54 + pixelBytes);
  const view = new DataView(bytes.buffer);
  bytes[0] = 0x42;
  bytes[1] = 0x4d;
  view.setUint32(2, bytes.length, true);
  view.setUint32(10, 54, true);
  view.setUint32(14, 40, true);
  view.setInt32(18, width, true);
  view.setInt32(22, height, true);
  view.setUint16(26, 1, true);
  view.setUint16(28, 24, true);
  view.setUint32(34, pixelBytes, true);
  view.setInt32(38, 2835, true);
  view.setInt32(42, 2835, true);
  for (let y = 0; y < height; y++) {
    const row = 54 + (height - 1 - y) * rowBytes;
    for (let x = 0; x < width; x++) {
      const at = (y * width + x) * 3;
      bytes[row + x * 3] = rgb[at + 2];
      bytes[row + x * 3 + 1] = rgb[at + 1];
      bytes[row + x * 3 + 2] = rgb[at];
    }
  }
  return bytes;
}
