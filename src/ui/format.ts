/** Numbers as people read them in the studio's tables and progress lines. */
export function formatDuration(seconds: number | undefined): string {
  if (seconds === undefined || !Number.isFinite(seconds)) return '—';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(s % 60).padStart(2, '0')} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, '0')} min`;
}

/** Metrics as percentages with one decimal, the way papers report them. */
export function percent(value: number | undefined): string {
  return value === undefined || !Number.isFinite(value) ? '—' : `${(value * 100).toFixed(1)} %`;
}

/** A difference of two figures in percentage points, signed: "+1.4", "−0.3". */
export function points(value: number | undefined): string {
  if (value === undefined || !Number.isFinite(value)) return '—';
  const p = (value * 100).toFixed(1);
  return value >= 0 ? `+${p}` : `−${p.slice(1)}`;
}

/** A 95 % interval of a figure ("[61.2, 70.3] %") or, with `signed`, of a difference in points ("[−1.2, +3.4]"). */
export function interval(ci: readonly [number, number] | undefined, signed = true): string {
  if (!ci || !Number.isFinite(ci[0]) || !Number.isFinite(ci[1])) return '';
  return signed ? `[${points(ci[0])}, ${points(ci[1])}]` : `[${(ci[0] * 100).toFixed(1)}, ${(ci[1] * 100).toFixed(1)}] %`;
}

/** A p-value to two significant digits, or "< 0.001". */
export function pValue(p: number | undefined): string {
  if (p === undefined || !Number.isFinite(p)) return '—';
  return p < 0.001 ? '< 0.001' : p.toPrecision(2);
}
