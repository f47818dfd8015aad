/**
 * Draws the task graph as SVG, with zoom (wheel, buttons) and pan (drag).
 *
 * The element count stays bounded because the model groups large graphs,
 * so SVG (inspectable, clickable, styled by CSS per state) is enough. The
 * layout is recomputed only when the structure changes; state changes
 * only update classes and labels of the existing elements.
 */

import { IGraphNode, IGraphView } from './model';
import { ILayout, layeredLayout } from './layout';

const SVG = 'http://www.w3.org/2000/svg';
const TASK_W = 130;
const TASK_H = 26;
const GROUP_W = 140;
const GROUP_H = 36;
const OBJECT_R = 7;
const LABEL_CHARS = 18;

export function stateClass(state: string): string {
  if (state === 'FINISHED') {
    return 'finished';
  }
  if (state === 'FAILED') {
    return 'failed';
  }
  if (state.startsWith('RUNNING')) {
    return 'running';
  }
  if (state === 'SUBMITTED_TO_WORKER') {
    return 'submitted';
  }
  if (state === 'OBJECT') {
    return 'object';
  }
  return 'pending';
}

const STACK_ORDER = ['finished', 'running', 'submitted', 'pending', 'failed'];

function el(tag: string, attrs: { [k: string]: string | number } = {}): SVGElement {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) {
    e.setAttribute(k, String(v));
  }
  return e;
}

function truncate(text: string, n = LABEL_CHARS): string {
  return text.length > n ? text.slice(0, n - 1) + '…' : text;
}

function halfHeight(n: IGraphNode): number {
  return n.kind === 'object' ? OBJECT_R : n.kind === 'task' ? TASK_H / 2 : GROUP_H / 2;
}

export class GraphCanvas {
  readonly node: HTMLDivElement;
  onSelect: (node: IGraphNode) => void = () => undefined;

  private _svg: SVGSVGElement;
  private _root: SVGGElement;
  private _structureKey = '';
  private _layout: ILayout | null = null;
  private _elements = new Map<string, SVGGElement>();
  private _nodes = new Map<string, IGraphNode>();
  private _scale = 1;
  private _tx = 0;
  private _ty = 0;
  private _userMoved = false;
  private _drag: { x: number; y: number; tx: number; ty: number; moved: boolean } | null = null;
  private _selected: string | null = null;
  private _view: IGraphView | null = null;
  private _perRow = 0;
  private _resize: ResizeObserver | null = null;

  constructor() {
    this.node = document.createElement('div');
    this.node.className = 'nbray-graph';
    this._svg = el('svg', { class: 'nbray-graph-svg' }) as SVGSVGElement;
    const defs = el('defs');
    for (const kind of ['data', 'parent']) {
      const marker = el('marker', {
        id: `nbray-arrow-${kind}`,
        viewBox: '0 0 10 10',
        refX: 10,
        refY: 5,
        markerWidth: 6,
        markerHeight: 6,
        orient: 'auto-start-reverse'
      });
      marker.appendChild(el('path', { d: 'M 0 0 L 10 5 L 0 10 z', class: `nbray-arrow nbray-arrow-${kind}` }));
      defs.appendChild(marker);
    }
    this._svg.appendChild(defs);
    this._root = el('g', { class: 'nbray-graph-root' }) as SVGGElement;
    this._svg.appendChild(this._root);
    this.node.appendChild(this._svg);
    this._svg.addEventListener('wheel', this._onWheel, { passive: false });
    this._svg.addEventListener('pointerdown', this._onPointerDown);
    this._svg.addEventListener('pointermove', this._onPointerMove);
    this._svg.addEventListener('pointerup', this._onPointerUp);
    this._svg.addEventListener('pointerleave', this._onPointerUp);
    if (typeof ResizeObserver !== 'undefined') {
      this._resize = new ResizeObserver(() => this._onResize());
      this._resize.observe(this.node);
    }
  }

  dispose(): void {
    this._resize?.disconnect();
  }

  /** Nodes per row: narrow containers (the sidebar) get fewer, wider rows get more. */
  private _nodesPerRow(): number {
    const width = this.node.clientWidth || 300;
    return Math.max(2, Math.min(12, Math.round(width / 75)));
  }

