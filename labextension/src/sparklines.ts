/** Small time series of one node's utilization, drawn as inline SVG in the panel's node cards. */

import { bytes } from './format';
import { INodeHistory, SeriesName, seriesMax, sparklinePath } from './utilization';

const WIDTH = 120;
const HEIGHT = 18;
const SVG_NS = 'http://www.w3.org/2000/svg';

interface ISparkSpec {
  key: string;
  label: string;
  used: SeriesName;
  total: SeriesName;
  text: (v: number) => string;
}

const SPECS: ISparkSpec[] = [
  { key: 'cpu', label: 'CPU', used: 'cpu_used', total: 'cpu_total', text: v => `${+v.toFixed(2)}` },
  { key: 'gpu', label: 'GPU', used: 'gpu_used', total: 'gpu_total', text: v => `${+v.toFixed(2)}` },
  { key: 'memory', label: 'Memory', used: 'memory_used', total: 'memory_total', text: bytes },
  { key: 'store', label: 'Store', used: 'store_used_bytes', total: 'store_capacity_bytes', text: bytes }
];

/** One sparkline per series (GPU only where the node has GPUs), over the last `windowMs`; null without samples. */
export function nodeSparklines(history: INodeHistory | undefined, windowMs: number): HTMLElement | null {
  if (!history || !history.t_ms.length) {
    return null;
  }
  const t1 = history.t_ms[history.t_ms.length - 1];
  const t0 = t1 - windowMs;
  const box = document.createElement('div');
  box.className = 'nbray-sparks';
  box.title = `the last ${Math.round(windowMs / 60_000)} minutes, one sample per second`;
  for (const spec of SPECS) {
    const used = history[spec.used];
    const max = seriesMax(history[spec.total]);
    if (spec.key === 'gpu' && max <= 0) {
      continue;
    }
    const svg = document.createElementNS(SVG_NS, 'svg');
    svg.setAttribute('width', String(WIDTH));
    svg.setAttribute('height', String(HEIGHT));
    svg.setAttribute('viewBox', `0 0 ${WIDTH} ${HEIGHT}`);
    const path = document.createElementNS(SVG_NS, 'path');
    path.setAttribute('d', sparklinePath(history.t_ms, used, t0, t1, max, WIDTH, HEIGHT));
    path.setAttribute('class', 'nbray-spark-line');
    svg.appendChild(path);
    const spark = document.createElement('div');
    spark.className = `nbray-spark nbray-spark-${spec.key}`;
    spark.dataset.series = spec.key;
    spark.dataset.points = String(history.t_ms.length);
    spark.dataset.last = String(used[used.length - 1]);
    const label = document.createElement('span');
    label.className = 'nbray-spark-label';
    label.textContent = spec.label;
    const value = document.createElement('span');
    value.className = 'nbray-spark-value';
    value.textContent = `peak ${spec.text(seriesMax(used))}`;
    spark.append(label, svg, value);
    box.appendChild(spark);
  }
  return box;
}
