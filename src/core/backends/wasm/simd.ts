/**
 * The training loops tfjs-wasm runs slowly (batch norm, activation
 * gradients, the optimiser) or not at all (the depthwise filter gradient) as
 * WebAssembly SIMD, running on tfjs-wasm's own heap. The same loops written in TypeScript over
 * the heap ran at 7-15 ms per 1.5 M values, against 0.5-1 ms for tfjs-wasm's
 * own element-wise kernels: a typed-array loop gets neither vector lanes nor
 * freedom from bounds checks. No compiler is involved: the module is a few
 * hundred bytes assembled here, so it needs no build step and no binary in
 * the repository, and it imports the backend's memory instead of copying.
 *
 * Every loop walks channels four at a time, then the last `c % 4` one by
 * one, with one description of the arithmetic for both widths. Sums go into double-precision accumulators in a fixed order, so a
 * resumed run repeats its steps bit for bit.
 */

type Bytes = number[];

function uleb(n: number): Bytes {
  const out: Bytes = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n) byte |= 0x80;
    out.push(byte);
  } while (n);
  return out;
}

function sleb(n: number): Bytes {
  const out: Bytes = [];
  for (;;) {
    const byte = n & 0x7f;
    n >>= 7;
    if ((n === 0 && !(byte & 0x40)) || (n === -1 && byte & 0x40)) return [...out, byte];
    out.push(byte | 0x80);
  }
}

const vec = (s: string): Bytes => [...uleb(s.length), ...Array.from(s, (ch) => ch.charCodeAt(0))];
const section = (id: number, body: Bytes): Bytes => [id, ...uleb(body.length), ...body];
const list = (items: Bytes[]): Bytes => [...uleb(items.length), ...items.flat()];

const I32 = 0x7f;
const F32 = 0x7d;

// The instructions the kernels use (core and SIMD opcodes of the WebAssembly spec).
const get = (i: number): Bytes => [0x20, ...uleb(i)];
const set = (i: number): Bytes => [0x21, ...uleb(i)];
const i32 = (n: number): Bytes => [0x41, ...sleb(n)];
const simd = (op: number, ...imm: number[]): Bytes => [0xfd, ...uleb(op), ...imm];
const OP = {
  add: 0x6a,
  mul: 0x6c,
  shl: 0x74,
  ltU: 0x49,
  geU: 0x4f,
  brIf: 0x0d,
  end: 0x0b,
  select: 0x1b,
  f32Load: 0x2a,
  f64Load: 0x2b,
  f32Store: 0x38,
  f64Store: 0x39,
  f32Lt: 0x5d,
  f32Gt: 0x5e,
  f32Le: 0x5f,
  f32Ge: 0x60,
  f32Add: 0x92,
  f32Sub: 0x93,
  f32Mul: 0x94,
  f64Add: 0xa0,
  f64Sub: 0xa1,
  f64Mul: 0xa2,
  f64Promote: 0xbb,
} as const;
const V = { load: 0x00, store: 0x0b, shuffle: 0x0d, f32Splat: 0x13, f32Gt: 0x44, f32Le: 0x45, f32Ge: 0x46, and: 0x4e, promoteLow: 0x5f, f32Add: 0xe4, f32Sub: 0xe5, f32Mul: 0xe6, f64Add: 0xf0, f64Sub: 0xf1, f64Mul: 0xf2 } as const;
const MEMARG = [0, 0];

/** `while (local a < local b) { body }` */
function whileBelow(a: number, b: number, body: Bytes): Bytes {
  return [0x02, 0x40, ...get(a), ...get(b), OP.geU, OP.brIf, 0, 0x03, 0x40, ...body, ...get(a), ...get(b), OP.ltU, OP.brIf, 0, OP.end, OP.end];
}

/**
 * One of the arithmetic's two widths: four f32 lanes in a v128, or one f32.
 * f64 values are two f64x2 (low and high pair of lanes) or one f64.
 */
