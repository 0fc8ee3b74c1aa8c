/**
 * The small interfaces through which the core talks to its host (the browser
 * worker, the Node CLI, tests). Nothing here touches the DOM, fs or IndexedDB.
 */

/** Interleaved RGB, 8 bits per channel: length = width * height * 3. */
export interface RgbImage {
  width: number;
  height: number;
  data: Uint8Array;
}

/** One byte per pixel, exactly 0 (background) or 1 (lesion): length = width * height. */
export interface BinaryMask {
  width: number;
  height: number;
  data: Uint8Array;
}

/** Interleaved RGBA as decoders hand it out: length = width * height * 4. */
export interface RgbaPixels {
  width: number;
  height: number;
  data: Uint8Array | Uint8ClampedArray;
}

/** How the core resizes decoded pixels; masks always use nearest. */
export type ResizeFilter = 'bilinear' | 'nearest';

/** What a host decodes itself: the core reads PNG (fast-png) in every host. */
export type HostFormat = 'JPEG' | 'BMP';

export interface DecodeRequest {
  /** Relative path, used only in error messages. */
  path: string;
  /** The file's bytes without its EXIF blocks, already checked against its header's declared size. */
  bytes: Uint8Array;
  format: HostFormat;
}

/** An image file as the core hands it on: decoded by the host, resized by the core. */
export interface Decoded {
  pixels: RgbaPixels;
  /** The file's own size before any resize. */
  sourceWidth: number;
  sourceHeight: number;
  /** The file's EXIF orientation (1 to 8, 1 when it has none), which is never applied. */
  orientation: number;
}

/**
 * A host's decoder for JPEG and BMP, at the file's full size, to 8-bit RGBA
 * as stored (no colour management, no orientation). Resizing and RGB
 * conversion happen afterwards in the core (image/decode.ts, loader.ts), the
 * same code for both hosts, so that one card trains on the same pixels in
 * each. A bad file rejects with a DecodeError naming it.
 */
export interface PixelDecoder {
  decode(request: DecodeRequest): Promise<RgbaPixels>;
}

/** Read access to a set of files addressed by relative '/'-separated paths. */
export interface FileSource {
  /** Every file path below the root(s), relative, '/'-separated. */
  list(): Promise<string[]>;
  read(path: string): Promise<Uint8Array>;
}

/** Values are structured-clonable (plain objects, typed arrays, ArrayBuffers). */
export interface KeyValueStore {
  get<T>(key: string): Promise<T | undefined>;
  set(key: string, value: unknown): Promise<void>;
  delete(key: string): Promise<void>;
  keys(prefix?: string): Promise<string[]>;
  /** Bytes held under a prefix, where the store can count them without handing each value out (IndexedDB's cursor). */
  bytesUnder?(prefix: string): Promise<number>;
}
