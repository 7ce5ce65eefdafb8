// Drives the dashboard in headless Chromium (playwright-core, the system's /usr/bin/chromium;
// no browser is downloaded). Used by tests/integration/test_dashboard.py; see docs/dashboard.md.
//
//   node dashboard/tests/drive.mjs URL --expect-nodes N --screenshot FILE [--chromium PATH]
//
// Protocol, one JSON object a line on stdout:
//   1. loads URL and waits until the map shows N node dots and the badge says "live", then
//      prints {"event":"ready", nodes, states, rooms_rows, members_rows, links, badge, ...};
//   2. then obeys commands on stdin, one a line, each answered by one JSON line:
//      "watch NODE_ID": waits (WATCH_TIMEOUT_MS) until that node's dot says suspect or dead,
//        takes a screenshot (FILE, and a copy in $CHROOM_ARTIFACT_DIR if set), answers
//        {"event":"result", node, state, transitions, reloaded, errors, screenshots, ...};
//      "expect-status S": waits until the connection badge says S ("disconnected" once the
//        peer is gone), answers {"event":"status", status, reloaded, ...};
//      "consistency ROUNDS": keeps a copy of the page's snapshot at each update (built from
//        one snapshot and then deltas); ROUNDS times, fetches api/v1/snapshot (seq S) in the
//        page and compares it with the copy of S, and every dot with its node; answers
//        {"event":"consistency", rounds: [{seq, held, equal, dom_mismatches, ...}], ...};
//      "timing SECONDS": the page's update times over that long (from an event's arrival
//        to the page updated), answers {"event":"timing", deltas, mean_ms, max_ms, ...};
//      "quit" or the end of stdin: exits 0.
//   "reloaded" is true if the page was reloaded or navigated since step 1: it must update
//   live. Any failure prints {"event":"error", message, ...} (and a screenshot when it can)
//   and exits 1. Every wait is bounded; the whole run is bounded by OVERALL_TIMEOUT_MS.

import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const LOAD_TIMEOUT_MS = 15000;
const NODES_TIMEOUT_MS = 30000;
const STDIN_TIMEOUT_MS = 60000;
const WATCH_TIMEOUT_MS = 15000;
const OVERALL_TIMEOUT_MS = 150000;
// The machine's network is closed: without these Chromium stalls on background requests.
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
  '--no-first-run', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--disable-dev-shm-usage'];

function parseArgs(argv) {
  const args = { url: null, expectNodes: null, screenshot: null,
                 chromium: process.env.CHROOM_CHROMIUM || '/usr/bin/chromium' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--expect-nodes') args.expectNodes = Number(argv[++i]);
    else if (a === '--screenshot') args.screenshot = resolve(argv[++i]);
    else if (a === '--chromium') args.chromium = argv[++i];
    else if (!args.url && !a.startsWith('--')) args.url = a;
    else throw new Error(`unknown argument ${a}`);
  }
  if (!args.url || !Number.isInteger(args.expectNodes) || !args.screenshot) {
    throw new Error('usage: drive.mjs URL --expect-nodes N --screenshot FILE [--chromium PATH]');
  }
  return args;
}

const emit = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);

/** The next stdin line, or an error after `ms`. */
function makeLineReader() {
  const rl = createInterface({ input: process.stdin });
  const lines = [];
  const waiters = [];
  rl.on('line', (line) => (waiters.length ? waiters.shift()(line) : lines.push(line)));
  rl.on('close', () => { while (waiters.length) waiters.shift()(null); });
  return {
    next(ms) {
      if (lines.length) return Promise.resolve(lines.shift());
      return new Promise((resolveLine, reject) => {
        const timer = setTimeout(() => reject(new Error(`no stdin line within ${ms} ms`)), ms);
        waiters.push((line) => { clearTimeout(timer); resolveLine(line); });
      });
    },
    close: () => rl.close(),
  };
}

