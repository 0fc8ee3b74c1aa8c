/**
 * Binary masks as 8-bit greyscale PNGs of 0 and 255, the ISIC ground truth's
 * format, encoded here in plain TypeScript so that the studio and the CLI
 * write the same bytes for the same mask. The hosts' own encoders cannot give
 * that: Node's zlib and the browser's CompressionStream or canvas compress
 * differently (and a canvas PNG is RGBA).
 *
 * The compression is the smallest deflate that suits masks: every row is
 * filtered "Up" (the difference from the row above), so a mask becomes long
 * runs of zeros broken only where its outline moves, and those runs go out as
 * distance-1 matches in one block of deflate's fixed Huffman codes. A
 * 6000x4000 mask of one lesion takes some 150 KB; a general-purpose deflate
 * with dynamic codes would take less, and is not worth its size here.
 */
import { concatBytes } from './bytes.ts';
import { crc32 } from './crc32.ts';
import type { BinaryMask } from '../io.ts';

/** Appends bits least significant first, as deflate packs them. */
class BitWriter {
  private buffer = new Uint8Array(1 << 16);
  private length = 0;
  private bits = 0;
  private count = 0;

  write(value: number, n: number): void {
    this.bits |= value << this.count;
    this.count += n;
    while (this.count >= 8) {
      this.byte(this.bits & 0xff);
      this.bits >>>= 8;
      this.count -= 8;
    }
  }

  /** A Huffman code: deflate sends its most significant bit first. */
  code(value: number, n: number): void {
    let reversed = 0;
    for (let i = 0; i < n; i++) reversed |= ((value >>> i) & 1) << (n - 1 - i);
    this.write(reversed, n);
  }

  finish(): Uint8Array {
    if (this.count > 0) this.byte(this.bits & 0xff);
    this.bits = 0;
    this.count = 0;
    return this.buffer.subarray(0, this.length);
  }

  private byte(b: number): void {
    if (this.length === this.buffer.length) {
      const grown = new Uint8Array(this.buffer.length * 2);
      grown.set(this.buffer);
      this.buffer = grown;
    }
    this.buffer[this.length++] = b;
  }
}

/** Deflate's length codes: for lengths 3..258, the symbol, its extra bits and their value. */
const LENGTH_BASE = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258];
const LENGTH_EXTRA = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
const MAX_MATCH = 258;

function literal(out: BitWriter, symbol: number): void {
  if (symbol < 144) out.code(0x30 + symbol, 8);
  else if (symbol < 256) out.code(0x190 + symbol - 144, 9);
  else if (symbol < 280) out.code(symbol - 256, 7);
  else out.code(0xc0 + symbol - 280, 8);
}

/** A run of `length` copies of the byte before it (distance 1). */
function match(out: BitWriter, length: number): void {
  let i = LENGTH_BASE.length - 1;
  while (LENGTH_BASE[i] > length) i--;
  literal(out, 257 + i);
  if (LENGTH_EXTRA[i] > 0) out.write(length - LENGTH_BASE[i], LENGTH_EXTRA[i]);
  // Distance 1 is distance code 0, five bits, no extra bits.
  out.code(0, 5);
}

/** One fixed-Huffman block, repeats of the previous byte sent as matches. */
class RunDeflater {
  private readonly out = new BitWriter();
  private last = -1;
  private run = 0;

  constructor() {
    this.out.write(1, 1); // final block
    this.out.write(1, 2); // fixed Huffman codes
  }

  push(b: number): void {
    if (b === this.last) {
      if (++this.run === MAX_MATCH) this.flushRun();
      return;
    }
    this.flushRun();
    literal(this.out, b);
    this.last = b;
  }

  finish(): Uint8Array {
    this.flushRun();
    literal(this.out, 256);
    return this.out.finish();
  }

  private flushRun(): void {
    if (this.run >= 3) match(this.out, this.run);
    else for (let i = 0; i < this.run; i++) literal(this.out, this.last);
    this.run = 0;
  }
}

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

const SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/** A 0/1 mask (any non-zero byte is lesion) as a greyscale PNG of 0 and 255. The mask is left as it is. */
export function maskPng(mask: BinaryMask): Uint8Array {
  const { width, height, data } = mask;
  if (data.length !== width * height) throw new RangeError(`mask of ${width}x${height} holds ${data.length} values`);
  const deflater = new RunDeflater();
  let a = 1;
  let b = 0;
  // Adler-32 over the filtered bytes, with the modulo taken before the sums can lose precision.
  const feed = (v: number): void => {
    deflater.push(v);
    a += v;
    b += a;
    if (b > 0x3fffffff) {
      a %= 65521;
      b %= 65521;
    }
  };
  for (let y = 0; y < height; y++) {
    feed(2); // filter type Up
    const row = y * width;
    for (let x = 0; x < width; x++) {
      const value = data[row + x] ? 255 : 0;
      const above = y === 0 ? 0 : data[row - width + x] ? 255 : 0;
      feed((value - above) & 0xff);
    }
  }
  const deflated = deflater.finish();
  a %= 65521;
  b %= 65521;
  const zlib = new Uint8Array(2 + deflated.length + 4);
  zlib[0] = 0x78;
  zlib[1] = 0x01;
  zlib.set(deflated, 2);
  new DataView(zlib.buffer).setUint32(2 + deflated.length, ((b << 16) | a) >>> 0);

  const header = new Uint8Array(13);
  const h = new DataView(header.buffer);
  h.setUint32(0, width);
  h.setUint32(4, height);
  header[8] = 8; // bits per sample
  header[9] = 0; // greyscale
  return concatBytes([Uint8Array.from(SIGNATURE), chunk('IHDR', header), chunk('IDAT', zlib), chunk('IEND', new Uint8Array(0))]);
}
