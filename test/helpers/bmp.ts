/**
 * A BMP writer for the tests, independent of the decoders under test: every
 * header the studio reads (OS/2 1.x, Windows 40 to 124 bytes), palettes,
 * bit masks, uncompressed rows either way up, RLE8 and RLE4 with runs,
 * absolute runs, deltas and ends of line. With it, real images are written
 * as the BMP variants users' folders hold, and the pixels they must decode
 * to are known exactly.
 */

export interface Rgb {
  width: number;
  height: number;
  data: Uint8Array;
}

export interface BmpSpec {
  width: number;
  height: number;
  /** Info header size: 12 (OS/2 1.x) or 40, 52, 56, 108, 124. */
  headerSize?: 12 | 40 | 52 | 56 | 108 | 124;
  bits: number;
  /** 0 BI_RGB, 1 RLE8, 2 RLE4, 3 BITFIELDS, or any other value, for files that must be refused. */
  compression?: number;
  /** RGB triples, written BGR(0) (3 bytes an entry for OS/2). */
  palette?: Uint8Array;
  /** Red, green, blue and alpha masks: in the header from 52 bytes on, after a 40-byte one. */
  masks?: [number, number, number, number];
  topDown?: boolean;
  /** The pixel data as it goes in the file. */
  data: Uint8Array;
}

export function encodeBmp(spec: BmpSpec): Uint8Array {
  const { width, height, bits, compression = 0, palette, masks, topDown = false, data } = spec;
  const size = spec.headerSize ?? 40;
  const os2 = size === 12;
  const maskBytes = masks && size === 40 ? (compression === 6 ? 16 : 12) : 0;
  const entry = os2 ? 3 : 4;
  const paletteBytes = palette ? (palette.length / 3) * entry : 0;
  const offset = 14 + size + maskBytes + paletteBytes;
  const out = new Uint8Array(offset + data.length);
  const view = new DataView(out.buffer);
  out.set([0x42, 0x4d]);
  view.setUint32(2, out.length, true);
  view.setUint32(10, offset, true);
  view.setUint32(14, size, true);
  if (os2) {
    view.setUint16(18, width, true);
    view.setUint16(20, height, true);
    view.setUint16(22, 1, true);
    view.setUint16(24, bits, true);
  } else {
    view.setInt32(18, width, true);
    view.setInt32(22, topDown ? -height : height, true);
    view.setUint16(26, 1, true);
    view.setUint16(28, bits, true);
    view.setUint32(30, compression, true);
    view.setUint32(34, data.length, true);
    view.setUint32(38, 2835, true);
    view.setUint32(42, 2835, true);
    if (palette) view.setUint32(46, palette.length / 3, true);
    if (masks) masks.slice(0, size === 40 ? maskBytes / 4 : size >= 56 ? 4 : 3).forEach((m, i) => view.setUint32(54 + i * 4, m, true));
    // V4 and V5: sRGB colour space.
    if (size >= 108) view.setUint32(14 + 56, 0x73524742, true);
  }
  if (palette) {
    for (let i = 0; i < palette.length / 3; i++) out.set([palette[i * 3 + 2], palette[i * 3 + 1], palette[i * 3]], 14 + size + maskBytes + i * entry);
  }
  out.set(data, offset);
  return out;
}

/** Uncompressed rows padded to 4 bytes, in file order; `pixel` writes pixel (x, y) of the image at `at`. */
export function bmpRows(width: number, height: number, bits: number, topDown: boolean, pixel: (x: number, y: number, out: Uint8Array, at: number) => void): Uint8Array {
  const rowBytes = Math.ceil((width * bits) / 32) * 4;
  const out = new Uint8Array(rowBytes * height);
  for (let y = 0; y < height; y++) {
    const row = (topDown ? y : height - 1 - y) * rowBytes;
    for (let x = 0; x < width; x++) pixel(x, y, out, row + Math.floor((x * bits) / 8));
  }
  return out;
}

