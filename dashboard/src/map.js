// The world map: country outlines drawn once (world-atlas, Natural Earth 1:110m, bundled, so
// no tile server and no network), media nodes as dots and cascade links as great-circle arcs.
//
// Every node has one <circle data-node-id=ID data-state=STATE> for its whole life on the page;
// a snapshot only rewrites the attributes that changed, and a delta visits only the nodes it
// names, so 10,000 nodes a second stay cheap.
// Nodes that are not active are moved to a layer above the others, where they stay visible.

import { geoGraticule10, geoNaturalEarth1, geoPath } from 'd3-geo';
import { feature, mesh } from 'topojson-client';
import countries from 'world-atlas/countries-110m.json';

import { STATE_COLORS, loadColor } from './colors.js';
import { fixed, int, percent } from './format.js';

const SVG_NS = 'http://www.w3.org/2000/svg';
const WIDTH = 960;
const HEIGHT = 500;
const NODE_RADIUS = 3.2;
// Wheel zoom: dense regions (Europe, East Asia) need it with thousands of nodes.
const MAX_ZOOM = 12;

function el(name, attrs = {}, parent = null) {
  const node = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}

function setAttr(node, name, value) {
  const text = String(value);
  if (node.getAttribute(name) !== text) node.setAttribute(name, text);
}

export class WorldMap {
  /**
   * @param {SVGSVGElement} svg
   * @param {HTMLElement} tooltip an absolutely positioned box inside the map's container
   */
  constructor(svg, tooltip) {
    this.svg = svg;
    this.tooltip = tooltip;
    this.projection = geoNaturalEarth1().fitExtent([[4, 4], [WIDTH - 4, HEIGHT - 4]], { type: 'Sphere' });
    this.path = geoPath(this.projection);
    /** node id -> {circle, node (the latest snapshot entry), x, y, lat, lon, state} */
    this.nodes = new Map();
    /** "a|b" -> {path, a, b} */
    this.links = new Map();

    svg.setAttribute('preserveAspectRatio', 'xMidYMid meet');
    el('path', { class: 'sphere', d: this.path({ type: 'Sphere' }) }, svg);
    el('path', { class: 'graticule', d: this.path(geoGraticule10()) }, svg);
    const land = feature(countries, countries.objects.countries);
    const landLayer = el('g', { class: 'countries' }, svg);
    for (const f of land.features) {
      el('path', { class: 'country', d: this.path(f), 'data-country': f.properties.name }, landLayer);
    }
    el('path', { class: 'borders', d: this.path(mesh(countries, countries.objects.countries, (a, b) => a !== b)) }, svg);
    this.linkLayer = el('g', { class: 'links' }, svg);
    this.nodeLayer = el('g', { class: 'nodes' }, svg);
    this.alertLayer = el('g', { class: 'nodes alerts' }, svg);

    this.view = { x: 0, y: 0, k: 1 };
    this.applyView();
    svg.addEventListener('wheel', (e) => this.onWheel(e), { passive: false });
    svg.addEventListener('pointerdown', (e) => this.onDrag(e));
    svg.addEventListener('dblclick', () => { this.view = { x: 0, y: 0, k: 1 }; this.applyView(); });

    svg.addEventListener('mouseover', (e) => this.showTooltip(e));
    svg.addEventListener('mousemove', (e) => this.moveTooltip(e));
    svg.addEventListener('mouseout', () => { this.tooltip.hidden = true; });
  }

  /**
   * Updates dots and links in place: `nodes` and `rooms` are the whole snapshot; `change`
   * ({changed: nodes, removed: ids}, from a delta) limits the dots visited to those, or is
   * null to visit all (dots of nodes not in `nodes` are removed).
   */
  update(nodes, rooms, change = null) {
    if (change) {
      for (const id of change.removed) this.removeNode(id);
      for (const node of change.changed) this.placeNode(node);
    } else {
      const seen = new Set();
      for (const node of nodes) {
        seen.add(node.node_id);
        this.placeNode(node);
      }
      for (const id of [...this.nodes.keys()]) if (!seen.has(id)) this.removeNode(id);
    }
    this.updateLinks(rooms);
  }

  removeNode(id) {
    const entry = this.nodes.get(id);
    if (!entry) return;
    entry.circle.remove();
    this.nodes.delete(id);
  }

  /** Creates or updates one node's dot. */
  placeNode(node) {
    let entry = this.nodes.get(node.node_id);
    if (!entry) {
      // No r attribute: app.css sizes dots from --node-r, which zooming sets once for all.
      const circle = el('circle', { 'data-node-id': node.node_id }, this.nodeLayer);
      entry = { circle, lat: NaN, lon: NaN, x: 0, y: 0, state: '' };
      this.nodes.set(node.node_id, entry);
    }
    entry.node = node;
    if (node.lat !== entry.lat || node.lon !== entry.lon) {
      const [x, y] = this.projection([node.lon, node.lat]) || [-10, -10];
      entry.lat = node.lat;
      entry.lon = node.lon;
      entry.x = x;
      entry.y = y;
      setAttr(entry.circle, 'cx', x.toFixed(1));
      setAttr(entry.circle, 'cy', y.toFixed(1));
    }
    if (node.state !== entry.state) {
      entry.state = node.state;
      entry.circle.setAttribute('data-state', node.state);
      const layer = node.state === 'active' ? this.nodeLayer : this.alertLayer;
      if (entry.circle.parentNode !== layer) layer.appendChild(entry.circle);
    }
    // Only active nodes are coloured by load; app.css colours the other states.
    setAttr(entry.circle, 'fill', node.state === 'active' ? loadColor(node.load)
                                                         : STATE_COLORS[node.state] || '#999');
  }

