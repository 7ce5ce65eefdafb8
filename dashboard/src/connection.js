// The live feed: Server-Sent Events from api/v1/events, a `snapshot` event first, then a
// `delta` event a second (docs/dashboard.md). A delta that does not follow the snapshot the
// page holds (`onDelta` says so) reopens the stream, which starts with a full snapshot.
//
// EventSource reconnects by itself after a dropped stream; it gives up for good when the
// server answers with an error or another content type, so then we open a new one ourselves
// (backing off to RETRY_MAX_MS). A stream that stays open but goes silent (a stalled proxy,
// a frozen peer) counts as disconnected after STALE_MS and is reopened after REOPEN_MS.

const EVENTS_URL = 'api/v1/events';
const SNAPSHOT_URL = 'api/v1/snapshot';
const STALE_MS = 3500;
const REOPEN_MS = 10000;
const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 10000;

/**
 * @param {(snapshot: object, receivedAt: number) => void} onSnapshot
 * @param {(delta: object, receivedAt: number) => boolean} onDelta false: not applicable
 * @param {(status: 'connecting'|'live'|'disconnected') => void} onStatus
 * receivedAt is performance.now() when the event arrived, before parsing.
 */
export function connect(onSnapshot, onDelta, onStatus) {
  let source = null;
  let status = '';
  let lastSnapshotAt = 0;
  let openedAt = 0;
  let retryMs = RETRY_MIN_MS;
  let retryTimer = 0;

  const setStatus = (next) => {
    if (next !== status) {
      status = next;
      onStatus(next);
    }
  };

  // Parses an event's data and hands it on; false when it was bad.
  const deliver = (text, handler) => {
    const receivedAt = performance.now();
    let data;
    try {
      data = JSON.parse(text);
    } catch (e) {
      console.warn('dashboard: bad event data', e);
      return false;
    }
    if (handler(data, receivedAt) === false) return false;
    lastSnapshotAt = Date.now();
    retryMs = RETRY_MIN_MS;
    setStatus('live');
    return true;
  };

  const open = () => {
    clearTimeout(retryTimer);
    if (source) source.close();
    openedAt = Date.now();
    source = new EventSource(EVENTS_URL);
    source.addEventListener('snapshot', (e) => deliver(e.data, onSnapshot));
    source.addEventListener('delta', (e) => {
      if (!deliver(e.data, onDelta)) {
        console.warn('dashboard: a delta that does not follow the snapshot held; resynchronising');
        open();
      }
    });
    // The peer is up but could not ask its actors (overloaded, shutting down): not live.
    source.addEventListener('unavailable', (e) => {
      console.warn('dashboard: the peer cannot build a snapshot now:', e.data);
      setStatus('disconnected');
    });
    source.onerror = () => {
      setStatus('disconnected');
      if (source.readyState === EventSource.CLOSED) {
        retryTimer = setTimeout(open, retryMs);
        retryMs = Math.min(RETRY_MAX_MS, retryMs * 2);
      }
    };
  };

  setInterval(() => {
    const silent = Date.now() - Math.max(lastSnapshotAt, openedAt);
    if (status === 'live' && silent > STALE_MS) setStatus('disconnected');
    if (source && source.readyState === EventSource.OPEN && silent > REOPEN_MS) open();
  }, 1000);

  setStatus('connecting');
  // A first picture at once, even before the stream is up (the stream starts with one too).
  fetch(SNAPSHOT_URL, { cache: 'no-store' })
    .then((r) => (r.ok ? r.text() : Promise.reject(new Error(`HTTP ${r.status}`))))
    .then((text) => { if (!lastSnapshotAt) deliver(text, onSnapshot); })
    .catch((e) => console.warn('dashboard: snapshot', e.message));
  open();
}
