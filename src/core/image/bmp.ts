/**
 * BMP, read the way Chromium reads it, so that the Node host decodes every
 * BMP the studio decodes, to the same pixels (jimp's bmp-ts turns RLE into
 * noise and refuses OS/2 files). Info headers of 12 bytes (OS/2 1.x) and 40,
 * 52, 56, 108 and 124 bytes (Windows); 1, 2, 4 and 8 bits through a palette,
 * 16, 24 and 32 bits through bit masks; uncompressed, RLE8 and RLE4; rows
 * bottom-up or top-down.
 *
 * The header is read on its own too: both hosts check it before decoding,
 * so a variant no host decodes gets the same message in both.
 */
import { DecodeError } from '../errors.ts';
import type { RgbaPixels } from '../io.ts';

type Compression = 'none' | 'rle8' | 'rle4' | 'bitfields';

/** Where a channel sits in a 16- or 32-bit pixel. */
interface Channel {
  mask: number;
  shift: number;
  /** 8-bit values of the channel's raw values, for channels under 8 bits; undefined when it keeps its top 8 bits. */
  scale?: Uint8Array;
}

export interface BmpHeader {
  width: number;
  height: number;
  topDown: boolean;
  bits: number;
  compression: Compression;
  /** RGB triples; indices past its end are black, as in Chromium. */
  palette: Uint8Array;
  /** Red, green, blue, alpha; alpha's mask is 0 when the file has none. */
  channels: Channel[];
  dataOffset: number;
}

const COMPRESSION_NAMES = ['BI_RGB', 'RLE8', 'RLE4', 'BITFIELDS', 'JPEG inside BMP', 'PNG inside BMP', 'ALPHABITFIELDS'];

/** Throws a DecodeError naming the file for a BMP header no host decodes or a truncated one. */
export function readBmpHeader(path: string, bytes: Uint8Array): BmpHeader {
  const fail = (problem: string, code: 'decode' | 'unsupported-format' = 'unsupported-format') => new DecodeError(path, problem, code);
  if (bytes.length < 18) throw fail(`truncated BMP header (${bytes.length} bytes)`, 'decode');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const size = view.getUint32(14, true);
  const os2 = size === 12;
  if (!os2 && size !== 40 && size !== 52 && size !== 56 && size !== 108 && size !== 124) {
    const os2v2 = size >= 16 && size <= 64 && (size % 4 === 0 || size === 42 || size === 46);
    throw fail(`unsupported BMP header size ${size}${os2v2 ? ' (OS/2 2.x)' : ''}`);
  }
  const headerEnd = 14 + size;
  if (bytes.length < headerEnd) throw fail(`truncated BMP header (${bytes.length} bytes, its info header ends at byte ${headerEnd})`, 'decode');

  const width = os2 ? view.getUint16(18, true) : view.getInt32(18, true);
  const storedHeight = os2 ? view.getUint16(20, true) : view.getInt32(22, true);
  const height = Math.abs(storedHeight);
  const topDown = storedHeight < 0;
  let bits = view.getUint16(os2 ? 24 : 28, true);
  const code = os2 ? 0 : view.getUint32(30, true);
  if (width <= 0 || height === 0) throw fail(`invalid BMP size ${width}x${storedHeight}`, 'decode');
  // Chromium's limit; the megapixel cap catches most such files first.
  if (width > 0xffff || height > 0xffff) throw fail(`unsupported BMP size ${width}x${height} (at most 65535 pixels a side)`);

  if (code === 4 && bits === 24) throw fail('unsupported BMP compression 4 with 24 bits (OS/2 RLE24)');
  if (code === 3 && bits === 1) throw fail('unsupported BMP compression 3 with 1 bit (OS/2 Huffman 1D)');
  if (code > 6 || code === 4 || code === 5) throw fail(`unsupported BMP compression ${code}${code <= 6 ? ` (${COMPRESSION_NAMES[code]})` : ''}`);
  const depths = os2 ? [1, 4, 8, 24] : [1, 2, 4, 8, 16, 24, 32];
  if (!depths.includes(bits)) throw fail(`unsupported BMP bit depth ${bits}`);
  const compression: Compression = code === 1 ? 'rle8' : code === 2 ? 'rle4' : code === 3 || code === 6 ? 'bitfields' : 'none';
  if ((code === 1 && bits > 8) || (code === 2 && bits > 4) || (compression === 'bitfields' && bits !== 16 && bits !== 32)) {
    throw fail(`unsupported BMP compression ${code} (${COMPRESSION_NAMES[code]}) with ${bits} bits per pixel`);
  }

  // A palette has room for the colours the file's own bit depth allows, even
  // when RLE then reads it at 8 or 4 bits (Chromium does the same).
  const maxColours = bits < 16 ? 2 ** bits : 0;
  if (code === 1) bits = 8;
  else if (code === 2) bits = 4;

  // BITFIELDS masks follow a header too short to hold them.
  const tableEnd = headerEnd + (compression === 'bitfields' && size < 52 ? (code === 6 ? 16 : 12) : 0);
  if (tableEnd > bytes.length) throw fail(`truncated BMP header (${bytes.length} bytes, its bit masks end at byte ${tableEnd})`, 'decode');
  const channels = bits >= 16 ? channelsOf(bitMasks(view, size, bits, code), bits, fail) : [];
  const offset = view.getUint32(10, true);
  if (offset !== 0 && offset < tableEnd) throw fail(`BMP pixel data offset ${offset} lies inside its headers (they end at byte ${tableEnd})`, 'decode');

  const entrySize = os2 ? 3 : 4;
  let colours = os2 ? maxColours : view.getUint32(46, true);
  if (colours === 0 || colours > maxColours) colours = maxColours;
  const palette = new Uint8Array(colours * 3);
  // Some files hold fewer entries than they announce: the rest stay black.
  const present = offset === 0 ? colours : Math.min(colours, Math.floor((offset - tableEnd) / entrySize));
  if (tableEnd + present * entrySize > bytes.length) throw fail('truncated BMP palette', 'decode');
  for (let i = 0; i < present; i++) {
    const at = tableEnd + i * entrySize;
    palette.set([bytes[at + 2], bytes[at + 1], bytes[at]], i * 3);
  }
  const dataOffset = offset === 0 ? tableEnd + present * entrySize : offset;
  return { width, height, topDown, bits, compression, palette, channels, dataOffset };
}

