// Number and time formatting for the tables and KPIs.

export function int(n) {
  return Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '–';
}

export function fixed(n, digits = 1) {
  return Number.isFinite(n) ? n.toFixed(digits) : '–';
}

export function percent(x) {
  return Number.isFinite(x) ? `${Math.round(x * 100)}%` : '–';
}

/// "0 ms", "850 ms", "12 s", "3 min" for a duration in milliseconds.
export function ago(ms) {
  if (!Number.isFinite(ms)) return '–';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 120000) return `${Math.round(ms / 1000)} s`;
  return `${Math.round(ms / 60000)} min`;
}
