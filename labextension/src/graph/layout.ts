/**
 * A layered layout for the task graph, top to bottom.
 *
 * Ranks are longest paths from the sources (edges point from producer to
 * consumer, parent to child); within a rank, nodes are ordered by the mean
 * position of their predecessors (one barycentre sweep), ties by the order
 * they were first seen, so the picture stays put as the graph grows. A
 * rank wider than `maxPerRow` wraps onto several rows. Linear in nodes and
 * edges apart from the per-rank sorts; the panel calls it only when the
 * structure changes.
 */

export interface ILayoutNode {
  id: string;
  seq: number;
  kind: string;
}

export interface ILayoutEdge {
  source: string;
  target: string;
}

export interface IPoint {
  x: number;
  y: number;
}

export interface ILayout {
  positions: Map<string, IPoint>;
  ranks: Map<string, number>;
  width: number;
  height: number;
}

export interface ILayoutOptions {
  maxPerRow: number;
  columnWidth: number;
  rowHeight: number;
}

export const DEFAULT_LAYOUT_OPTIONS: ILayoutOptions = {
  maxPerRow: 8,
  columnWidth: 150,
  rowHeight: 56
};

export function layeredLayout(
  nodes: ILayoutNode[],
  edges: ILayoutEdge[],
  options: Partial<ILayoutOptions> = {}
): ILayout {
  const opts = { ...DEFAULT_LAYOUT_OPTIONS, ...options };
  const index = new Map<string, number>();
  nodes.forEach((n, i) => index.set(n.id, i));
  const succ: number[][] = nodes.map(() => []);
  const pred: number[][] = nodes.map(() => []);
  const indegree = new Array<number>(nodes.length).fill(0);
  for (const e of edges) {
    const s = index.get(e.source);
    const t = index.get(e.target);
    if (s === undefined || t === undefined || s === t) {
      continue;
    }
    succ[s].push(t);
    pred[t].push(s);
    indegree[t]++;
  }

  // Longest-path ranks (Kahn's order); nodes left on a cycle go last.
  const rank = new Array<number>(nodes.length).fill(0);
  const queue: number[] = [];
  for (let i = 0; i < nodes.length; i++) {
    if (indegree[i] === 0) {
      queue.push(i);
    }
  }
  const done = new Array<boolean>(nodes.length).fill(false);
  for (let head = 0; head < queue.length; head++) {
    const v = queue[head];
    done[v] = true;
    for (const w of succ[v]) {
      rank[w] = Math.max(rank[w], rank[v] + 1);
      if (--indegree[w] === 0) {
        queue.push(w);
      }
    }
  }
  let maxRank = 0;
  for (let i = 0; i < nodes.length; i++) {
    if (done[i]) {
      maxRank = Math.max(maxRank, rank[i]);
    }
  }
  for (let i = 0; i < nodes.length; i++) {
    if (!done[i]) {
      rank[i] = maxRank + 1;
    }
  }

  const layers: number[][] = [];
  for (let i = 0; i < nodes.length; i++) {
    (layers[rank[i]] = layers[rank[i]] || []).push(i);
  }
  const order = new Array<number>(nodes.length).fill(0);
  const positions = new Map<string, IPoint>();
  const ranks = new Map<string, number>();
  let row = 0;
  let width = 0;
  for (const layer of layers) {
    if (!layer) {
      continue;
    }
    const key = new Map<number, number>();
    for (const v of layer) {
      const ps = pred[v];
      let k = nodes[v].seq;
      if (ps.length > 0) {
        let sum = 0;
        for (const p of ps) {
          sum += order[p];
        }
        k = sum / ps.length;
      }
      key.set(v, k);
    }
    layer.sort((a, b) => key.get(a)! - key.get(b)! || nodes[a].seq - nodes[b].seq);
    const perRow = Math.max(1, opts.maxPerRow);
    layer.forEach((v, i) => {
      order[v] = i;
      const r = row + Math.floor(i / perRow);
      const inRow = Math.min(perRow, layer.length - Math.floor(i / perRow) * perRow);
      const col = i % perRow;
      const x = (col - (inRow - 1) / 2) * opts.columnWidth;
      positions.set(nodes[v].id, { x, y: r * opts.rowHeight });
      ranks.set(nodes[v].id, rank[v]);
      width = Math.max(width, inRow * opts.columnWidth);
    });
    row += Math.ceil(layer.length / perRow);
  }
  return { positions, ranks, width, height: row * opts.rowHeight };
}
