/**
 * Reads one sample through the host's FileSource and PixelDecoder and hands
 * back 8-bit pixels at the training size: RGB for the image, 0/1 for the mask.
 * Problems that still leave a usable pair (an EXIF orientation left unapplied,
 * a mask of another size but the same aspect, grey or colour values, nothing
 * or everything marked) become warnings naming the file; unreadable files,
 * and a mask of another aspect ratio than its image, throw.
 */
import { LesionError } from '../errors.ts';
import { decodeImage } from '../image/decode.ts';
import type { BinaryMask, Decoded, FileSource, PixelDecoder, RgbImage, RgbaPixels } from '../io.ts';
import type { Sample } from './layouts.ts';

export interface Size {
  width: number;
  height: number;
}

export interface SampleWarning {
  /** The file at fault: the image or its mask. */
  file: string;
  /** Starts with the file's path. */
  message: string;
}

export interface LoadedSample {
  image: RgbImage;
  mask?: BinaryMask;
  /** The image file's own size. */
  sourceWidth: number;
  sourceHeight: number;
  warnings: SampleWarning[];
}

/** What each EXIF orientation but 1 (as stored) asks a viewer to do to the stored pixels. */
const ORIENTATIONS: Record<number, string> = {
  2: 'mirror left to right',
  3: 'rotate 180°',
  4: 'mirror top to bottom',
  5: 'mirror left to right, then rotate 270° CW',
  6: 'rotate 90° CW',
  7: 'mirror left to right, then rotate 90° CW',
  8: 'rotate 270° CW',
};

/**
 * Masks and predictions live on the stored pixel grid (as PIL and the ISIC
 * scorer read it), so a photograph's orientation tag is not applied; this
 * says so, naming the file, when it asked for anything but "as stored".
 */
function orientationWarning(path: string, decoded: Decoded): string | undefined {
  if (decoded.orientation === 1) return undefined;
  return `${path}: EXIF orientation ${decoded.orientation} (${ORIENTATIONS[decoded.orientation]}) ignored; pixels are used as stored, like the ISIC masks`;
}

export async function loadSample(
  sample: Sample,
  source: FileSource,
  decoder: PixelDecoder,
  size: Size,
): Promise<LoadedSample> {
  const maskPath = sample.mask;
  const [imageBytes, maskBytes] = await Promise.all([
    source.read(sample.image),
    maskPath === undefined ? undefined : source.read(maskPath),
  ]);
  const loaded: LoadedSample = await loadImage(sample.image, imageBytes, decoder, size);
  const warn = (file: string, problem: string) => loaded.warnings.push({ file, message: `${file}: ${problem}` });
  if (maskPath === undefined || maskBytes === undefined) return loaded;

  // Both go to the target size independently, so a mask of another size
  // lines up with its image once resized.
  const mask = await readMask(maskPath, maskBytes, decoder, size);
  const mismatch = maskAspectError(maskPath, mask, loaded);
  if (mismatch) throw mismatch;
  if (mask.sourceWidth !== loaded.sourceWidth || mask.sourceHeight !== loaded.sourceHeight) {
    warn(
      maskPath,
      `mask is ${mask.sourceWidth}x${mask.sourceHeight} but its image is ` +
        `${loaded.sourceWidth}x${loaded.sourceHeight}; resized to ${size.width}x${size.height} with nearest neighbour`,
    );
  }
  for (const message of mask.warnings) loaded.warnings.push({ file: maskPath, message });
  loaded.mask = mask.mask;
  return loaded;
}

/**
 * Whether a w x h mask is the W x H one at another scale, each side rounded
 * (or truncated) on either the mask or the image: then one scale factor s
 * gives |w - sW| <= 1 and |h - sH| <= 1 (or the same the other way round),
 * which is |wH - hW| <= W + H (or w + h). A 90° turn of a W x H image fails
 * it unless its sides differ by at most a pixel.
 */
export function sameAspect(w: number, h: number, W: number, H: number): boolean {
  return Math.abs(w * H - h * W) <= Math.max(w + h, W + H);
}

/**
 * The error that leaves a pair out when its mask has another aspect ratio
 * than its image: stretching a mask stored rotated by 90° would train and
 * score on a mask that does not lie on its lesion.
 */
export function maskAspectError(maskPath: string, mask: { sourceWidth: number; sourceHeight: number }, image: { sourceWidth: number; sourceHeight: number }): LesionError | undefined {
  if (sameAspect(mask.sourceWidth, mask.sourceHeight, image.sourceWidth, image.sourceHeight)) return undefined;
  return new LesionError(
    'dataset',
    `mask is ${mask.sourceWidth}x${mask.sourceHeight} but its image is ${image.sourceWidth}x${image.sourceHeight}, ` +
      'another aspect ratio (rotated, transposed or cropped?); the pair is left out',
    maskPath,
  );
}