/** Palette indices packed at 1, 2, 4 or 8 bits, leftmost pixel in the high bits. */
export function indexRows(indices: Uint8Array, width: number, height: number, bits: 1 | 2 | 4 | 8, topDown = false): Uint8Array {
  return bmpRows(width, height, bits, topDown, (x, y, out, at) => {
    out[at] |= indices[y * width + x] << (8 - bits - ((x * bits) % 8));
  });
}

/**
 * RLE8 or RLE4, bottom-up: runs of three or more equal indices are encoded
 * runs, stretches without one are absolute runs (padded to 16 bits), pixels
 * `skip` names are jumped with a delta, or with an end of line when they
 * reach the row's end. Runs never cross a row.
 */
export function encodeRle(indices: Uint8Array, width: number, height: number, four: boolean, skip: (x: number, y: number) => boolean = () => false): Uint8Array {
  const out: number[] = [];
  const at = (x: number, y: number) => indices[y * width + x];
  for (let row = 0; row < height; row++) {
    const y = height - 1 - row;
    let x = 0;
    while (x < width) {
      if (skip(x, y)) {
        let end = x;
        while (end < width && skip(end, y)) end++;
        if (end === width) break;
        for (let dx = end - x; dx > 0; dx -= Math.min(dx, 255)) out.push(0, 2, Math.min(dx, 255), 0);
        x = end;
        continue;
      }
      const runAt = (from: number) => {
        let n = 1;
        while (from + n < width && n < 255 && !skip(from + n, y) && at(from + n, y) === at(from, y)) n++;
        return n;
      };
      const run = runAt(x);
      if (run >= 3) {
        out.push(run, four ? (at(x, y) << 4) | at(x, y) : at(x, y));
        x += run;
        continue;
      }
      let end = x;
      while (end < width && end - x < 255 && !skip(end, y) && runAt(end) < 3) end++;
      const n = end - x;
      if (n < 3) {
        // Absolute runs hold 3 pixels or more (counts 0 to 2 are escapes).
        for (; x < end; x++) out.push(1, four ? at(x, y) << 4 : at(x, y));
        continue;
      }
      const bytes = four ? Math.ceil(n / 2) : n;
      const literal = new Array<number>(bytes + (bytes & 1)).fill(0);
      for (let i = 0; i < n; i++) {
        if (four) literal[i >> 1] |= at(x + i, y) << (i & 1 ? 0 : 4);
        else literal[i] = at(x + i, y);
      }
      out.push(0, n, ...literal);
      x = end;
    }
    out.push(0, row === height - 1 ? 1 : 0);
  }
  return new Uint8Array(out);
}

/** A palette and, for each pixel, its index and its exact palette colour. */
export interface Quantised {
  indices: Uint8Array;
  palette: Uint8Array;
  quantised: Rgb;
}

/** 3 bits red, 3 green, 2 blue: every pixel's palette colour is known exactly. */
export function quantise332(pixels: Rgb): Quantised {
  return quantise(pixels, [3, 3, 2]);
}

/** 1 bit red, 2 green, 1 blue: 16 colours, for 4-bit files. */
export function quantise121(pixels: Rgb): Quantised {
  return quantise(pixels, [1, 2, 1]);
}

function quantise(pixels: Rgb, bits: [number, number, number]): Quantised {
  const levels = bits.map((b) => 2 ** b - 1);
  const shifts = [bits[1] + bits[2], bits[2], 0];
  const colours = 2 ** (bits[0] + bits[1] + bits[2]);
  const palette = new Uint8Array(colours * 3);
  for (let i = 0; i < colours; i++) {
    for (let c = 0; c < 3; c++) palette[i * 3 + c] = Math.round((((i >> shifts[c]) & levels[c]) * 255) / levels[c]);
  }
  const count = pixels.width * pixels.height;
  const indices = new Uint8Array(count);
  const quantised = new Uint8Array(count * 3);
  for (let i = 0; i < count; i++) {
    let index = 0;
    for (let c = 0; c < 3; c++) index |= Math.round((pixels.data[i * 3 + c] * levels[c]) / 255) << shifts[c];
    indices[i] = index;
    quantised.set(palette.subarray(index * 3, index * 3 + 3), i * 3);
  }
  return { indices, palette, quantised: { width: pixels.width, height: pixels.height, data: quantised } };
}
