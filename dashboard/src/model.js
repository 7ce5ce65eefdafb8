// The page's copy of the peer's snapshot, kept current by the stream's deltas
// (docs/dashboard.md, "Deltas"): a full snapshot once, then per second only what changed.
// Nodes are kept by slot (the small number deltas name them by) and their objects are
// changed in place, so the map's entries keep pointing at the current figures.

// Delta members that are not aggregates of the snapshot.
const DELTA_PARTS = new Set(['seq', 'base_seq', 'nodes_added', 'nodes_removed', 'node_changes',
  'rooms_upserted', 'rooms_removed']);

const roomKey = (appId, roomId) => JSON.stringify([appId ?? '', roomId ?? '']);

export class Model {
  constructor() {
    this.seq = 0;
    /** slot -> node object */
    this.nodes = new Map();
    /** roomKey -> room object */
    this.rooms = new Map();
    /** peer_id, at_unix_ms, members, allocations, rooms_total, ... */
    this.aggregates = {};
  }

  /** Replaces everything with a full snapshot. */
  reset(snapshot) {
    this.seq = Number.isInteger(snapshot.seq) ? snapshot.seq : 0;
    this.nodes = new Map();
    // A server without slots (an older peer, the fake server): the position names the node.
    (snapshot.nodes || []).forEach((n, i) => this.nodes.set(Number.isInteger(n.slot) ? n.slot : -1 - i, n));
    this.rooms = new Map();
    for (const r of snapshot.rooms || []) this.rooms.set(roomKey(r.app_id, r.room_id), r);
    this.aggregates = {};
    for (const [k, v] of Object.entries(snapshot)) if (k !== 'nodes' && k !== 'rooms' && k !== 'seq') this.aggregates[k] = v;
  }

  /**
   * Applies a delta. Returns the nodes it touched ({changed: node objects, removed: node ids}),
   * or null when it does not follow the snapshot held (a missed event): then the caller
   * needs a full snapshot again, and nothing was changed.
   */
  apply(delta) {
    if (!this.seq || delta.base_seq !== this.seq) return null;
    const removed = [];
    for (const slot of delta.nodes_removed || []) {
      const node = this.nodes.get(slot);
      if (!node) continue;
      removed.push(node.node_id);
      this.nodes.delete(slot);
    }
    const changed = new Set();
    for (const node of delta.nodes_added || []) {
      this.nodes.set(node.slot, node);
      changed.add(node);
    }
    for (const [field, list] of Object.entries(delta.node_changes || {})) {
      for (let i = 0; i + 1 < list.length; i += 2) {
        const node = this.nodes.get(list[i]);
        if (!node) continue;
        node[field] = list[i + 1];
        changed.add(node);
      }
    }
    for (const [appId, roomId] of delta.rooms_removed || []) this.rooms.delete(roomKey(appId, roomId));
    for (const r of delta.rooms_upserted || []) this.rooms.set(roomKey(r.app_id, r.room_id), r);
    for (const [k, v] of Object.entries(delta)) if (!DELTA_PARTS.has(k)) this.aggregates[k] = v;
    this.seq = delta.seq;
    return { changed: [...changed], removed };
  }

  /** The snapshot as the server would send it now (without `seq`). */
  view() {
    return { ...this.aggregates, nodes: [...this.nodes.values()], rooms: [...this.rooms.values()] };
  }
}
