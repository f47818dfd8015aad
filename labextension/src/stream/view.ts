/**
 * The task stream drawn on a canvas: a time axis, one row per worker
 * (node label on its first row), a rectangle per bar or per merged pixel
 * column, failed attempts outlined in red. Drag to pan, wheel to zoom,
 * double-click to follow now again; hover shows a bar, a click selects it.
 *
 * A frame costs `frameSegments` over the bars in view and one fillRect
 * per rectangle; redraws are coalesced to one per animation frame, and
 * while following now the view redraws a few times a second.
 */

import { duration, short } from '../format';
import {
  FAILED_COLOR,
  frameSegments,
  funcColor,
  IFrame,
  initialViewport,
  ISegment,
  IStreamRow,
  IViewport,
  panBy,
  segmentAt,
  shortFuncName,
  timeTicks,
  windowAt,
  zoomAt
} from './layout';
import { IStreamBar } from './model';

const ROW_PX = 12;
const ROW_GAP_PX = 2;
const NODE_GAP_PX = 6;
const AXIS_PX = 16;
const LABEL_PX = 92;
const FOLLOW_REDRAW_MS = 100;
const CLICK_SLOP_PX = 3;

export class StreamCanvas {
  readonly node: HTMLElement;
  readonly canvas: HTMLCanvasElement;
  viewport: IViewport = initialViewport();
  /** Called with each drawn frame (legend, counts). */
  onFrame: (frame: IFrame) => void = () => undefined;
  /** Called when a single bar is clicked. */
  onSelect: (bar: IStreamBar) => void = () => undefined;
  clock: () => number = () => Date.now();
  draws = 0;
  private _tip: HTMLElement;
  private _rows: IStreamRow[] = [];
  private _rowTop: number[] = [];
  private _labels = new Map<string, string>();
  private _frame: IFrame | null = null;
  private _raf: number | null = null;
  private _followTimer: number | null = null;
  private _drag: { x: number; viewport: IViewport; moved: boolean } | null = null;
  private _selectedKey: string | null = null;
  /** Width of the view in CSS pixels, kept by a ResizeObserver (0 while hidden), so a frame forces no layout. */
  private _width = 0;
  private _fg = '#333';
  private _resize: ResizeObserver | null = null;
  private _labels_: { canvas: HTMLCanvasElement; key: string } | null = null;

  constructor() {
    this.canvas = document.createElement('canvas');
    this.canvas.className = 'nbray-stream-canvas';
    this._tip = document.createElement('div');
    this._tip.className = 'nbray-stream-tip';
    this._tip.style.display = 'none';
    this.node = document.createElement('div');
    this.node.className = 'nbray-stream';
    this.node.append(this.canvas, this._tip);
    const c = this.canvas;
    c.addEventListener('pointerdown', e => this._down(e));
    c.addEventListener('pointermove', e => this._move(e));
    c.addEventListener('pointerup', e => this._up(e));
    c.addEventListener('pointerleave', () => this._hideTip());
    c.addEventListener('wheel', e => this._wheel(e), { passive: false });
    c.addEventListener('dblclick', () => this.follow());
    if (typeof ResizeObserver !== 'undefined') {
      this._resize = new ResizeObserver(entries => {
        const width = Math.floor(entries[entries.length - 1].contentRect.width);
        if (width !== this._width) {
          this._width = width;
          this.requestDraw();
        }
      });
      this._resize.observe(this.node);
    }
  }

  setRows(rows: IStreamRow[], nodeLabels: Map<string, string>): void {
    this._rows = rows;
    this._labels = nodeLabels;
    this._fg = getComputedStyle(this.node).color || this._fg;
    if (!this._resize) {
      this._width = this.node.clientWidth;
    }
    this._rowTop = [];
    let y = AXIS_PX;
    for (let i = 0; i < rows.length; i++) {
      if (rows[i].nodeFirst && i > 0) {
        y += NODE_GAP_PX;
      }
      this._rowTop.push(y);
      y += ROW_PX + ROW_GAP_PX;
    }
    this.requestDraw();
  }

  zoom(factor: number, anchor = 1): void {
    this.viewport = zoomAt(this.viewport, factor, anchor, this.clock());
    this.requestDraw();
  }

  follow(): void {
    this.viewport = { ...this.viewport, follow: true };
    this.requestDraw();
  }

  select(key: string | null): void {
    this._selectedKey = key;
    this.requestDraw();
  }

  requestDraw(): void {
    if (this._raf === null) {
      this._raf = requestAnimationFrame(() => {
        this._raf = null;
        this.draw();
      });
    }
  }

  dispose(): void {
    if (this._raf !== null) {
      cancelAnimationFrame(this._raf);
    }
    if (this._followTimer !== null) {
      clearTimeout(this._followTimer);
    }
    this._resize?.disconnect();
  }

  private _visible(): boolean {
    return this.node.isConnected && this._width > 0;
  }

  private _timeWidth(): number {
    return Math.max(50, this._width - LABEL_PX);
  }

