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

/** How a host resizes while decoding; masks always use nearest. */
export type ResizeFilter = 'bilinear' | 'nearest';

export interface DecodeRequest {
  /** Relative path, used only in error messages. */
  path: string;
  bytes: Uint8Array;
  /** Resize target; omitted means keep the original size. */
  resize?: { width: number; height: number; filter: ResizeFilter };
}

export interface Decoded {
  pixels: RgbaPixels;
  /** The file's own size before any resize. */
  sourceWidth: number;
  sourceHeight: number;
  /** The file's EXIF orientation (1 to 8, 1 when it has none), which decoders do not apply. */
  orientation: number;
}

/**
 * Decodes JPEG, PNG and BMP. Implementations must never materialise a
 * full-size float copy: decode to 8-bit, resize in 8-bit. Pixels come as
 * stored, whatever the EXIF orientation: ISIC masks are drawn on the stored
 * grid. A bad file rejects with a DecodeError naming it.
 */
export interface PixelDecoder {
  decode(request: DecodeRequest): Promise<Decoded>;
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
