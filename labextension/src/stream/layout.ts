/**
 * Where the task stream draws things: rows (one per worker, grouped by
 * node), the time window (follows now, zoom, pan), and the rectangles of
 * one frame, with bars thinner than a pixel merged per pixel column.
 *
 * Pure functions, no DOM: the canvas view calls them every frame, so they
 * touch only the bars in view (rows keep bars sorted by start and a bound
 * on their length, to find the first visible one by binary search).
 */

import { IStreamBar } from './model';

// ---- rows -------------------------------------------------------------------------------------------------------

export interface IStreamRow {
  /** `<node id>/<worker id>` */
  key: string;
  nodeId: string;
  workerId: string;
  workerPid: number | null;
  /** First row of its node (the node's label goes there). */
  nodeFirst: boolean;
  /** Bars sorted by start. */
  bars: IStreamBar[];
  /** Longest finished bar (ms): no bar starting earlier than `start - this` can reach `start`. */
  maxFinishedMs: number;
  /** Index of the first bar still running, or -1. */
  firstRunning: number;
}

/**
 * One row per worker that ran something, rows of a node together; nodes in
 * `nodeOrder` order (unknown ones after, by id), workers by pid.
 */
export function layoutRows(bars: IStreamBar[], nodeOrder: string[] = []): IStreamRow[] {
  const byKey = new Map<string, IStreamRow>();
  for (const bar of bars) {
    const key = `${bar.nodeId}/${bar.workerId}`;
    let row = byKey.get(key);
    if (!row) {
      row = {
        key,
        nodeId: bar.nodeId,
        workerId: bar.workerId,
        workerPid: bar.workerPid,
        nodeFirst: false,
        bars: [],
        maxFinishedMs: 0,
        firstRunning: -1
      };
      byKey.set(key, row);
    }
    row.bars.push(bar);
    if (row.workerPid === null && bar.workerPid !== null) {
      row.workerPid = bar.workerPid;
    }
  }
  const rank = new Map(nodeOrder.map((id, i) => [id, i]));
  const rows = [...byKey.values()].sort((a, b) => {
    const ra = rank.get(a.nodeId) ?? nodeOrder.length;
    const rb = rank.get(b.nodeId) ?? nodeOrder.length;
    return (
      ra - rb ||
      a.nodeId.localeCompare(b.nodeId) ||
      (a.workerPid ?? 0) - (b.workerPid ?? 0) ||
      a.workerId.localeCompare(b.workerId)
    );
  });
  let previousNode: string | null = null;
  for (const row of rows) {
    row.nodeFirst = row.nodeId !== previousNode;
    previousNode = row.nodeId;
    row.bars.sort((a, b) => a.start - b.start);
    for (let i = 0; i < row.bars.length; i++) {
      const bar = row.bars[i];
      if (bar.end === null) {
        if (row.firstRunning < 0) {
          row.firstRunning = i;
        }
      } else if (bar.end - bar.start > row.maxFinishedMs) {
        row.maxFinishedMs = bar.end - bar.start;
      }
    }
  }
  return rows;
}

// ---- the time window --------------------------------------------------------------------------------------------

export interface IViewport {
  /** Right edge (ms since the epoch); ignored while following now. */
  end: number;
  /** Width of the window in ms. */
  spanMs: number;
  /** The right edge is now, moving with the clock. */
  follow: boolean;
}

export const MIN_SPAN_MS = 20;
export const MAX_SPAN_MS = 6 * 3600_000;

export function initialViewport(spanMs = 60_000): IViewport {
  return { end: 0, spanMs, follow: true };
}

/** [start, end] of the window at time `now`. */
export function windowAt(v: IViewport, now: number): [number, number] {
  const end = v.follow ? now : v.end;
  return [end - v.spanMs, end];
}

/** Dragging by `dxPx` (positive: to the right, showing earlier times). Back at now, it follows again. */
export function panBy(v: IViewport, dxPx: number, widthPx: number, now: number): IViewport {
  const [, end] = windowAt(v, now);
  const moved = end - (dxPx * v.spanMs) / Math.max(1, widthPx);
  if (moved >= now) {
    return { end: now, spanMs: v.spanMs, follow: true };
  }
  return { end: moved, spanMs: v.spanMs, follow: false };
}

/** Zoom by `factor` (>1: in) keeping the time under `anchor` (0 left .. 1 right) in place. */
export function zoomAt(v: IViewport, factor: number, anchor: number, now: number): IViewport {
  const spanMs = Math.min(MAX_SPAN_MS, Math.max(MIN_SPAN_MS, v.spanMs / factor));
  if (v.follow) {
    return { end: now, spanMs, follow: true };
  }
  const [start] = windowAt(v, now);
  const at = start + anchor * v.spanMs;
  const end = at + (1 - anchor) * spanMs;
  return end >= now ? { end: now, spanMs, follow: true } : { end, spanMs, follow: false };
}

/** Tick times for the axis: a 1/2/5 step giving at most `maxTicks` ticks. */
export function timeTicks(start: number, end: number, maxTicks: number): { step: number; ticks: number[] } {
  const span = Math.max(1, end - start);
  const raw = span / Math.max(1, maxTicks);
  const pow = Math.pow(10, Math.floor(Math.log10(raw)));
  let step = pow * 10;
  for (const m of [1, 2, 5, 10]) {
    if (pow * m >= raw) {
      step = pow * m;
      break;
    }
  }
  const ticks: number[] = [];
  for (let t = Math.ceil(start / step) * step; t <= end; t += step) {
    ticks.push(t);
  }
  return { step, ticks };
}

// ---- one frame --------------------------------------------------------------------------------------------------

