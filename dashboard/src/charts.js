// Allocation rate and latency over time (uPlot). The server sends only the current figures;
// the history is accumulated here from the snapshots, one point per snapshot, for 5 minutes.

import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

const HISTORY_MS = 5 * 60 * 1000;
// A snapshot arrives every second; a longer silence (a disconnection) is drawn as a gap.
const GAP_MS = 3500;
const HEIGHT = 150;

function series(label, stroke, dash) {
  return { label, stroke, width: 1.5, dash, spanGaps: false, points: { show: false },
           value: (u, v) => (v == null ? '–' : v.toFixed(2)) };
}

const axis = { stroke: '#9aa4b2', grid: { stroke: '#2a3140', width: 1 }, ticks: { stroke: '#2a3140' } };
// Time ticks on whole seconds, labelled hh:mm:ss (uPlot's default shows milliseconds while
// the history is only a few seconds long).
const timeAxis = {
  ...axis,
  space: 70,
  incrs: [1, 2, 5, 10, 15, 30, 60, 120, 300],
  values: (u, splits) => splits.map((t) => new Date(t * 1000).toLocaleTimeString('en-GB', { hour12: false })),
};

export class Charts {
  constructor(rateBox, latencyBox) {
    this.t = [];            // unix seconds
    this.rate = [];
    this.p50 = [];
    this.p90 = [];
    this.p99 = [];
    this.lastAt = 0;
    const width = Math.max(200, rateBox.clientWidth || 400);
    this.rateChart = new uPlot({
      width, height: HEIGHT, legend: { live: false },
      series: [{}, { ...series('allocations/s', '#4aa3df'), fill: 'rgba(74,163,223,0.15)' }],
      axes: [timeAxis, { ...axis, size: 45 }],
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
    }, [this.t, this.rate], rateBox);
    this.latencyChart = new uPlot({
      width, height: HEIGHT, legend: { live: false },
      series: [{}, series('p50', '#2ecc71'), series('p90', '#f39c12', [4, 3]), series('p99', '#e74c3c')],
      axes: [timeAxis, { ...axis, size: 45 }],
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, (max || 0) * 1.1)] } },
    }, [this.t, this.p50, this.p90, this.p99], latencyBox);
    const resize = () => {
      const w = Math.max(200, rateBox.clientWidth);
      this.rateChart.setSize({ width: w, height: HEIGHT });
      this.latencyChart.setSize({ width: w, height: HEIGHT });
    };
    new ResizeObserver(resize).observe(rateBox);
  }

  /** Adds the allocation figures of one snapshot (`allocations`, at `atMs`). */
  push(atMs, allocations) {
    if (!Number.isFinite(atMs) || atMs <= this.lastAt) return;   // a repeat after a reconnect
    const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
    if (this.lastAt && atMs - this.lastAt > GAP_MS) this.append((this.lastAt + 1000) / 1000, null, null, null, null);
    this.lastAt = atMs;
    const latency = allocations?.latency_ms || {};
    this.append(atMs / 1000, num(allocations?.per_second), num(latency.p50), num(latency.p90), num(latency.p99));
    const oldest = (atMs - HISTORY_MS) / 1000;
    let drop = 0;
    while (drop < this.t.length && this.t[drop] < oldest) drop++;
    if (drop) for (const a of [this.t, this.rate, this.p50, this.p90, this.p99]) a.splice(0, drop);
    this.rateChart.setData([this.t, this.rate]);
    this.latencyChart.setData([this.t, this.p50, this.p90, this.p99]);
  }

  append(t, rate, p50, p90, p99) {
    this.t.push(t);
    this.rate.push(rate);
    this.p50.push(p50);
    this.p90.push(p90);
    this.p99.push(p99);
  }
}