interface Width {
  bytes: number;
  /** f32 values at `base + offset`. */
  load(base: number, offset: number): Bytes;
  /** f32 value(s) on the stack, to `base + offset`, through a scratch local. */
  store(base: number, offset: number, value: Bytes): Bytes;
  /** The f32 constant held by local `i`. */
  splat(i: number): Bytes;
  add: Bytes;
  sub: Bytes;
  mul: Bytes;
  /** f64 lanes of `f32` (one stack value) that `lane` picks: the low or high pair. */
  promote(f32: Bytes, lane: 0 | 1): Bytes;
  /** f64 values at `base + 2 * offset` (+16 for the high pair). */
  load64(base: number, offset: number, lane: 0 | 1): Bytes;
  /** Adds the f64 value(s) on the stack into memory at `base + 2 * offset`. */
  accumulate64(base: number, offset: number, lane: 0 | 1, value: Bytes): Bytes;
  add64: Bytes;
  sub64: Bytes;
  mul64: Bytes;
  lanes: (0 | 1)[];
  /** Keeps `value` where `mask` holds, else +0. */
  keep(value: Bytes, mask: Bytes): Bytes;
  gt: Bytes;
  ge: Bytes;
  le: Bytes;
}

/** base + offset (scaled by 2 for float64 arrays indexed by a float32 offset) + extra; an offset of -1 is none. */
const address = (base: number, offset: number, scale = 1, extra = 0): Bytes => [
  ...get(base),
  ...(offset < 0 ? [] : [...get(offset), ...(scale === 2 ? [...i32(1), OP.shl] : []), OP.add]),
  ...(extra ? [...i32(extra), OP.add] : []),
];

const SIMD: Width = {
  bytes: 16,
  load: (base, offset) => [...address(base, offset), ...simd(V.load, ...MEMARG)],
  store: (base, offset, value) => [...address(base, offset), ...value, ...simd(V.store, ...MEMARG)],
  splat: (i) => [...get(i), ...simd(V.f32Splat)],
  add: simd(V.f32Add),
  sub: simd(V.f32Sub),
  mul: simd(V.f32Mul),
  promote: (f32, lane) =>
    lane === 0
      ? [...f32, ...simd(V.promoteLow)]
      : [...f32, ...f32, ...simd(V.shuffle, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7), ...simd(V.promoteLow)],
  load64: (base, offset, lane) => [...address(base, offset, 2, lane * 16), ...simd(V.load, ...MEMARG)],
  accumulate64: (base, offset, lane, value) => [
    ...address(base, offset, 2, lane * 16),
    ...address(base, offset, 2, lane * 16),
    ...simd(V.load, ...MEMARG),
    ...value,
    ...simd(V.f64Add),
    ...simd(V.store, ...MEMARG),
  ],
  add64: simd(V.f64Add),
  sub64: simd(V.f64Sub),
  mul64: simd(V.f64Mul),
  lanes: [0, 1],
  keep: (value, mask) => [...value, ...mask, ...simd(V.and)],
  gt: simd(V.f32Gt),
  ge: simd(V.f32Ge),
  le: simd(V.f32Le),
};

const SCALAR: Width = {
  bytes: 4,
  load: (base, offset) => [...address(base, offset), OP.f32Load, 2, 0],
  store: (base, offset, value) => [...address(base, offset), ...value, OP.f32Store, 2, 0],
  splat: (i) => get(i),
  add: [OP.f32Add],
  sub: [OP.f32Sub],
  mul: [OP.f32Mul],
  promote: (f32) => [...f32, OP.f64Promote],
  load64: (base, offset) => [...address(base, offset, 2), OP.f64Load, 3, 0],
  accumulate64: (base, offset, _lane, value) => [...address(base, offset, 2), ...address(base, offset, 2), OP.f64Load, 3, 0, ...value, OP.f64Add, OP.f64Store, 3, 0],
  add64: [OP.f64Add],
  sub64: [OP.f64Sub],
  mul64: [OP.f64Mul],
  lanes: [0],
  // +0 where the mask fails, as the vector's bitwise and gives.
  keep: (value, mask) => [...value, 0x43, 0, 0, 0, 0, ...mask, OP.select],
  gt: [OP.f32Gt],
  ge: [OP.f32Ge],
  le: [OP.f32Le],
};