  private _onResize(): void {
    if (this._view === null) {
      return;
    }
    if (this._nodesPerRow() !== this._perRow) {
      this._structureKey = '';
      this.render(this._view, this._selected);
    } else if (!this._userMoved) {
      this.fit();
    }
  }

  get scale(): number {
    return this._scale;
  }

  /** Draw a view; lays out again only when its structure changed. */
  render(view: IGraphView, selected: string | null): void {
    this._selected = selected;
    this._view = view;
    if (view.structureKey !== this._structureKey) {
      this._structureKey = view.structureKey;
      this._perRow = this._nodesPerRow();
      this._layout = layeredLayout(view.nodes, view.edges, {
        columnWidth: GROUP_W + 14,
        rowHeight: 58,
        maxPerRow: this._perRow
      });
      this._rebuild(view);
      if (!this._userMoved) {
        this.fit();
      }
    } else {
      for (const n of view.nodes) {
        this._update(n);
      }
    }
    this.node.dataset.nodeCount = String(view.nodes.length);
    this.node.dataset.grouped = String(view.grouped);
  }

  zoom(factor: number, cx?: number, cy?: number): void {
    const rect = this._svg.getBoundingClientRect();
    const x = cx === undefined ? rect.width / 2 : cx;
    const y = cy === undefined ? rect.height / 2 : cy;
    const next = Math.min(8, Math.max(0.05, this._scale * factor));
    const k = next / this._scale;
    this._tx = x - (x - this._tx) * k;
    this._ty = y - (y - this._ty) * k;
    this._scale = next;
    this._userMoved = true;
    this._apply();
  }

  /** Show the whole graph. */
  fit(): void {
    const layout = this._layout;
    const rect = this._svg.getBoundingClientRect();
    if (!layout || rect.width === 0 || rect.height === 0) {
      return;
    }
    const w = layout.width + GROUP_W;
    const h = layout.height + GROUP_H * 2;
    this._scale = Math.min(1.2, Math.max(0.05, Math.min(rect.width / w, rect.height / h)));
    this._tx = rect.width / 2;
    this._ty = (rect.height - layout.height * this._scale) / 2;
    this._userMoved = false;
    this._apply();
  }

  private _apply(): void {
    this._root.setAttribute('transform', `translate(${this._tx},${this._ty}) scale(${this._scale})`);
  }

  private _rebuild(view: IGraphView): void {
    const layout = this._layout!;
    this._root.textContent = '';
    this._elements.clear();
    this._nodes.clear();
    const byId = new Map(view.nodes.map(n => [n.id, n]));
    const edgeLayer = el('g', { class: 'nbray-edges' });
    for (const e of view.edges) {
      const s = layout.positions.get(e.source);
      const t = layout.positions.get(e.target);
      const sn = byId.get(e.source);
      const tn = byId.get(e.target);
      if (!s || !t || !sn || !tn) {
        continue;
      }
      const y1 = s.y + halfHeight(sn);
      const y2 = t.y - halfHeight(tn);
      const mid = (y1 + y2) / 2;
      const path = el('path', {
        d: `M ${s.x} ${y1} C ${s.x} ${mid}, ${t.x} ${mid}, ${t.x} ${y2}`,
        class: `nbray-edge nbray-edge-${e.kind}`,
        'marker-end': `url(#nbray-arrow-${e.kind})`,
        'stroke-width': 1 + Math.min(4, Math.log2(e.count))
      });
      path.dataset.source = e.source;
      path.dataset.target = e.target;
      edgeLayer.appendChild(path);
    }
    const nodeLayer = el('g', { class: 'nbray-nodes' });
    for (const n of view.nodes) {
      const p = layout.positions.get(n.id);
      if (!p) {
        continue;
      }
      const g = el('g', { class: 'nbray-gnode', transform: `translate(${p.x},${p.y})` }) as SVGGElement;
      g.dataset.id = n.id;
      g.dataset.kind = n.kind;
      if (n.taskId) {
        g.dataset.taskId = n.taskId;
      }
      if (n.objectId) {
        g.dataset.objectId = n.objectId;
      }
      if (n.func) {
        g.dataset.func = n.func;
      }
      const title = el('title');
      g.appendChild(title);
      if (n.kind === 'object') {
        g.appendChild(el('circle', { r: OBJECT_R, class: 'nbray-shape' }));
      } else {
        const w = n.kind === 'task' ? TASK_W : GROUP_W;
        const hgt = n.kind === 'task' ? TASK_H : GROUP_H;
        g.appendChild(
          el('rect', { x: -w / 2, y: -hgt / 2, width: w, height: hgt, rx: n.kind === 'task' ? 6 : 3, class: 'nbray-shape' })
        );
        const text = el('text', { x: 0, y: n.kind === 'task' ? 4 : -2, 'text-anchor': 'middle', class: 'nbray-label' });
        g.appendChild(text);
        if (n.kind === 'group') {
          g.appendChild(el('g', { class: 'nbray-stack' }));
        }
      }
      nodeLayer.appendChild(g);
      this._elements.set(n.id, g);
      this._update(n);
    }
    this._root.appendChild(edgeLayer);
    this._root.appendChild(nodeLayer);
  }

