// Keyed table rows updated in place: rows are created once per key, their cells rewritten
// only when the text changes and moved only when the order changes, so a table refreshed
// every second does not churn the DOM (or lose a text selection).

/**
 * @param {HTMLTableSectionElement} tbody
 * @param {Array<any>} items rows, in display order
 * @param {(item: any) => string} key a stable identity per row
 * @param {(item: any) => Array<string | {text: string, cls?: string}>} cells one entry per column
 * @param {{row?: string, cell?: string}} tags the row and cell elements (a list: li and span)
 */
export function syncRows(tbody, items, key, cells, tags = {}) {
  const rowTag = tags.row || 'tr';
  const cellTag = tags.cell || 'td';
  if (!tbody._rows) tbody._rows = new Map();
  const rows = tbody._rows;
  const seen = new Set();
  let previous = null;
  for (const item of items) {
    const k = key(item);
    if (seen.has(k)) continue;
    seen.add(k);
    const values = cells(item);
    let tr = rows.get(k);
    if (!tr) {
      tr = document.createElement(rowTag);
      tr.dataset.key = k;
      for (let i = 0; i < values.length; i++) tr.appendChild(document.createElement(cellTag));
      rows.set(k, tr);
    }
    values.forEach((value, i) => {
      const td = tr.children[i];
      const text = typeof value === 'object' && value !== null ? value.text : String(value);
      const cls = typeof value === 'object' && value !== null ? value.cls || '' : '';
      if (td.textContent !== text) td.textContent = text;
      if (td.className !== cls) td.className = cls;
    });
    const wanted = previous ? previous.nextSibling : tbody.firstChild;
    if (wanted !== tr) tbody.insertBefore(tr, wanted);
    previous = tr;
  }
  for (const [k, tr] of rows) {
    if (!seen.has(k)) {
      tr.remove();
      rows.delete(k);
    }
  }
}