interface Kernel {
  name: string;
  /** Pointer and size parameters (i32), then f32 constants. */
  params: number;
  f32Params?: number;
  /**
   * The arithmetic for one step, at either width: `row` is the local with the
   * byte offset of the current values in the [rows, c] arrays, `ch` that of
   * the current channel in the per-channel ones.
   */
  step(w: Width, row: number, ch: number): Bytes;
}

/**
 * A kernel's function: its first two i32 parameters are the count of rows
 * and of channels; the body walks every row, four channels at a time, then
 * the rest one at a time.
 */
interface Assembled {
  name: string;
  type: Bytes;
  body: Bytes;
}

function rowsByChannels(kernel: Kernel): Assembled {
  const [rows, c] = [0, 1];
  const nParams = kernel.params + (kernel.f32Params ?? 0);
  const [row, ch, end, vecEnd, chEnd] = [0, 1, 2, 3, 4].map((i) => nParams + i);
  const type = [0x60, ...list([...Array(kernel.params).fill([I32]), ...Array(kernel.f32Params ?? 0).fill([F32])]), 0];
  const widthLoop = (w: Width, limit: number) =>
    whileBelow(ch, limit, [...kernel.step(w, row, ch), ...get(row), ...i32(w.bytes), OP.add, ...set(row), ...get(ch), ...i32(w.bytes), OP.add, ...set(ch)]);
  const body = [
    ...list([[5, I32]]),
    // end = rows * c * 4; vecEnd = (c & ~3) * 4; chEnd = c * 4
    ...get(rows), ...get(c), OP.mul, ...i32(2), OP.shl, ...set(end),
    ...get(c), ...i32(-4), 0x71, ...i32(2), OP.shl, ...set(vecEnd),
    ...get(c), ...i32(2), OP.shl, ...set(chEnd),
    ...whileBelow(row, end, [
      ...i32(0), ...set(ch),
      ...widthLoop(SIMD, vecEnd),
      ...widthLoop(SCALAR, chEnd),
    ]),
    OP.end,
  ];
  return { name: kernel.name, type, body };
}

const V128 = 0x7b;

/**
 * channelDots(n, c, x, xStride, dy, dyStride, acc64): for every channel k,
 * acc64[k] += sum over t < n of x[t * xStride + k] * dy[t * dyStride + k]
 * (strides in bytes). The n products of a channel are summed in a register
 * (float32), then added to the double-precision accumulator: a depthwise
 * filter gradient calls it once per tap and row of output pixels.
 */
function channelDots(): Assembled {
  const [n, c, x, xStride, dy, dyStride, acc] = [0, 1, 2, 3, 4, 5, 6];
  const [ch, t, px, pd, vecEnd, chEnd, sumV, sumS] = [7, 8, 9, 10, 11, 12, 13, 14];
  const ZERO = [0x43, 0, 0, 0, 0];
  const advance = (local: number, by: number): Bytes => [...get(local), ...get(by), OP.add, ...set(local)];
  const step = (local: number, by: number): Bytes => [...get(local), ...i32(by), OP.add, ...set(local)];
  const width = (w: Width, sum: number, zero: Bytes, limit: number): Bytes =>
    whileBelow(ch, limit, [
      ...zero, ...set(sum),
      ...get(x), ...get(ch), OP.add, ...set(px),
      ...get(dy), ...get(ch), OP.add, ...set(pd),
      ...i32(0), ...set(t),
      ...whileBelow(t, n, [
        ...get(sum), ...w.load(px, -1), ...w.load(pd, -1), ...w.mul, ...w.add, ...set(sum),
        ...advance(px, xStride), ...advance(pd, dyStride), ...step(t, 1),
      ]),
      ...w.lanes.flatMap((lane) => w.accumulate64(acc, ch, lane, w.promote(get(sum), lane))),
      ...step(ch, w.bytes),
    ]);
  const body = [
    ...list([[6, I32], [1, V128], [1, F32]]),
    ...get(c), ...i32(-4), 0x71, ...i32(2), OP.shl, ...set(vecEnd),
    ...get(c), ...i32(2), OP.shl, ...set(chEnd),
    ...i32(0), ...set(ch),
    ...width(SIMD, sumV, [...ZERO, ...simd(V.f32Splat)], vecEnd),
    ...width(SCALAR, sumS, ZERO, chEnd),
    OP.end,
  ];
  return { name: 'channelDots', type: [0x60, ...list(Array(7).fill([I32])), 0], body };
}