  private _update(n: IGraphNode): void {
    const g = this._elements.get(n.id);
    if (!g) {
      return;
    }
    this._nodes.set(n.id, n);
    const cls = stateClass(n.state);
    g.setAttribute(
      'class',
      `nbray-gnode nbray-kind-${n.kind} nbray-state-${cls}${this._selected === n.id ? ' nbray-selected' : ''}`
    );
    g.dataset.state = n.state;
    const title = g.querySelector('title');
    if (title) {
      title.textContent =
        n.kind === 'object'
          ? `object ${n.objectId}`
          : n.kind === 'task'
            ? `${n.label} (${n.state}) ${n.taskId}`
            : `${n.label}: ${Object.entries(n.counts || {})
                .map(([s, c]) => `${c} ${s}`)
                .join(', ')}`;
    }
    const text = g.querySelector('text');
    if (text) {
      text.textContent = truncate(n.label, n.kind === 'task' ? LABEL_CHARS : LABEL_CHARS + 2);
    }
    const stack = g.querySelector('.nbray-stack');
    if (stack && n.counts && n.size) {
      stack.textContent = '';
      const byClass: { [cls: string]: number } = {};
      for (const [state, count] of Object.entries(n.counts)) {
        const c = stateClass(state);
        byClass[c] = (byClass[c] || 0) + count;
      }
      let x = -GROUP_W / 2 + 4;
      const width = GROUP_W - 8;
      for (const c of STACK_ORDER) {
        const count = byClass[c] || 0;
        if (!count) {
          continue;
        }
        const w = (width * count) / n.size;
        stack.appendChild(el('rect', { x, y: 6, width: Math.max(1, w), height: 8, class: `nbray-stack-${c}` }));
        x += w;
      }
    }
  }

  private _onWheel = (event: WheelEvent): void => {
    event.preventDefault();
    const rect = this._svg.getBoundingClientRect();
    this.zoom(Math.exp(-event.deltaY * 0.0015), event.clientX - rect.left, event.clientY - rect.top);
  };

  private _onPointerDown = (event: PointerEvent): void => {
    if (event.button !== 0) {
      return;
    }
    this._drag = { x: event.clientX, y: event.clientY, tx: this._tx, ty: this._ty, moved: false };
  };

  private _onPointerMove = (event: PointerEvent): void => {
    const d = this._drag;
    if (!d) {
      return;
    }
    const dx = event.clientX - d.x;
    const dy = event.clientY - d.y;
    if (!d.moved && Math.abs(dx) + Math.abs(dy) < 4) {
      return;
    }
    if (!d.moved) {
      d.moved = true;
      this._svg.setPointerCapture(event.pointerId);
    }
    this._tx = d.tx + dx;
    this._ty = d.ty + dy;
    this._userMoved = true;
    this._apply();
  };

  private _onPointerUp = (event: PointerEvent): void => {
    const d = this._drag;
    this._drag = null;
    if (!d || d.moved || event.type === 'pointerleave') {
      return;
    }
    const target = (event.target as Element).closest('.nbray-gnode') as SVGGElement | null;
    const id = target?.dataset.id;
    const node = id ? this._nodes.get(id) : undefined;
    if (node) {
      this.onSelect(node);
    }
  };
}
