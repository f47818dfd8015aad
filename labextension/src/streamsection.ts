/**
 * The task stream with its toolbar (job and notebook-cell filters, zoom,
 * back to live), a legend of the functions in view and the detail of the
 * clicked attempt. Used in the sidebar and in the task graph's tab.
 */

import { ClusterClient } from './client';
import { fillSelect, h } from './format';
import { FAILED_COLOR, funcColor, IFrame, layoutRows, shortFuncName } from './stream/layout';
import { IStreamFilter } from './stream/model';
import { StreamCanvas } from './stream/view';
import { TaskDetail } from './taskdetail';

const LEGEND_MS = 250;

export class StreamSection {
  readonly node: HTMLElement;
  readonly view = new StreamCanvas();
  private _filter: IStreamFilter = { jobId: null, contextTag: null };
  private _jobFilter: HTMLSelectElement;
  private _cellFilter: HTMLSelectElement;
  private _live: HTMLButtonElement;
  private _legend: HTMLElement;
  private _legendKey = '';
  private _legendAt = 0;
  private _legendTimer: number | null = null;
  private _lastFrame: IFrame | null = null;
  private _detail: HTMLElement;
  private _task: TaskDetail;
  private _shownKey = '';

  constructor(readonly client: ClusterClient) {
    this._jobFilter = h('select', { class: 'nbray-stream-job-filter', title: 'Only tasks of this job' }) as HTMLSelectElement;
    this._cellFilter = h('select', {
      class: 'nbray-stream-cell-filter',
      title: 'Only tasks submitted by this notebook cell'
    }) as HTMLSelectElement;
    this._jobFilter.addEventListener('change', () => {
      this._filter = { ...this._filter, jobId: this._jobFilter.value || null };
      this.render();
    });
    this._cellFilter.addEventListener('change', () => {
      this._filter = { ...this._filter, contextTag: this._cellFilter.value || null };
      this.render();
    });
    const zoomIn = h('button', { class: 'nbray-stream-zoom-in', title: 'Zoom in (or the mouse wheel)' }, '+');
    const zoomOut = h('button', { class: 'nbray-stream-zoom-out', title: 'Zoom out' }, '−');
    this._live = h('button', { class: 'nbray-stream-live', title: 'Follow now (or double-click the stream)' }, 'Live') as HTMLButtonElement;
    zoomIn.addEventListener('click', () => this.view.zoom(2));
    zoomOut.addEventListener('click', () => this.view.zoom(0.5));
    this._live.addEventListener('click', () => this.view.follow());
    this._legend = h('div', { class: 'nbray-stream-legend' });
    this._detail = h('div', { class: 'nbray-detail' });
    this._task = new TaskDetail(client, this._detail);
    this.view.onFrame = frame => this._onFrame(frame);
    this.view.onSelect = bar => {
      this.view.select(bar.key);
      void this._task.show(bar.taskId);
    };
    this.node = h(
      'div',
      { class: 'nbray-stream-box' },
      h(
        'div',
        { class: 'nbray-graph-toolbar nbray-stream-toolbar' },
        h('label', {}, 'Job ', this._jobFilter),
        h('label', {}, 'Cell ', this._cellFilter),
        h('span', { class: 'nbray-zoom' }, zoomOut, zoomIn, this._live)
      ),
      this._legend,
      this.view.node,
      this._detail
    );
  }

  /** Lay out again if the bars, the filter or the nodes changed; the canvas redraws on its next frame. */
  render(): void {
    const facets = this.client.graph.facets();
    fillSelect(this._jobFilter, 'All jobs', facets.jobs, this._filter.jobId, j => `job ${j}`);
    fillSelect(this._cellFilter, 'All cells', facets.contextTags, this._filter.contextTag, t => t);
    const nodes = [...this.client.nodes.values()].sort(
      (a, b) => Number(b.is_head_node) - Number(a.is_head_node) || a.node_id.localeCompare(b.node_id)
    );
    const key = `${this.client.stream.version}|${this._filter.jobId}|${this._filter.contextTag}|${nodes.length}`;
    if (key !== this._shownKey) {
      this._shownKey = key;
      const labels = new Map(nodes.map(n => [n.node_id, n.is_head_node ? 'head' : n.node_name || n.node_ip]));
      this.view.setRows(
        layoutRows(this.client.stream.bars(this._filter), nodes.map(n => n.node_id)),
        labels
      );
    } else {
      this.view.requestDraw();
    }
  }

  dispose(): void {
    this.view.dispose();
    if (this._legendTimer !== null) {
      clearTimeout(this._legendTimer);
    }
  }

  /** The legend follows the frames at most every LEGEND_MS: rebuilding it costs a layout, a frame must not. */
  private _onFrame(frame: IFrame): void {
    this._lastFrame = frame;
    const wait = this._legendAt + LEGEND_MS - performance.now();
    if (wait > 0) {
      if (this._legendTimer === null) {
        this._legendTimer = window.setTimeout(() => {
          this._legendTimer = null;
          if (this._lastFrame) {
            this._onFrame(this._lastFrame);
          }
        }, wait);
      }
      return;
    }
    this._legendAt = performance.now();
    this._live.classList.toggle('nbray-mod-active', this.view.viewport.follow);
    const funcs = [...frame.funcs].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
    const key = funcs.map(([f, n]) => `${f}:${n}`).join('|') + `|failed:${frame.failedInView}`;
    if (key === this._legendKey) {
      return;
    }
    this._legendKey = key;
    this._legend.textContent = '';
    for (const [func, count] of funcs.slice(0, 12)) {
      const swatch = h('span', { class: 'nbray-stream-swatch' });
      swatch.style.background = funcColor(func);
      this._legend.appendChild(
        h(
          'span',
          { class: 'nbray-stream-legend-item', 'data-func': func, 'data-count': count, title: func },
          swatch,
          `${shortFuncName(func)} ×${count}`
        )
      );
    }
    if (frame.failedInView) {
      const swatch = h('span', { class: 'nbray-stream-swatch' });
      swatch.style.background = FAILED_COLOR;
      this._legend.appendChild(
        h(
          'span',
          { class: 'nbray-stream-legend-item nbray-stream-legend-failed', 'data-count': frame.failedInView },
          swatch,
          `failed ×${frame.failedInView}`
        )
      );
    }
  }
}
