// Entry point: wires the live feed to the map, the charts, the KPIs and the tables.

import './app.css';
import { Charts } from './charts.js';
import { STATES, STATE_COLORS, loadColor } from './colors.js';
import { connect } from './connection.js';
import { ago, fixed, int } from './format.js';
import { WorldMap } from './map.js';
import { Model } from './model.js';
import { syncRows } from './table.js';

const ROOMS_SHOWN = 15;
const $ = (id) => document.getElementById(id);

function text(id, value) {
  const node = $(id);
  if (node.textContent !== value) node.textContent = value;
}

function buildLegend() {
  const legend = $('legend');
  const item = (label, color, state) => {
    const li = document.createElement('li');
    const dot = document.createElement('span');
    dot.className = 'dot';
    dot.style.background = color;
    if (state) dot.dataset.state = state;
    li.append(dot, label);
    legend.appendChild(li);
  };
  item('active, idle', loadColor(0));
  item('active, 60% load', loadColor(0.6));
  item('active, full', loadColor(1));
  for (const state of STATES) if (state !== 'active') item(state, STATE_COLORS[state], state);
  const li = document.createElement('li');
  const line = document.createElement('span');
  line.className = 'line';
  li.append(line, 'cascade link');
  legend.appendChild(li);
}

function renderKpis(s) {
  const nodes = s.nodes || [];
  const live = nodes.filter((n) => n.state !== 'gone');
  const active = nodes.filter((n) => n.state === 'active');
  const participants = nodes.reduce((sum, n) => sum + (n.participants || 0), 0);
  const members = s.members || [];
  const alive = members.filter((m) => m.state === 'alive').length;
  const a = s.allocations || {};
  const lat = a.latency_ms || {};
  const byResult = a.by_result || {};
  const failed = Object.entries(byResult).reduce((sum, [k, v]) => sum + (k === 'ok' ? 0 : v), 0);
  text('kpi-nodes', `${int(active.length)} / ${int(live.length)}`);
  text('kpi-participants', int(participants));
  text('kpi-rooms', int(s.rooms_total ?? (s.rooms || []).length));
  text('kpi-members', `${alive} / ${members.length}`);
  text('kpi-rate', fixed(a.per_second, 1));
  text('kpi-latency', `${fixed(lat.p50, 1)} / ${fixed(lat.p99, 1)}`);
  text('kpi-total', `${int(a.total)} (${int(failed)})`);
  text('map-caption', `${int(live.length)} nodes, ${int(active.length)} active`);
}

function renderTables(s) {
  const rooms = [...(s.rooms || [])].sort((x, y) => (y.participants || 0) - (x.participants || 0));
  const total = s.rooms_total ?? rooms.length;
  text('rooms-caption', `largest ${Math.min(ROOMS_SHOWN, rooms.length)} of ${int(total)}`);
  syncRows($('rooms-body'), rooms.slice(0, ROOMS_SHOWN), (r) => `${r.app_id}/${r.room_id}`, (r) => [
    `${r.app_id} / ${r.room_id}`,
    { text: int(r.participants), cls: 'num' },
    r.owner_peer_id || '–',
    (r.nodes || []).map((n) => `${n.node_id} (${n.participants})`).join(', '),
    { text: int((r.links || []).length), cls: 'num' },
  ]);

  syncRows($('members-body'), s.members || [], (m) => m.peer_id, (m) => [
    m.self ? `${m.peer_id} (this peer)` : m.peer_id,
    { text: m.state, cls: `state state-${m.state}` },
    m.grpc_address || '–',
    { text: m.self ? '–' : ago(m.last_heard_ms_ago), cls: 'num' },
  ]);

  const counts = new Map(STATES.map((st) => [st, 0]));
  const regions = new Map();
  for (const n of s.nodes || []) {
    counts.set(n.state, (counts.get(n.state) || 0) + 1);
    if (n.state === 'gone') continue;
    const key = n.region || '(none)';
    let r = regions.get(key);
    if (!r) regions.set(key, (r = { region: key, nodes: 0, active: 0, participants: 0, load: 0 }));
    r.nodes++;
    if (n.state === 'active') {
      r.active++;
      r.load += n.load || 0;
    }
    r.participants += n.participants || 0;
  }
  syncRows($('state-chips'), [...counts].map(([state, count]) => ({ state, count })), (c) => c.state,
           (c) => [{ text: `${c.state} ${c.count}`, cls: `chip state-${c.state}${c.count ? '' : ' zero'}` }],
           { row: 'li', cell: 'span' });
  const byRegion = [...regions.values()].sort((x, y) => y.nodes - x.nodes || x.region.localeCompare(y.region));
  syncRows($('regions-body'), byRegion, (r) => r.region, (r) => [
    r.region,
    { text: int(r.nodes), cls: 'num' },
    { text: int(r.active), cls: 'num' },
    { text: int(r.nodes - r.active), cls: r.nodes > r.active ? 'num warn' : 'num' },
    { text: int(r.participants), cls: 'num' },
    { text: r.active ? `${Math.round((100 * r.load) / r.active)}%` : '–', cls: 'num' },
  ]);

  const results = Object.entries(s.allocations?.by_result || {}).sort((x, y) => y[1] - x[1]);
  syncRows($('results-body'), results, ([k]) => k, ([k, v]) => [
    { text: k, cls: k === 'ok' ? '' : 'warn' }, { text: int(v), cls: 'num' }]);
}