  updateLinks(rooms) {
    // One arc per pair of nodes, however many rooms share it (they share the relay path).
    const wanted = new Map();
    for (const room of rooms) {
      for (const link of room.links || []) {
        if (!Array.isArray(link) || link.length !== 2) continue;
        const [a, b] = link[0] < link[1] ? link : [link[1], link[0]];
        const key = `${a}|${b}`;
        wanted.set(key, (wanted.get(key) || 0) + 1);
      }
    }
    const drawn = new Set();
    for (const [key, count] of wanted) {
      const [a, b] = key.split('|');
      const na = this.nodes.get(a);
      const nb = this.nodes.get(b);
      if (!na || !nb) continue;       // a room may name a node the snapshot no longer has
      drawn.add(key);
      let entry = this.links.get(key);
      if (!entry) {
        entry = { path: el('path', { class: 'link', 'data-link': `${a} ${b}` }, this.linkLayer) };
        this.links.set(key, entry);
      }
      const ends = `${na.lat},${na.lon},${nb.lat},${nb.lon}`;
      if (entry.ends !== ends) {
        entry.ends = ends;
        entry.path.setAttribute('d', this.path({
          type: 'LineString', coordinates: [[na.lon, na.lat], [nb.lon, nb.lat]],
        }) || '');
      }
      setAttr(entry.path, 'stroke-width', Math.min(4, 0.8 + 0.4 * Math.log2(count)).toFixed(2));
      setAttr(entry.path, 'data-rooms', count);
      const down = na.state !== 'active' || nb.state !== 'active';
      setAttr(entry.path, 'data-down', down ? '1' : '0');
    }
    for (const [key, entry] of this.links) {
      if (!drawn.has(key)) {
        entry.path.remove();
        this.links.delete(key);
      }
    }
  }

  /** Map coordinates (viewBox units at zoom 1) of a mouse event. */
  toMap(event) {
    const box = this.svg.getBoundingClientRect();
    // preserveAspectRatio meet: one scale for both axes, the map centred in the box.
    const scale = Math.min(box.width / WIDTH, box.height / HEIGHT) * this.view.k;
    const offsetX = (box.width - (WIDTH * scale) / this.view.k) / 2;
    const offsetY = (box.height - (HEIGHT * scale) / this.view.k) / 2;
    return [this.view.x + (event.clientX - box.left - offsetX) / scale,
            this.view.y + (event.clientY - box.top - offsetY) / scale];
  }

  onWheel(event) {
    event.preventDefault();
    const [mx, my] = this.toMap(event);
    const k = Math.min(MAX_ZOOM, Math.max(1, this.view.k * Math.exp(-event.deltaY * 0.002)));
    // Keep the point under the cursor where it is.
    this.view.x = mx - ((mx - this.view.x) * this.view.k) / k;
    this.view.y = my - ((my - this.view.y) * this.view.k) / k;
    this.view.k = k;
    this.applyView();
  }

  onDrag(event) {
    if (event.button !== 0 || this.view.k === 1) return;
    const start = this.toMap(event);
    const move = (e) => {
      const [mx, my] = this.toMap(e);
      this.view.x -= mx - start[0];
      this.view.y -= my - start[1];
      this.applyView();
    };
    const up = () => {
      window.removeEventListener('pointermove', move);
      window.removeEventListener('pointerup', up);
    };
    window.addEventListener('pointermove', move);
    window.addEventListener('pointerup', up);
  }

  applyView() {
    const v = this.view;
    const w = WIDTH / v.k;
    const h = HEIGHT / v.k;
    v.x = Math.min(WIDTH - w, Math.max(0, v.x));
    v.y = Math.min(HEIGHT - h, Math.max(0, v.y));
    this.svg.setAttribute('viewBox', `${v.x.toFixed(2)} ${v.y.toFixed(2)} ${w.toFixed(2)} ${h.toFixed(2)}`);
    // On screen, dots grow as k^0.35 when the map grows as k: clustered cities come apart.
    this.svg.style.setProperty('--node-r', `${(NODE_RADIUS * Math.pow(v.k, -0.65)).toFixed(3)}px`);
    this.svg.classList.toggle('zoomed', v.k > 1);
  }

  showTooltip(event) {
    const id = event.target?.getAttribute?.('data-node-id');
    const entry = id && this.nodes.get(id);
    if (!entry) return;
    const n = entry.node;
    this.tooltip.innerHTML = '';
    const lines = [
      [n.node_id, n.state],
      [`${n.region || '?'} · ${n.country || '?'}`, `${fixed(n.lat, 2)}, ${fixed(n.lon, 2)}`],
      ['participants', `${int(n.participants)} / ${int(n.max_participants)}`],
      ['load', percent(n.load)],
      ['rooms', int(n.rooms)],
      ['home peer', n.home_peer_id || '–'],
    ];
    for (const [k, v] of lines) {
      const row = document.createElement('div');
      const key = document.createElement('b');
      key.textContent = k;
      row.append(key, ` ${v}`);
      this.tooltip.appendChild(row);
    }
    this.tooltip.hidden = false;
    this.moveTooltip(event);
  }

  moveTooltip(event) {
    if (this.tooltip.hidden) return;
    const box = this.svg.parentNode.getBoundingClientRect();
    const x = event.clientX - box.left;
    const y = event.clientY - box.top;
    // Right of and below the cursor, or on the other side near the map's right/bottom edge.
    const flipX = x + 12 + this.tooltip.offsetWidth > box.width;
    const flipY = y + 12 + this.tooltip.offsetHeight > box.height;
    this.tooltip.style.left = `${flipX ? x - 12 - this.tooltip.offsetWidth : x + 12}px`;
    this.tooltip.style.top = `${flipY ? y - 12 - this.tooltip.offsetHeight : y + 12}px`;
  }
}
