// Colours of node states and load, shared by the map and its legend.

/// Every node state of the snapshot, in the order the legend lists them.
export const STATES = ['joining', 'active', 'draining', 'cordoned', 'suspect', 'dead', 'gone'];

/// Colours of the states that do not depend on load. `active` is coloured by load (loadColor).
/// app.css repeats them for the dots (a CSS rule beats the dot's `fill` attribute, so a node
/// that leaves `active` changes colour without touching its fill).
export const STATE_COLORS = {
  joining: '#4aa3df',
  draining: '#a66bd3',
  cordoned: '#8a94a6',
  suspect: '#ffd400',
  dead: '#111111',
  gone: '#5b6475',
};

// Load stops: green while there is room, orange past 60%, red when full.
const LOAD_STOPS = [
  [0.0, [46, 204, 113]],
  [0.6, [243, 156, 18]],
  [0.9, [231, 76, 60]],
  [1.0, [192, 57, 43]],
];
// Loads are quantised so that noise in the cpu figure does not rewrite 2000 fills a second.
const LOAD_STEPS = 50;
const cache = new Map();

/// The colour of an active node with `load` in 0..1 (values outside are clamped).
export function loadColor(load) {
  const q = Math.round(Math.min(1, Math.max(0, Number(load) || 0)) * LOAD_STEPS);
  let color = cache.get(q);
  if (color) return color;
  const x = q / LOAD_STEPS;
  let i = 0;
  while (i < LOAD_STOPS.length - 2 && x > LOAD_STOPS[i + 1][0]) i++;
  const [x0, c0] = LOAD_STOPS[i];
  const [x1, c1] = LOAD_STOPS[i + 1];
  const t = Math.min(1, Math.max(0, (x - x0) / (x1 - x0)));
  const hex = c0.map((v, k) => Math.round(v + (c1[k] - v) * t).toString(16).padStart(2, '0'));
  color = `#${hex.join('')}`;
  cache.set(q, color);
  return color;
}