// Parameter indices: 0 rows, 1 c, then each kernel's pointers (byte offsets), then its f32 constants.
const KERNELS: Kernel[] = [
  {
    // ReLU's gradient: dy where x > lo.  (rows, c, dy, x, out, lo)
    name: 'reluGrad',
    params: 5,
    f32Params: 1,
    step: (w, row) => w.store(4, row, w.keep(w.load(2, row), [...w.load(3, row), ...w.splat(5), ...w.gt])),
  },
  {
    // A clip's gradient: dy where lo <= x <= hi.  (rows, c, dy, x, out, lo, hi)
    name: 'clipGrad',
    params: 5,
    f32Params: 2,
    step: (w, row) =>
      w.store(
        4,
        row,
        w.keep(w.keep(w.load(2, row), [...w.load(3, row), ...w.splat(5), ...w.ge]) as Bytes, [...w.load(3, row), ...w.splat(6), ...w.le]),
      ),
  },
  {
    // acc[k] += x[r, k]  (rows, c, x, acc64)
    name: 'sumRows',
    params: 4,
    step: (w, row, ch) => w.lanes.flatMap((lane) => w.accumulate64(3, ch, lane, w.promote(w.load(2, row), lane))),
  },
  {
    // acc[k] += (x[r, k] - mean[k])^2  (rows, c, x, mean64, acc64)
    name: 'sumSquaredDeviations',
    params: 5,
    step: (w, row, ch) =>
      w.lanes.flatMap((lane) => {
        const dev = [...w.promote(w.load(2, row), lane), ...w.load64(3, ch, lane), ...w.sub64];
        return w.accumulate64(4, ch, lane, [...dev, ...dev, ...w.mul64]);
      }),
  },
  {
    // y = (x - mean) * scale + beta  (rows, c, x, out, mean, scale, beta)
    name: 'normalize',
    params: 7,
    step: (w, row, ch) => w.store(3, row, [...w.load(2, row), ...w.load(4, ch), ...w.sub, ...w.load(5, ch), ...w.mul, ...w.load(6, ch), ...w.add]),
  },
  {
    // s0[k] += dy; s1[k] += dy * (x - mean)  (rows, c, dy, x, mean64, s0, s1)
    name: 'gradSums',
    params: 7,
    step: (w, row, ch) =>
      w.lanes.flatMap((lane) => [
        ...w.accumulate64(5, ch, lane, w.promote(w.load(2, row), lane)),
        ...w.accumulate64(6, ch, lane, [...w.promote(w.load(2, row), lane), ...w.promote(w.load(3, row), lane), ...w.load64(4, ch, lane), ...w.sub64, ...w.mul64]),
      ]),
  },
  {
    // dx = scale * dy - slope * (x - mean) - offset  (rows, c, dy, x, out, mean, scale, slope, offset)
    name: 'gradInput',
    params: 9,
    step: (w, row, ch) =>
      w.store(4, row, [
        ...w.load(6, ch), ...w.load(2, row), ...w.mul,
        ...w.load(7, ch), ...w.load(3, row), ...w.load(5, ch), ...w.sub, ...w.mul,
        ...w.sub,
        ...w.load(8, ch),
        ...w.sub,
      ]),
  },
  {
    // torch.optim.SGD with momentum: d = g + wd * w; b = momentum * buf + d; w -= lr * b.
    // (rows, c, g, w, buf, outW, outBuf, lr, momentum, wd); momentum 0 starts the buffer at d.
    name: 'sgdMomentum',
    params: 7,
    f32Params: 3,
    step: (w, row) => {
      const buffer = [...w.load(4, row), ...w.splat(8), ...w.mul, ...w.load(2, row), ...w.load(3, row), ...w.splat(9), ...w.mul, ...w.add, ...w.add];
      return [...w.store(6, row, buffer), ...w.store(5, row, [...w.load(3, row), ...buffer, ...w.splat(7), ...w.mul, ...w.sub])];
    },
  },
];