export interface ISegment {
  row: number;
  /** Pixels from the left of the time area. */
  x0: number;
  x1: number;
  /** The function that colours it (the most frequent one when merged). */
  func: string;
  /** A failed attempt is (among) them. */
  failed: boolean;
  running: boolean;
  /** Bars drawn as this rectangle (>1: merged). */
  count: number;
  /** The bar itself when count is 1. */
  bar: IStreamBar | null;
}

export interface IFrame {
  segments: ISegment[];
  /** Bars at least partly in the window. */
  barsInView: number;
  failedInView: number;
  /** Bars per function in the window. */
  funcs: Map<string, number>;
}

/** First index whose bar starts at or after `t` (bars sorted by start). */
export function firstStartingAt(bars: IStreamBar[], t: number): number {
  let lo = 0;
  let hi = bars.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (bars[mid].start < t) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

/**
 * Rectangles for the window [start, start + widthPx * msPerPx]: a bar at
 * least `minPx` wide is its own rectangle; thinner ones falling in the
 * same or touching pixel columns merge into one, coloured by their most
 * frequent function and marked failed if any of them failed.
 */
export function frameSegments(
  rows: IStreamRow[],
  start: number,
  msPerPx: number,
  widthPx: number,
  now: number,
  minPx = 1
): IFrame {
  const end = start + widthPx * msPerPx;
  const segments: ISegment[] = [];
  const funcs = new Map<string, number>();
  let barsInView = 0;
  let failedInView = 0;
  for (let r = 0; r < rows.length; r++) {
    const row = rows[r];
    const bars = row.bars;
    let i = firstStartingAt(bars, start - row.maxFinishedMs);
    if (row.firstRunning >= 0 && row.firstRunning < i) {
      i = row.firstRunning;
    }
    let merged: ISegment | null = null;
    let mergedFuncs: Map<string, number> | null = null;
    const flush = (): void => {
      if (merged !== null) {
        if (mergedFuncs !== null) {
          let best = 0;
          for (const [f, n] of mergedFuncs) {
            if (n > best) {
              best = n;
              merged.func = f;
            }
          }
        }
        segments.push(merged);
        merged = null;
        mergedFuncs = null;
      }
    };
    for (; i < bars.length; i++) {
      const bar = bars[i];
      if (bar.start > end) {
        break;
      }
      const barEnd = bar.end ?? now;
      if (barEnd < start) {
        continue;
      }
      barsInView++;
      if (bar.failed) {
        failedInView++;
      }
      funcs.set(bar.func, (funcs.get(bar.func) || 0) + 1);
      const x0 = (Math.max(bar.start, start) - start) / msPerPx;
      const x1 = (Math.min(barEnd, end) - start) / msPerPx;
      if (x1 - x0 >= minPx) {
        segments.push({ row: r, x0, x1, func: bar.func, failed: bar.failed, running: bar.end === null, count: 1, bar });
        continue;
      }
      const px = Math.floor(x0);
      const m: ISegment | null = merged;
      if (m !== null && px <= m.x1) {
        m.x1 = Math.max(m.x1, px + 1);
        m.count++;
        m.failed = m.failed || bar.failed;
        m.running = m.running || bar.end === null;
        m.bar = null;
        if (mergedFuncs === null) {
          mergedFuncs = new Map([[m.func, m.count - 1]]);
        }
        mergedFuncs.set(bar.func, (mergedFuncs.get(bar.func) || 0) + 1);
        continue;
      }
      flush();
      merged = { row: r, x0: px, x1: px + 1, func: bar.func, failed: bar.failed, running: bar.end === null, count: 1, bar };
    }
    flush();
  }
  return { segments, barsInView, failedInView, funcs };
}

/** The segment under a point, or null (`rowOf` maps y to a row index). */
export function segmentAt(segments: ISegment[], row: number, x: number, slopPx = 2): ISegment | null {
  let best: ISegment | null = null;
  let bestDist = slopPx + 1;
  for (const s of segments) {
    if (s.row !== row) {
      continue;
    }
    const dist = x < s.x0 ? s.x0 - x : x > s.x1 ? x - s.x1 : 0;
    if (dist < bestDist) {
      best = s;
      bestDist = dist;
    }
  }
  return best;
}

/**
 * A function's name without its module path: `mod.sub.f` -> `f`,
 * `mod.Counter.incr` -> `Counter.incr`, `mod.outer.<locals>.f` -> `f`.
 */
export function shortFuncName(func: string): string {
  const local = func.lastIndexOf('<locals>.');
  const name = local >= 0 ? func.slice(local + '<locals>.'.length) : func;
  const parts = name.split('.');
  if (parts.length < 2) {
    return name;
  }
  const owner = parts[parts.length - 2];
  const isClass = owner.length > 0 && owner[0] === owner[0].toUpperCase() && owner[0] !== owner[0].toLowerCase();
  return isClass ? `${owner}.${parts[parts.length - 1]}` : parts[parts.length - 1];
}

// ---- colours ----------------------------------------------------------------------------------------------------

const PALETTE = [
  '#4e79a7',
  '#f28e2b',
  '#59a14f',
  '#b07aa1',
  '#76b7b2',
  '#edc948',
  '#9c755f',
  '#ff9da7',
  '#86bcb6',
  '#8cd17d',
  '#a0cbe8',
  '#d4a6c8'
];
/** Reserved for failures, never a function's colour. */
export const FAILED_COLOR = '#d62728';

/** A stable colour per function name (the same in every view and after a reload). */
export function funcColor(func: string): string {
  let hash = 0;
  for (let i = 0; i < func.length; i++) {
    hash = (Math.imul(hash, 31) + func.charCodeAt(i)) | 0;
  }
  return PALETTE[Math.abs(hash) % PALETTE.length];
}
