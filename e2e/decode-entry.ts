/** What e2e/decode.spec.ts runs in a worker of Chromium: the studio's decoder, and the core's decoding and mask PNG writer it is used through. */
export { BitmapDecoder } from '../src/worker/decode.ts';
export { decodeImage } from '../src/core/image/decode.ts';
export { maskPng } from '../src/core/image/png.ts';