/**
 * BI_RGB implies 5-5-5 at 16 bits and 8-8-8 above. BITFIELDS masks sit in
 * the header (52 bytes and up) or just after a 40-byte one, at the same
 * offsets either way. An alpha mask counts only where the header has one
 * (56 bytes and up) or with ALPHABITFIELDS.
 */
function bitMasks(view: DataView, size: number, bits: number, code: number): number[] {
  const mask = (at: number) => view.getUint32(14 + at, true);
  const alpha = size >= 56 || (code === 6 && size === 40) ? mask(52) : 0;
  if (code !== 3 && code !== 6) return bits === 16 ? [0x7c00, 0x3e0, 0x1f, alpha] : [0xff0000, 0xff00, 0xff, alpha];
  return [mask(40), mask(44), mask(48), alpha];
}

function channelsOf(masks: number[], bits: number, fail: (problem: string) => DecodeError): Channel[] {
  const seen: number[] = [];
  return masks.map((raw, i) => {
    // Bits beyond the pixel's width do not exist: a 16-bit file's alpha mask of 0xff000000 means none.
    const mask = bits < 32 ? raw & ((1 << bits) - 1) : raw >>> 0;
    if (mask === 0) return { mask: 0, shift: 0 };
    const name = ['red', 'green', 'blue', 'alpha'][i];
    if (seen.some((other) => (other & mask) !== 0)) throw fail(`BMP ${name} bit mask 0x${mask.toString(16)} overlaps another channel's`);
    seen.push(mask);
    let shift = 0;
    while (((mask >>> shift) & 1) === 0) shift++;
    let width = 0;
    while (shift + width < 32 && ((mask >>> (shift + width)) & 1) === 1) width++;
    if (shift + width < 32 && mask >>> (shift + width) !== 0) throw fail(`BMP ${name} bit mask 0x${mask.toString(16)} is not one run of bits`);
    if (width >= 8) return { mask, shift: shift + width - 8 };
    const top = 2 ** width - 1;
    return { mask, shift, scale: Uint8Array.from({ length: top + 1 }, (_, v) => Math.round((v * 255) / top)) };
  });
}

export function decodeBmp(path: string, bytes: Uint8Array): RgbaPixels {
  const header = readBmpHeader(path, bytes);
  const { width, height } = header;
  const data = new Uint8Array(width * height * 4);
  if (header.compression === 'rle8' || header.compression === 'rle4') decodeRle(path, bytes, header, data);
  else decodeRows(path, bytes, header, data);
  return { width, height, data };
}

function setIndex(data: Uint8Array, at: number, palette: Uint8Array, index: number): void {
  if (index * 3 < palette.length) {
    data[at] = palette[index * 3];
    data[at + 1] = palette[index * 3 + 1];
    data[at + 2] = palette[index * 3 + 2];
  }
  data[at + 3] = 255;
}

