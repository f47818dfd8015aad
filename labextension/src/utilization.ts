/**
 * Per-node utilization history (`api/utilization`): merging incremental
 * replies and turning a series into a sparkline. Pure, no DOM.
 */

export const SERIES = [
  'cpu_used',
  'cpu_total',
  'gpu_used',
  'gpu_total',
  'memory_used',
  'memory_total',
  'store_used_bytes',
  'store_capacity_bytes'
] as const;

export type SeriesName = (typeof SERIES)[number];

export interface INodeHistory {
  node_id: string;
  state: string;
  t_ms: number[];
  cpu_used: number[];
  cpu_total: number[];
  gpu_used: number[];
  gpu_total: number[];
  memory_used: number[];
  memory_total: number[];
  store_used_bytes: number[];
  store_capacity_bytes: number[];
}

export interface IUtilizationReply {
  period_ms: number;
  history_ms: number;
  now_ms: number;
  series: string[];
  nodes: INodeHistory[];
}

/**
 * `current` with the newer samples of `reply` appended, samples older than
 * the reply's window dropped, and nodes the reply no longer has removed
 * when it was a full read (`full`).
 */
export function mergeHistory(
  current: Map<string, INodeHistory>,
  reply: IUtilizationReply,
  full: boolean
): Map<string, INodeHistory> {
  const out = new Map<string, INodeHistory>();
  const oldest = reply.now_ms - reply.history_ms;
  const seen = new Set<string>();
  for (const fresh of reply.nodes) {
    seen.add(fresh.node_id);
    const old = current.get(fresh.node_id);
    const merged: INodeHistory = { ...fresh };
    if (old && !full) {
      const last = old.t_ms.length ? old.t_ms[old.t_ms.length - 1] : -Infinity;
      let from = 0;
      while (from < fresh.t_ms.length && fresh.t_ms[from] <= last) {
        from++;
      }
      merged.t_ms = old.t_ms.concat(fresh.t_ms.slice(from));
      for (const name of SERIES) {
        merged[name] = old[name].concat(fresh[name].slice(from));
      }
    }
    let cut = 0;
    while (cut < merged.t_ms.length && merged.t_ms[cut] < oldest) {
      cut++;
    }
    if (cut) {
      merged.t_ms = merged.t_ms.slice(cut);
      for (const name of SERIES) {
        merged[name] = merged[name].slice(cut);
      }
    }
    out.set(fresh.node_id, merged);
  }
  if (!full) {
    for (const [id, old] of current) {
      if (!seen.has(id) && old.t_ms.length && old.t_ms[old.t_ms.length - 1] >= oldest) {
        out.set(id, old);
      }
    }
  }
  return out;
}

/**
 * An SVG path for `values` at `times` in a `width` x `height` box: time
 * from `t0` to `t1` left to right, 0 to `max` bottom to top (values above
 * are clipped). Empty when there is nothing to draw.
 */
export function sparklinePath(
  times: number[],
  values: number[],
  t0: number,
  t1: number,
  max: number,
  width: number,
  height: number
): string {
  const span = Math.max(1, t1 - t0);
  const top = max > 0 ? max : 1;
  const parts: string[] = [];
  for (let i = 0; i < times.length && i < values.length; i++) {
    if (times[i] < t0 || times[i] > t1) {
      continue;
    }
    const x = ((times[i] - t0) / span) * width;
    const v = Math.min(Math.max(values[i], 0), top);
    const y = height - (v / top) * height;
    parts.push(`${parts.length ? 'L' : 'M'}${x.toFixed(1)},${y.toFixed(1)}`);
  }
  return parts.join('');
}

/** The largest value of a series (or of its capacity series), at least 0. */
export function seriesMax(values: number[]): number {
  let m = 0;
  for (const v of values) {
    if (v > m) {
      m = v;
    }
  }
  return m;
}