/** The module, importing a memory that is shared (tfjs-wasm's threaded build) or not. */
function assemble(shared: boolean): Uint8Array<ArrayBuffer> {
  const functions = [...KERNELS.map(rowsByChannels), channelDots()];
  const limits = shared ? [0x03, 0, ...uleb(65536)] : [0x00, 0];
  return Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0,
    ...section(1, list(functions.map((f) => f.type))),
    ...section(2, list([[...vec('env'), ...vec('memory'), 0x02, ...limits]])),
    ...section(3, list(functions.map((_, i) => uleb(i)))),
    ...section(7, list(functions.map((f, i) => [...vec(f.name), 0x00, ...uleb(i)]))),
    ...section(10, list(functions.map((f) => [...uleb(f.body.length), ...f.body]))),
  ]);
}

/** Pointers are byte offsets into the heap; every array is float32 except the ones named 64 (float64). */
export interface SimdKernels {
  reluGrad(rows: number, c: number, dy: number, x: number, out: number, lo: number): void;
  clipGrad(rows: number, c: number, dy: number, x: number, out: number, lo: number, hi: number): void;
  sumRows(rows: number, c: number, x: number, acc64: number): void;
  sumSquaredDeviations(rows: number, c: number, x: number, mean64: number, acc64: number): void;
  normalize(rows: number, c: number, x: number, out: number, mean: number, scale: number, beta: number): void;
  gradSums(rows: number, c: number, dy: number, x: number, mean64: number, s0: number, s1: number): void;
  gradInput(rows: number, c: number, dy: number, x: number, out: number, mean: number, scale: number, slope: number, offset: number): void;
  sgdMomentum(rows: number, c: number, g: number, w: number, buf: number, outW: number, outBuf: number, lr: number, momentum: number, weightDecay: number): void;
  channelDots(n: number, c: number, x: number, xStride: number, dy: number, dyStride: number, acc64: number): void;
}

const instances = new WeakMap<WebAssembly.Memory, SimdKernels>();

/** What the kernels need of tfjs-wasm's Emscripten module. */
export interface EmscriptenHeap {
  wasmMemory?: WebAssembly.Memory;
  asm: { memory?: WebAssembly.Memory };
  _malloc(bytes: number): number;
  _free(pointer: number): void;
}

/** The module's heap: the threaded build imports its memory (and exports it as wasmMemory), the others export it from the instance. */
export function heapMemory(module: EmscriptenHeap): WebAssembly.Memory {
  return module.wasmMemory ?? module.asm.memory!;
}

/**
 * The kernels over `memory` (tfjs-wasm's heap), instantiated once. Throws
 * where the browser has no WebAssembly SIMD (Safari before 16.4): the wasm
 * backend then cannot train here, and the studio falls back to WebGL.
 */
export function simdKernels(memory: WebAssembly.Memory): SimdKernels {
  let kernels = instances.get(memory);
  if (!kernels) {
    const bytes = assemble(typeof SharedArrayBuffer !== 'undefined' && memory.buffer instanceof SharedArrayBuffer);
    if (!WebAssembly.validate(bytes)) {
      throw new Error('training on WebAssembly needs WebAssembly SIMD, which this browser lacks (Chrome 91+, Firefox 89+, Safari 16.4+ have it)');
    }
    const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: { memory } });
    kernels = instance.exports as unknown as SimdKernels;
    instances.set(memory, kernels);
  }
  return kernels;
}