function main() {
  buildLegend();
  const map = new WorldMap($('map'), $('tooltip'));
  const charts = new Charts($('chart-rate'), $('chart-latency'));
  const model = new Model();
  let lastAt = 0;
  // Update cost (from the event's arrival, parsing included, to the page updated), for the
  // browser test and for anyone looking in the console. `afterApply(seq)`, when a test
  // sets it, is called after each update, outside the timing.
  const stats = {
    renders: 0, first_render_ms: 0, last_render_ms: 0, max_render_ms: 0,
    snapshots: 0, deltas: 0, resyncs: 0, last_delta_ms: 0, max_delta_ms: 0, delta_ms_total: 0,
    seq: 0, model, afterApply: null,
    expectedFill: (n) => (n.state === 'active' ? loadColor(n.load) : STATE_COLORS[n.state] || '#999'),
  };
  window.__chroomDashboard = stats;
  const render = (change, receivedAt) => {
    const s = model.view();
    text('peer-id', s.peer_id || '?');
    document.title = `Chroom · ${s.peer_id || '?'}`;
    map.update(s.nodes, s.rooms, change);
    renderKpis(s);
    renderTables(s);
    charts.push(s.at_unix_ms, s.allocations);
    lastAt = s.at_unix_ms;
    stats.seq = model.seq;
    stats.renders++;
    stats.last_render_ms = performance.now() - receivedAt;
    // The first render builds the map's dots: not the steady cost.
    if (stats.renders === 1) stats.first_render_ms = stats.last_render_ms;
    if (stats.renders > 1) stats.max_render_ms = Math.max(stats.max_render_ms, stats.last_render_ms);
    if (change) {
      stats.deltas++;
      stats.last_delta_ms = stats.last_render_ms;
      stats.max_delta_ms = Math.max(stats.max_delta_ms, stats.last_delta_ms);
      stats.delta_ms_total += stats.last_delta_ms;
    } else {
      stats.snapshots++;
    }
    if (stats.afterApply) stats.afterApply(model.seq);
  };
  connect((snapshot, receivedAt) => {
    model.reset(snapshot);
    render(null, receivedAt);
  }, (delta, receivedAt) => {
    const change = model.apply(delta);
    if (!change) {
      stats.resyncs++;
      return false;
    }
    render(change, receivedAt);
    return true;
  }, (status) => {
    const badge = $('conn');
    badge.textContent = status;
    badge.dataset.status = status;
    badge.className = `badge badge-${status}`;
  });
  setInterval(() => {
    if (lastAt) text('updated', `snapshot of ${new Date(lastAt).toLocaleTimeString()}`);
  }, 1000);
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', main);
else main();
