/**
 * The task graph with its toolbar (job and notebook-cell filters, zoom),
 * state counts and the detail of the chosen task or object. Used in the
 * sidebar and, larger, in a main-area tab; both show the same model.
 */

import { ClusterClient } from './client';
import { bytes, fillSelect, h } from './format';
import { IGraphNode } from './graph/model';
import { GraphCanvas, stateClass } from './graph/view';
import { append, field, TaskDetail } from './taskdetail';

export { killActor } from './taskdetail';

export interface IGraphSectionOptions {
  /** Shown as a button that opens the graph in the main area. */
  popOut?: () => void;
}

export class GraphSection {
  readonly node: HTMLElement;
  private _graph = new GraphCanvas();
  private _jobFilter: HTMLSelectElement;
  private _cellFilter: HTMLSelectElement;
  private _counts: HTMLElement;
  private _detail: HTMLElement;
  private _selected: IGraphNode | null = null;
  private _task: TaskDetail;

  constructor(
    readonly client: ClusterClient,
    options: IGraphSectionOptions = {},
    private readonly _requestRender: () => void = () => this.render()
  ) {
    this._jobFilter = h('select', { class: 'nbray-job-filter', title: 'Only tasks of this job' }) as HTMLSelectElement;
    this._cellFilter = h('select', {
      class: 'nbray-cell-filter',
      title: 'Only tasks submitted by this notebook cell'
    }) as HTMLSelectElement;
    this._jobFilter.addEventListener('change', () => {
      this.client.graph.setFilter({ jobId: this._jobFilter.value || null });
      this._requestRender();
    });
    this._cellFilter.addEventListener('change', () => {
      this.client.graph.setFilter({ contextTag: this._cellFilter.value || null });
      this._requestRender();
    });
    const zoomIn = h('button', { class: 'nbray-zoom-in', title: 'Zoom in' }, '+');
    const zoomOut = h('button', { class: 'nbray-zoom-out', title: 'Zoom out' }, '−');
    const fit = h('button', { class: 'nbray-zoom-fit', title: 'Show the whole graph' }, 'Fit');
    zoomIn.addEventListener('click', () => this._graph.zoom(1.25));
    zoomOut.addEventListener('click', () => this._graph.zoom(0.8));
    fit.addEventListener('click', () => this._graph.fit());
    const zoom = h('span', { class: 'nbray-zoom' }, zoomOut, zoomIn, fit);
    if (options.popOut) {
      const open = h('button', { class: 'nbray-pop-out', title: 'Open the task graph in a tab' }, '⤢');
      open.addEventListener('click', options.popOut);
      zoom.appendChild(open);
    }
    this._counts = h('div', { class: 'nbray-task-counts' });
    this._detail = h('div', { class: 'nbray-detail' });
    this._task = new TaskDetail(client, this._detail);
    this._graph.onSelect = node => this._select(node);
    this.node = h(
      'div',
      { class: 'nbray-graph-box' },
      h(
        'div',
        { class: 'nbray-graph-toolbar' },
        h('label', {}, 'Job ', this._jobFilter),
        h('label', {}, 'Cell ', this._cellFilter),
        zoom
      ),
      this._counts,
      this._graph.node,
      this._detail
    );
  }

  fit(): void {
    this._graph.fit();
  }

  render(): void {
    const graph = this.client.graph;
    const facets = graph.facets();
    const filter = graph.filter;
    fillSelect(this._jobFilter, 'All jobs', facets.jobs, filter.jobId, j => `job ${j}`);
    fillSelect(this._cellFilter, 'All cells', facets.contextTags, filter.contextTag, t => t);
    const view = graph.view();
    const counts: { [cls: string]: number } = {};
    for (const n of view.nodes) {
      if (n.kind === 'task') {
        counts[stateClass(n.state)] = (counts[stateClass(n.state)] || 0) + 1;
      } else if (n.kind === 'group') {
        for (const [state, c] of Object.entries(n.counts || {})) {
          counts[stateClass(state)] = (counts[stateClass(state)] || 0) + c;
        }
      }
    }
    this._counts.textContent = '';
    this._counts.append(
      h(
        'span',
        { class: 'nbray-count-total', 'data-count': view.visibleTasks },
        `${view.visibleTasks} tasks${view.grouped ? ', grouped by function (click a group to expand it)' : ''}`
      )
    );
    for (const cls of ['pending', 'submitted', 'running', 'finished', 'failed']) {
      if (counts[cls]) {
        this._counts.append(
          h('span', { class: `nbray-count nbray-state-${cls}`, 'data-state': cls, 'data-count': counts[cls] }, `${counts[cls]} ${cls}`)
        );
      }
    }
    if (this.client.summary?.data_edges === false) {
      this._counts.append(
        h('span', { class: 'nbray-edges-note' }, 'edges: parent task only (Ray records no data edges)')
      );
    }
    const selected = this._selected;
    this._graph.render(view, selected ? selected.id : null);
    if (selected?.taskId) {
      const row = graph.task(selected.taskId);
      const shown = this._detail.querySelector('.nbray-detail-state .nbray-field-value');
      if (row && shown && shown.textContent !== row.state) {
        void this._task.show(row.task_id);
      }
    }
  }

  private _select(node: IGraphNode): void {
    if (node.kind === 'group' && node.func) {
      this.client.graph.toggleGroup(node.func);
      this._selected = null;
      this._detail.textContent = '';
      this._requestRender();
      return;
    }
    this._selected = node;
    this._requestRender();
    if (node.kind === 'task' && node.taskId) {
      void this._task.show(node.taskId);
    } else if (node.kind === 'object' && node.objectId) {
      this._showObject(node.objectId);
    }
  }

  private _showObject(objectId: string): void {
    const producer = this.client.graph.producerOf(objectId);
    const known = this.client.objects.find(o => o.object_id === objectId);
    this._detail.textContent = '';
    this._detail.className = 'nbray-detail nbray-object-detail';
    delete this._detail.dataset.taskId;
    append(
      this._detail,
      h('div', { class: 'nbray-detail-title' }, 'Object'),
      field('id', objectId),
      field('made by', producer ? this.client.graph.task(producer)?.name || producer : 'a driver (put)'),
      known ? field('size', bytes(known.size_bytes)) : null
    );
  }
}