  draw(): void {
    if (!this._visible()) {
      return; // drawn again when shown
    }
    const drawStart = performance.now();
    const cssWidth = Math.max(LABEL_PX + 50, this._width);
    const rowsBottom = this._rowTop.length ? this._rowTop[this._rowTop.length - 1] + ROW_PX + ROW_GAP_PX : AXIS_PX + 24;
    const cssHeight = rowsBottom + 2;
    const dpr = window.devicePixelRatio || 1;
    const c = this.canvas;
    if (c.width !== Math.round(cssWidth * dpr) || c.height !== Math.round(cssHeight * dpr)) {
      c.width = Math.round(cssWidth * dpr);
      c.height = Math.round(cssHeight * dpr);
      c.style.width = `${cssWidth}px`;
      c.style.height = `${cssHeight}px`;
    }
    const ctx = c.getContext('2d');
    if (!ctx) {
      return;
    }
    const now = this.clock();
    const widthPx = cssWidth - LABEL_PX;
    const [start, end] = windowAt(this.viewport, now);
    const msPerPx = (end - start) / widthPx;
    const frame = frameSegments(this._rows, start, msPerPx, widthPx, now);
    this._frame = frame;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, cssWidth, cssHeight);
    const fg = this._fg;
    ctx.font = '10px sans-serif';
    ctx.textBaseline = 'middle';

    // axis
    ctx.fillStyle = fg;
    ctx.globalAlpha = 0.6;
    const { ticks } = timeTicks(start, end, Math.max(2, Math.floor(widthPx / 70)));
    for (const t of ticks) {
      const x = LABEL_PX + (t - start) / msPerPx;
      ctx.fillRect(x, AXIS_PX - 4, 1, Math.max(4, cssHeight - AXIS_PX));
      const label = this.viewport.follow ? `${((t - now) / 1000).toFixed(end - start < 5000 ? 1 : 0)} s` : clockText(t);
      ctx.fillText(label, Math.min(x + 2, cssWidth - 40), AXIS_PX / 2);
    }
    ctx.globalAlpha = 0.12;
    for (let i = 0; i < this._rows.length; i++) {
      ctx.fillRect(LABEL_PX, this._rowTop[i] + ROW_PX / 2, widthPx, 1);
    }

    // row labels: drawn once per layout into their own canvas, copied each frame
    ctx.globalAlpha = 1;
    ctx.drawImage(this._labelCanvas(cssHeight, dpr, fg), 0, 0, LABEL_PX, cssHeight);

    // bars
    ctx.save();
    ctx.beginPath();
    ctx.rect(LABEL_PX, 0, widthPx, cssHeight);
    ctx.clip();
    let colour = '';
    for (const s of frame.segments) {
      const x = LABEL_PX + s.x0;
      const w = Math.max(1, s.x1 - s.x0);
      const y = this._rowTop[s.row];
      const fill = funcColor(s.func);
      if (fill !== colour) {
        ctx.fillStyle = fill;
        colour = fill;
      }
      ctx.globalAlpha = s.running ? 0.7 : 1;
      ctx.fillRect(x, y, w, ROW_PX);
      if (s.failed) {
        ctx.globalAlpha = 1;
        ctx.fillStyle = FAILED_COLOR;
        ctx.fillRect(x, y, w, 3);
        if (w > 3) {
          ctx.strokeStyle = FAILED_COLOR;
          ctx.lineWidth = 1.5;
          ctx.strokeRect(x + 0.75, y + 0.75, w - 1.5, ROW_PX - 1.5);
        }
        colour = FAILED_COLOR;
      }
      if (s.bar !== null && s.bar.key === this._selectedKey) {
        ctx.globalAlpha = 1;
        ctx.strokeStyle = fg;
        ctx.lineWidth = 2;
        ctx.strokeRect(x - 1, y - 1, w + 2, ROW_PX + 2);
      }
    }
    ctx.globalAlpha = 1;
    if (now >= start && now <= end) {
      ctx.fillStyle = fg;
      ctx.fillRect(LABEL_PX + (now - start) / msPerPx - 1, AXIS_PX, 1, cssHeight - AXIS_PX);
    }
    ctx.restore();
    if (!this._rows.length) {
      ctx.fillStyle = fg;
      ctx.fillText('No task has run in this window yet.', LABEL_PX, AXIS_PX + 12);
    }

