/**
 * Whether a WebGPU adapter is real graphics hardware. Browsers without a
 * usable GPU offer a software adapter (Chromium's SwiftShader), and Dawn in
 * Node runs on Mesa's lavapipe (llvmpipe): WebGPU then works but runs on the
 * CPU, several times slower than the wasm backend (README, "Speed"), so
 * automatic choices skip it and no wording may call it a graphics card.
 */

/** The fields of GPUAdapterInfo this looks at; older browsers lack isFallbackAdapter. */
export interface AdapterInfoLike {
  vendor?: string;
  architecture?: string;
  device?: string;
  description?: string;
  isFallbackAdapter?: boolean;
}

const SOFTWARE_RENDERERS: [RegExp, string][] = [
  [/swiftshader/i, 'SwiftShader'],
  [/lavapipe/i, 'lavapipe'],
  [/llvmpipe/i, 'llvmpipe'],
  [/basic render driver|\bwarp\b/i, 'Microsoft Basic Render Driver'],
];

/**
 * The software renderer behind the adapter, by name ('SwiftShader'), or
 * undefined for a hardware adapter.
 */
export function softwareAdapter(info: AdapterInfoLike): string | undefined {
  const text = [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ');
  const known = SOFTWARE_RENDERERS.find(([pattern]) => pattern.test(text));
  if (known) return known[1];
  if (/\bsoftware\b/i.test(text)) return text;
  return info.isFallbackAdapter ? "the browser's fallback adapter" : undefined;
}

/**
 * Why the automatic choice leaves this adapter for WebAssembly, or undefined
 * when it takes it. The adapter asked for is the best the platform has, so a
 * software one is the only one.
 */
export function autoSkipsAdapter(info: AdapterInfoLike): string | undefined {
  const software = softwareAdapter(info);
  if (software === undefined) return undefined;
  return `the only WebGPU adapter is a software one (${software}), slower than WebAssembly here`;
}