/**
 * One image file, read the one way every image is read (training, scoring,
 * ranking, and a file the user hands the Predict view): decoded, resized
 * bilinearly to `size`, RGB, with the orientation tag's warning.
 */
export async function loadImage(path: string, bytes: Uint8Array, decoder: PixelDecoder, size: Size): Promise<LoadedSample> {
  const image = await decodeImage(decoder, path, bytes, { ...size, filter: 'bilinear' });
  const tag = orientationWarning(path, image);
  return {
    image: rgbaToRgb(image.pixels),
    sourceWidth: image.sourceWidth,
    sourceHeight: image.sourceHeight,
    warnings: tag ? [{ file: path, message: tag }] : [],
  };
}

export interface ReadMask {
  mask: BinaryMask;
  /** The file's own size, before any resize. */
  sourceWidth: number;
  sourceHeight: number;
  /** What binariseMask found odd and any orientation tag ignored, each prefixed with the file. */
  warnings: string[];
}

/**
 * One mask file, read the one way every mask is read (expert masks for
 * training and scoring, and predictions scored by eval): decoded, resized to
 * `size` when given with nearest neighbour (which keeps it binary), and
 * binarised by binariseMask.
 */
export async function readMask(path: string, bytes: Uint8Array, decoder: PixelDecoder, size?: Size): Promise<ReadMask> {
  const decoded = await decodeImage(decoder, path, bytes, size && { ...size, filter: 'nearest' });
  const { mask, warning } = binariseMask(decoded.pixels);
  const warnings = [orientationWarning(path, decoded), warning && `${path}: ${warning}`].filter((w): w is string => Boolean(w));
  return { mask, sourceWidth: decoded.sourceWidth, sourceHeight: decoded.sourceHeight, warnings };
}

export function rgbaToRgb(pixels: RgbaPixels): RgbImage {
  const count = pixels.width * pixels.height;
  const data = new Uint8Array(count * 3);
  for (let i = 0; i < count; i++) {
    data[i * 3] = pixels.data[i * 4];
    data[i * 3 + 1] = pixels.data[i * 4 + 1];
    data[i * 3 + 2] = pixels.data[i * 4 + 2];
  }
  return { width: pixels.width, height: pixels.height, data };
}

const LESION_ABOVE = 128;

/**
 * A pixel is lesion when the brightest of its R, G, B is above 128, the ISIC
 * scorer's `> 128` (so 128, where the average of two binary masks ties, is
 * background), and grey, RGB and colour-coded masks all work. Masks stored as
 * 0/1 (common outside ISIC) would come out empty that way, so a mask made
 * only of 0 and 1 counts 1 as lesion, as the scorer does for ground truth.
 * The value check runs on the pixels at the target size. Every oddity found
 * goes into one warning, so a mask is reported once.
 */
export function binariseMask(pixels: RgbaPixels): { mask: BinaryMask; warning?: string } {
  const count = pixels.width * pixels.height;
  const values = new Uint8Array(count);
  let lesion = 0;
  let nonBinary = 0;
  let coloured = 0;
  let onlyZeroOne = true;
  for (let i = 0; i < count; i++) {
    const at = i * 4;
    const r = pixels.data[at];
    const g = pixels.data[at + 1];
    const b = pixels.data[at + 2];
    const v = Math.max(r, g, b);
    values[i] = v;
    if (v > LESION_ABOVE) lesion++;
    if (v !== 0 && v !== 255) nonBinary++;
    if (r !== g || g !== b) coloured++;
    if (v > 1) onlyZeroOne = false;
  }
  const zeroOne = onlyZeroOne && lesion === 0 && nonBinary > 0;
  const threshold = zeroOne ? 0 : LESION_ABOVE;
  lesion = 0;
  for (let i = 0; i < count; i++) {
    values[i] = values[i] > threshold ? 1 : 0;
    lesion += values[i];
  }
  const mask = { width: pixels.width, height: pixels.height, data: values };
  const problems: string[] = [];
  if (zeroOne) problems.push('mask is stored as 0/1 instead of 0/255; 1 taken as lesion');
  else if (coloured > 0) {
    problems.push(`mask is in colour (${coloured} of ${count} pixels are not grey); lesion where the brightest channel is >${LESION_ABOVE}`);
  } else if (nonBinary > 0) {
    problems.push(`mask is not binary (${nonBinary} of ${count} pixels are neither 0 nor 255); binarised at >${LESION_ABOVE}`);
  }
  // Kept: an all-background or all-lesion example is legitimate, but more often a wrong file.
  if (lesion === 0) problems.push('mask is empty (no lesion pixel); kept as an all-background example');
  else if (lesion === count) problems.push('mask covers the whole image (every pixel is lesion); kept as an all-lesion example');
  return problems.length > 0 ? { mask, warning: problems.join('; ') } : { mask };
}