    this.draws++;
    // What the frame showed, for tests and debugging; written only when changed (a write restyles).
    const d = c.dataset;
    const shown: { [key: string]: string } = {
      draws: String(this.draws),
      rows: String(this._rows.length),
      barsInView: String(frame.barsInView),
      failedInView: String(frame.failedInView),
      segments: String(frame.segments.length),
      follow: String(this.viewport.follow),
      spanMs: String(Math.round(this.viewport.spanMs)),
      windowEnd: String(Math.round(end)),
      drawMs: (performance.now() - drawStart).toFixed(1)
    };
    for (const [key, value] of Object.entries(shown)) {
      if (d[key] !== value) {
        d[key] = value;
      }
    }
    this.onFrame(frame);
    this._scheduleFollow();
  }

  private _scheduleFollow(): void {
    if (this._followTimer !== null || !this.viewport.follow || !this._rows.length) {
      return;
    }
    this._followTimer = window.setTimeout(() => {
      this._followTimer = null;
      if (this.viewport.follow) {
        this.requestDraw();
      }
    }, FOLLOW_REDRAW_MS);
  }

  private _labelCanvas(cssHeight: number, dpr: number, fg: string): HTMLCanvasElement {
    const key = `${cssHeight}|${dpr}|${fg}|${this._rows.map(r => r.key).join(',')}`;
    if (this._labels_ && this._labels_.key === key) {
      return this._labels_.canvas;
    }
    const canvas = this._labels_?.canvas || document.createElement('canvas');
    canvas.width = Math.round(LABEL_PX * dpr);
    canvas.height = Math.round(cssHeight * dpr);
    const ctx = canvas.getContext('2d');
    if (ctx) {
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.clearRect(0, 0, LABEL_PX, cssHeight);
      ctx.fillStyle = fg;
      ctx.textBaseline = 'middle';
      for (let i = 0; i < this._rows.length; i++) {
        const row = this._rows[i];
        const y = this._rowTop[i] + ROW_PX / 2;
        if (row.nodeFirst) {
          ctx.font = 'bold 10px sans-serif';
          ctx.fillText(truncate(this._labels.get(row.nodeId) || short(row.nodeId), 9), 2, y);
        }
        ctx.font = '10px sans-serif';
        ctx.fillText(row.workerPid ? String(row.workerPid) : short(row.workerId, 6), 58, y);
      }
    }
    this._labels_ = { canvas, key };
    return canvas;
  }

  // ---- interaction ------------------------------------------------------------------------------------------------

  private _segmentAt(e: MouseEvent): ISegment | null {
    if (!this._frame) {
      return null;
    }
    const rect = this.canvas.getBoundingClientRect();
    const x = e.clientX - rect.left - LABEL_PX;
    const y = e.clientY - rect.top;
    const row = this._rowTop.findIndex(top => y >= top - 1 && y < top + ROW_PX + 1);
    return row < 0 || x < 0 ? null : segmentAt(this._frame.segments, row, x);
  }

  private _down(e: PointerEvent): void {
    this._drag = { x: e.clientX, viewport: this.viewport, moved: false };
    this.canvas.setPointerCapture?.(e.pointerId);
  }

  private _move(e: PointerEvent): void {
    const drag = this._drag;
    if (drag) {
      const dx = e.clientX - drag.x;
      if (Math.abs(dx) > CLICK_SLOP_PX) {
        drag.moved = true;
      }
      if (drag.moved) {
        this._hideTip();
        this.viewport = panBy(drag.viewport, dx, this._timeWidth(), this.clock());
        this.requestDraw();
      }
      return;
    }
    this._showTip(e, this._segmentAt(e));
  }

  private _up(e: PointerEvent): void {
    const drag = this._drag;
    this._drag = null;
    if (!drag || drag.moved) {
      return;
    }
    const s = this._segmentAt(e);
    if (s?.bar) {
      this.onSelect(s.bar);
    } else if (s) {
      // a merged column: zoom in on it
      const rect = this.canvas.getBoundingClientRect();
      this.zoom(8, (e.clientX - rect.left - LABEL_PX) / this._timeWidth());
    }
  }

  private _wheel(e: WheelEvent): void {
    e.preventDefault();
    const rect = this.canvas.getBoundingClientRect();
    const anchor = Math.min(1, Math.max(0, (e.clientX - rect.left - LABEL_PX) / this._timeWidth()));
    this.zoom(e.deltaY < 0 ? 1.25 : 0.8, anchor);
  }

  private _showTip(e: MouseEvent, s: ISegment | null): void {
    if (!s) {
      this._hideTip();
      return;
    }
    const tip = this._tip;
    const now = this.clock();
    if (s.bar) {
      const b = s.bar;
      const node = this._labels.get(b.nodeId) || short(b.nodeId);
      tip.textContent =
        `${shortFuncName(b.func)} · ${duration((b.end ?? now) - b.start)}${b.end === null ? ' so far' : ''}` +
        ` · node ${node} (${short(b.nodeId)}) · pid ${b.workerPid ?? '–'}${b.failed ? ' · FAILED' : ''}` +
        (b.attempt ? ` · attempt ${b.attempt}` : '');
      tip.dataset.func = b.func;
    } else {
      tip.textContent = `${s.count} tasks, mostly ${shortFuncName(s.func)}${s.failed ? ', some FAILED' : ''} (click to zoom in)`;
      tip.dataset.func = s.func;
    }
    const rect = this.node.getBoundingClientRect();
    tip.style.display = 'block';
    tip.style.left = `${Math.min(e.clientX - rect.left + 8, rect.width - 160)}px`;
    tip.style.top = `${e.clientY - rect.top + 12}px`;
  }

  private _hideTip(): void {
    this._tip.style.display = 'none';
  }
}

function clockText(ms: number): string {
  const d = new Date(ms);
  const pad = (x: number) => String(x).padStart(2, '0');
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function truncate(text: string, n: number): string {
  return text.length > n ? `${text.slice(0, n - 1)}…` : text;
}