function decodeRows(path: string, bytes: Uint8Array, header: BmpHeader, data: Uint8Array): void {
  const { width, height, bits, palette, channels, dataOffset, topDown } = header;
  const rowBytes = Math.ceil((width * bits) / 32) * 4;
  const needed = rowBytes * height;
  if (dataOffset + needed > bytes.length) {
    throw new DecodeError(path, `truncated BMP pixel data (${Math.max(0, bytes.length - dataOffset)} of ${needed} bytes)`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let anyAlpha = false;
  for (let row = 0; row < height; row++) {
    const y = topDown ? row : height - 1 - row;
    const from = dataOffset + row * rowBytes;
    let at = y * width * 4;
    if (bits < 16) {
      const perByte = 8 / bits;
      const mask = (1 << bits) - 1;
      for (let x = 0; x < width; x++, at += 4) {
        const shift = 8 - bits * ((x % perByte) + 1);
        setIndex(data, at, palette, (bytes[from + Math.floor(x / perByte)] >> shift) & mask);
      }
    } else if (bits === 24) {
      for (let x = 0, src = from; x < width; x++, at += 4, src += 3) {
        data[at] = bytes[src + 2];
        data[at + 1] = bytes[src + 1];
        data[at + 2] = bytes[src];
        data[at + 3] = 255;
      }
    } else {
      for (let x = 0; x < width; x++, at += 4) {
        const pixel = bits === 16 ? view.getUint16(from + x * 2, true) : view.getUint32(from + x * 4, true);
        for (let c = 0; c < 3; c++) data[at + c] = component(pixel, channels[c]);
        data[at + 3] = channels[3].mask === 0 ? 255 : component(pixel, channels[3]);
        anyAlpha ||= data[at + 3] !== 0;
      }
    }
  }
  // Many files leave the alpha bytes at 0 and mean an opaque image: all zero means no alpha.
  if ((bits === 16 || bits === 32) && !anyAlpha) for (let at = 3; at < data.length; at += 4) data[at] = 255;
}

function component(pixel: number, channel: Channel): number {
  const value = (pixel & channel.mask) >>> channel.shift;
  return channel.scale ? channel.scale[value] : value;
}

/**
 * RLE8 and RLE4 as Chromium reads them: rows change only at an end of line or
 * a delta; a run longer than its row is cut at the row's end; an absolute run
 * or a delta past the row or the image is an error; pixels the data skips are
 * opaque black (what Chromium 156 shows: neither transparent nor palette
 * colour 0).
 */
function decodeRle(path: string, bytes: Uint8Array, header: BmpHeader, data: Uint8Array): void {
  const { width, height, palette, topDown, dataOffset } = header;
  const four = header.compression === 'rle4';
  const corrupt = (at: number, problem: string) => new DecodeError(path, `corrupt BMP RLE data at byte ${at} (${problem})`);
  let x = 0;
  /** Rows in file order: 0 is the bottom row of a bottom-up file. */
  let row = 0;
  let at = dataOffset;
  for (let i = 3; i < data.length; i += 4) data[i] = 255;
  const put = (index: number) => {
    setIndex(data, ((topDown ? row : height - 1 - row) * width + x) * 4, palette, index);
    x++;
  };
  for (;;) {
    if (at + 2 > bytes.length) throw new DecodeError(path, 'truncated BMP pixel data (the RLE data ends before its end-of-bitmap marker)');
    const count = bytes[at];
    const code = bytes[at + 1];
    if (count === 0 && code === 1) return;
    if (row >= height) throw corrupt(at, 'data past the last row');
    if (count > 0) {
      const end = Math.min(x + count, width);
      for (let i = 0; x < end; i++) put(four ? (i & 1 ? code & 0xf : code >> 4) : code);
      at += 2;
    } else if (code === 0) {
      x = 0;
      row++;
      at += 2;
    } else if (code === 2) {
      if (at + 4 > bytes.length) throw new DecodeError(path, 'truncated BMP pixel data (the RLE data ends inside a delta)');
      const dx = bytes[at + 2];
      const dy = bytes[at + 3];
      if (x + dx > width || row + dy >= height) throw corrupt(at, `a delta of ${dx},${dy} moves past the image`);
      x += dx;
      row += dy;
      at += 4;
    } else {
      if (x + code > width) throw corrupt(at, `an absolute run of ${code} pixels goes past the end of its row`);
      const length = four ? Math.ceil(code / 2) : code;
      // Absolute runs are padded to a 16-bit boundary.
      const padded = length + (length & 1);
      if (at + 2 + padded > bytes.length) throw new DecodeError(path, 'truncated BMP pixel data (the RLE data ends inside an absolute run)');
      for (let i = 0; i < code; i++) {
        const byte = bytes[at + 2 + (four ? i >> 1 : i)];
        put(four ? (i & 1 ? byte & 0xf : byte >> 4) : byte);
      }
      at += 2 + padded;
    }
  }
}
