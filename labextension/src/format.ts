/** Display helpers. */

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

export function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined || !isFinite(n)) {
    return '–';
  }
  let v = n;
  let u = 0;
  while (v >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(v >= 100 ? 0 : 1)} ${UNITS[u]}`;
}

export function duration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !isFinite(ms)) {
    return '–';
  }
  if (ms < 1000) {
    return `${Math.round(ms)} ms`;
  }
  if (ms < 60_000) {
    return `${(ms / 1000).toFixed(2)} s`;
  }
  return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}

export function clock(ms: number | null | undefined): string {
  if (!ms) {
    return '–';
  }
  const d = new Date(ms);
  const pad = (x: number, n = 2) => String(x).padStart(n, '0');
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

export function short(id: string | null | undefined, n = 8): string {
  return id ? id.slice(0, n) : '–';
}

/** Object ids share their creating task's prefix; the start and the end tell them apart. */
export function objectId(id: string): string {
  return id.length > 16 ? `${id.slice(0, 8)}…${id.slice(-6)}` : id;
}

export function amount(v: number): string {
  return Number.isInteger(v) ? String(v) : v.toFixed(2);
}

/** A DOM element with attributes and children, for building the panel without a framework. */
export function h(
  tag: string,
  attrs: { [name: string]: string | number | boolean | null | undefined } = {},
  ...children: (Node | string | null | undefined)[]
): HTMLElement {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) {
      continue;
    }
    if (k === 'class') {
      el.className = String(v);
    } else {
      el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  for (const c of children) {
    if (c !== null && c !== undefined) {
      el.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
    }
  }
  return el;
}

/** Fill a filter dropdown ("all" first, then each value), rebuilding its
 * options only when the values changed, and select `current`. */
export function fillSelect(
  select: HTMLSelectElement,
  all: string,
  values: string[],
  current: string | null,
  label: (v: string) => string
): void {
  const key = values.join('\n');
  if (select.dataset.values !== key) {
    select.dataset.values = key;
    select.textContent = '';
    select.append(h('option', { value: '' }, all));
    for (const v of values) {
      select.append(h('option', { value: v }, label(v)));
    }
  }
  select.value = current || '';
}