// What the page shows, read in the page.
function pageState() {
  const dots = [...document.querySelectorAll('circle[data-node-id]')];
  const states = {};
  for (const d of dots) states[d.dataset.state] = (states[d.dataset.state] || 0) + 1;
  return {
    nodes: dots.length,
    states,
    badge: document.getElementById('conn')?.dataset.status,
    peer_id: document.getElementById('peer-id')?.textContent,
    countries: document.querySelectorAll('path.country').length,
    links: document.querySelectorAll('path.link').length,
    rooms_rows: document.querySelectorAll('#rooms-body tr').length,
    members_rows: document.querySelectorAll('#members-body tr').length,
    regions_rows: document.querySelectorAll('#regions-body tr').length,
    charts: document.querySelectorAll('.uplot canvas').length,
    // The figures only (the page's copy of the snapshot is large).
    render: (({ model, afterApply, expectedFill, ...figures }) => figures)(window.__chroomDashboard || {}),
    kpi_rate: document.getElementById('kpi-rate')?.textContent,
    kpi_latency: document.getElementById('kpi-latency')?.textContent,
    // Dots off the map (NaN or outside the viewBox) would mean a projection bug.
    misplaced: dots.filter((d) => {
      const x = Number(d.getAttribute('cx'));
      const y = Number(d.getAttribute('cy'));
      return !(x >= 0 && x <= 960 && y >= 0 && y <= 500);
    }).length,
  };
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const overall = setTimeout(() => {
    emit({ event: 'error', message: `overall timeout ${OVERALL_TIMEOUT_MS} ms` });
    process.exit(2);
  }, OVERALL_TIMEOUT_MS);
  const stdin = makeLineReader();
  const errors = [];
  const userDataDir = mkdtempSync(join(tmpdir(), 'chroom-dashboard-chromium-'));
  let context = null;
  let page = null;
  let navigations = 0;
  const shoot = async () => {
    mkdirSync(resolve(args.screenshot, '..'), { recursive: true });
    await page.screenshot({ path: args.screenshot, fullPage: true, timeout: 10000 });
    const copies = [args.screenshot];
    if (process.env.CHROOM_ARTIFACT_DIR) {
      mkdirSync(process.env.CHROOM_ARTIFACT_DIR, { recursive: true });
      const copy = join(process.env.CHROOM_ARTIFACT_DIR, basename(args.screenshot));
      copyFileSync(args.screenshot, copy);
      copies.push(copy);
    }
    return copies;
  };

  // watch ID: waits until the node's dot says suspect or dead, then takes the screenshot.
  const watch = async (nodeId) => {
    // Record every state the node's dot goes through, from now on, in the page itself.
    await page.evaluate((id) => {
      const seen = [];
      window.__chroomTransitions = seen;
      const dot = () => document.querySelector(`circle[data-node-id="${CSS.escape(id)}"]`);
      const note = () => {
        const s = dot()?.dataset.state ?? '(no dot)';
        if (seen[seen.length - 1] !== s) seen.push(s);
      };
      note();
      new MutationObserver(note).observe(document.getElementById('map'),
        { subtree: true, childList: true, attributes: true, attributeFilter: ['data-state'] });
    }, nodeId);
    const started = Date.now();
    let state = null;
    let failure = null;
    try {
      const handle = await page.waitForFunction((id) => {
        const s = document.querySelector(`circle[data-node-id="${CSS.escape(id)}"]`)?.dataset.state;
        return s === 'suspect' || s === 'dead' ? s : null;
      }, nodeId, { timeout: WATCH_TIMEOUT_MS, polling: 100 });
      state = await handle.jsonValue();
      // Let the page paint the change before the picture.
      await page.waitForTimeout(300);
    } catch (e) {
      failure = e.message.split('\n')[0];
    }
    const transitions = await page.evaluate(() => window.__chroomTransitions);
    return {
      event: failure ? 'error' : 'result', message: failure, node: nodeId, state, transitions,
      ms: Date.now() - started, reloaded: await reloaded(),
      ...(await page.evaluate(pageState)), errors, screenshots: await shoot(),
    };
  };

  // expect-status S: waits until the connection badge says S (live, disconnected).
  const expectStatus = async (status) => {
    const started = Date.now();
    let failure = null;
    try {
      await page.waitForFunction((s) => document.getElementById('conn')?.dataset.status === s,
        status, { timeout: WATCH_TIMEOUT_MS, polling: 100 });
    } catch (e) {
      failure = e.message.split('\n')[0];
    }
    return { event: failure ? 'error' : 'status', message: failure, status,
             ms: Date.now() - started, reloaded: await reloaded(),
             badge: await page.evaluate(() => document.getElementById('conn')?.dataset.status) };
  };

  // consistency ROUNDS: the page's delta-built copy against fresh snapshots.
  const consistency = async (rounds) => page.evaluate(async ({ rounds, waitMs }) => {
    const d = window.__chroomDashboard;
    // JSON with sorted keys, and nodes and rooms in a fixed order: two copies of one
    // snapshot give the same text.
    const stable = (v) => {
      if (Array.isArray(v)) return `[${v.map(stable).join(',')}]`;
      if (v && typeof v === 'object') {
        return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${stable(v[k])}`).join(',')}}`;
      }
      return JSON.stringify(v);
    };
    const canon = (s) => {
      const { seq, ...rest } = s;
      rest.nodes = [...(s.nodes || [])].sort((a, b) => (a.node_id < b.node_id ? -1 : a.node_id > b.node_id ? 1 : 0));
      const key = (r) => JSON.stringify([r.app_id, r.room_id]);
      rest.rooms = [...(s.rooms || [])].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
      return stable(rest);
    };
    // The dots against the page's copy: one per node, its state and colour.
    const domMismatches = () => {
      const view = d.model.view();
      const dots = new Map([...document.querySelectorAll('circle[data-node-id]')].map((c) => [c.dataset.nodeId, c]));
      const bad = [];
      if (dots.size !== view.nodes.length) bad.push(`${dots.size} dots for ${view.nodes.length} nodes`);
      for (const n of view.nodes) {
        const c = dots.get(n.node_id);
        if (!c) bad.push(`${n.node_id}: no dot`);
        else if (c.dataset.state !== n.state || c.getAttribute('fill') !== d.expectedFill(n)) {
          bad.push(`${n.node_id}: dot ${c.dataset.state} ${c.getAttribute('fill')}, node ${n.state} ${d.expectedFill(n)}`);
        }
      }
      return bad;
    };
    // The page's copy at every update during the check (a deep copy: nodes change in
    // place), the last few kept: a fetch of the snapshot may take seconds on a loaded
    // machine, and then returns one the page held a while ago.
    const held = new Map();
    const record = (seq) => {
      held.set(seq, structuredClone(d.model.view()));
      for (const k of held.keys()) if (held.size > 16) held.delete(k);
    };
    const out = [];
    record(d.model.seq);
    d.afterApply = record;
    try {
      for (let i = 0; i < rounds; i++) {
        const started = Date.now();
        const snap = await (await fetch('api/v1/snapshot', { cache: 'no-store' })).json();
        const fetchMs = Date.now() - started;
        const until = Date.now() + waitMs;
        while (!held.has(snap.seq) && d.model.seq < snap.seq && Date.now() < until) {
          await new Promise((r) => setTimeout(r, 20));
        }
        const copy = held.get(snap.seq);
        const mine = copy ? canon(copy) : null;
        const theirs = canon(snap);
        let firstDifference = null;
        if (mine && mine !== theirs) {
          let k = 0;
          while (k < mine.length && mine[k] === theirs[k]) k++;
          firstDifference = { page: mine.slice(Math.max(0, k - 80), k + 80), server: theirs.slice(Math.max(0, k - 80), k + 80) };
        }
        // The dots against the page's copy now (updates are synchronous: they agree
        // between two of them, or the in-place updates missed something).
        out.push({ seq: snap.seq, fetch_ms: fetchMs, page_seq: d.model.seq, held: !!copy,
                   held_seqs: [...held.keys()], nodes: snap.nodes.length,
                   equal: mine === theirs, dom_mismatches: domMismatches().slice(0, 5),
                   first_difference: firstDifference });
        // The next round on another snapshot.
        const next = Date.now() + waitMs;
        while (d.model.seq <= snap.seq && Date.now() < next) await new Promise((r) => setTimeout(r, 50));
      }
    } finally {
      d.afterApply = null;
    }
    return { event: 'consistency', rounds: out, deltas: d.deltas, snapshots: d.snapshots, resyncs: d.resyncs };
  }, { rounds, waitMs: 15000 });

  // timing SECONDS: the page's update times over that long.
  const timing = async (seconds) => {
    const before = await page.evaluate(() => (({ model, afterApply, expectedFill, ...figures }) => figures)(window.__chroomDashboard));
    const times = await page.evaluate(async (ms) => {
      const d = window.__chroomDashboard;
      const seen = [];
      let last = d.deltas;
      const until = Date.now() + ms;
      while (Date.now() < until) {
        await new Promise((r) => setTimeout(r, 20));
        if (d.deltas !== last) {
          last = d.deltas;
          seen.push(d.last_delta_ms);
        }
      }
      return seen;
    }, seconds * 1000);
    const after = await page.evaluate(() => (({ model, afterApply, expectedFill, ...figures }) => figures)(window.__chroomDashboard));
    const deltas = after.deltas - before.deltas;
    const sorted = [...times].sort((a, b) => a - b);
    return {
      event: 'timing', seconds, deltas, sampled: times.length,
      mean_ms: deltas ? (after.delta_ms_total - before.delta_ms_total) / deltas : null,
      median_ms: sorted.length ? sorted[Math.floor(sorted.length / 2)] : null,
      max_ms: sorted.length ? sorted[sorted.length - 1] : null,
      snapshots: after.snapshots - before.snapshots,
      resyncs: after.resyncs - before.resyncs, nodes: await page.evaluate(() => document.querySelectorAll('circle[data-node-id]').length),
      errors,
    };
  };

  let navigationsAtReady = 0;
  const reloaded = async () =>
    (await page.evaluate(() => window.__chroomDriveMarker)) !== 'still-here' || navigations !== navigationsAtReady;

  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: args.chromium, headless: true, args: CHROMIUM_ARGS,
      viewport: { width: 1600, height: 1000 }, timeout: LOAD_TIMEOUT_MS,
    });
    page = context.pages()[0] || await context.newPage();
    page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
    page.on('console', (m) => { if (m.type() === 'error') errors.push(`console: ${m.text()}`); });
    page.on('requestfailed', (r) => {
      // The event stream is cut when the page closes: not a failure of the page.
      if (!r.url().includes('/api/v1/events')) errors.push(`requestfailed: ${r.url()} ${r.failure()?.errorText}`);
    });
    page.on('response', (r) => { if (r.status() >= 400) errors.push(`HTTP ${r.status()}: ${r.url()}`); });
    page.on('framenavigated', (f) => { if (f === page.mainFrame()) navigations++; });

    const started = Date.now();
    await page.goto(args.url, { waitUntil: 'load', timeout: LOAD_TIMEOUT_MS });
    await page.waitForFunction((n) => document.querySelectorAll('circle[data-node-id]').length === n
        && document.getElementById('conn')?.dataset.status === 'live',
      args.expectNodes, { timeout: NODES_TIMEOUT_MS, polling: 100 });
    // A marker that a reload would lose.
    await page.evaluate(() => { window.__chroomDriveMarker = 'still-here'; });
    navigationsAtReady = navigations;
    emit({ event: 'ready', ms: Date.now() - started, ...(await page.evaluate(pageState)), errors });

    // Commands, one a line, until "quit" or the end of stdin.
    for (;;) {
      const line = await stdin.next(STDIN_TIMEOUT_MS);
      if (line === null || line.trim() === 'quit') return 0;
      const [verb, arg] = line.trim().split(/\s+/);
      let reply;
      if (verb === 'watch' && arg) reply = await watch(arg);
      else if (verb === 'expect-status' && arg) reply = await expectStatus(arg);
      else if (verb === 'consistency' && Number(arg) > 0) reply = await consistency(Number(arg));
      else if (verb === 'timing' && Number(arg) > 0) reply = await timing(Number(arg));
      else throw new Error(`unknown command ${JSON.stringify(line)} (watch ID | expect-status S | consistency N | timing S | quit)`);
      emit(reply);
      if (reply.event === 'error') return 1;
    }
  } catch (e) {
    const report = { event: 'error', message: e.message.split('\n')[0], errors };
    if (page) {
      try {
        report.page = await page.evaluate(pageState);
        report.screenshots = await shoot();
      } catch (inner) {
        report.screenshot_error = inner.message.split('\n')[0];
      }
    }
    emit(report);
    return 1;
  } finally {
    clearTimeout(overall);
    stdin.close();
    if (context) await context.close().catch(() => {});
    rmSync(userDataDir, { recursive: true, force: true });
  }
}

main().then((code) => process.exit(code), (e) => {
  emit({ event: 'error', message: String(e?.message || e) });
  process.exit(1);
});
