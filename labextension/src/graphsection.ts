/**
 * The task graph with its toolbar (job and notebook-cell filters, zoom),
 * state counts and the detail of the chosen task or object. Used in the
 * sidebar and, larger, in a main-area tab; both show the same model.
 */

import { ClusterClient } from './client';
import { bytes, clock, duration, h, short } from './format';
import { IGraphNode } from './graph/model';
import { GraphCanvas, stateClass } from './graph/view';
import { ITaskDetail, ITaskRow, TERMINAL_STATES } from './types';

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
    const selected = this._selected;
    this._graph.render(view, selected ? selected.id : null);
    if (selected?.taskId) {
      const row = graph.task(selected.taskId);
      const shown = this._detail.querySelector('.nbray-detail-state .nbray-field-value');
      if (row && shown && shown.textContent !== row.state) {
        void this._showTask(row.task_id);
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
      void this._showTask(node.taskId);
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

  private async _showTask(taskId: string): Promise<void> {
    const row = this.client.graph.task(taskId);
    this._detail.dataset.taskId = taskId;
    this._detail.className = 'nbray-detail nbray-task-detail';
    if (row) {
      this._renderTask(row, null);
    }
    try {
      const detail = await this.client.api.get<ITaskDetail>(`api/tasks/${taskId}`);
      if (this._detail.dataset.taskId === taskId) {
        this._renderTask(detail, detail);
      }
    } catch (error) {
      if (this._detail.dataset.taskId === taskId) {
        this._detail.appendChild(h('div', { class: 'nbray-error' }, `Could not load the task: ${error}`));
      }
    }
  }

  private _renderTask(row: ITaskRow, detail: ITaskDetail | null): void {
    const d = this._detail;
    d.textContent = '';
    d.dataset.state = row.state;
    const { start_time_ms: start, end_time_ms: end } = row;
    const node = row.node_id ? this.client.nodes.get(row.node_id) : undefined;
    append(
      d,
      h('div', { class: 'nbray-detail-title' }, row.name || row.func_or_class_name || row.task_id),
      field('state', row.state, `nbray-detail-state nbray-state-${stateClass(row.state)}`),
      field('function', row.func_or_class_name, 'nbray-detail-func'),
      field('task id', row.task_id),
      field('node', node ? `${node.node_name || node.node_ip} (${short(row.node_id)})` : short(row.node_id), 'nbray-detail-node'),
      field('worker pid', row.worker_pid, 'nbray-detail-pid'),
      field('job', row.job_id),
      row.context_tag ? field('cell', row.context_tag, 'nbray-detail-cell') : null,
      field('submitted', clock(row.creation_time_ms)),
      field('started', clock(start)),
      field('ended', clock(end)),
      field('ran for', start && end ? duration(end - start) : null, 'nbray-detail-duration'),
      row.attempt_number ? field('attempt', row.attempt_number) : null
    );
    const buttons = h('div', { class: 'nbray-detail-actions' });
    if (!TERMINAL_STATES.has(row.state)) {
      const cancel = h('button', { class: 'nbray-cancel-task' }, 'Cancel task') as HTMLButtonElement;
      cancel.addEventListener('click', () => void this._cancel(row.task_id, cancel));
      buttons.appendChild(cancel);
    }
    if (row.actor_id) {
      const actor = this.client.actors.get(row.actor_id);
      if (!actor || actor.state !== 'DEAD') {
        const kill = h('button', { class: 'nbray-kill-actor' }, 'Kill actor') as HTMLButtonElement;
        kill.addEventListener('click', () => void killActor(this.client, row.actor_id!, kill));
        buttons.appendChild(kill);
      }
    }
    if (buttons.childNodes.length) {
      d.appendChild(buttons);
    }
    if (row.error_type || row.error_message) {
      d.appendChild(field('error', [row.error_type, row.error_message].filter(Boolean).join(': '), 'nbray-detail-error'));
    }
    if (detail?.error_traceback) {
      d.appendChild(h('pre', { class: 'nbray-traceback' }, detail.error_traceback));
    }
  }

  private async _cancel(taskId: string, button: HTMLButtonElement): Promise<void> {
    button.disabled = true;
    try {
      const r = await this.client.cancelTask(taskId);
      button.textContent = r.found ? 'Cancelling…' : `Not running (${r.state})`;
    } catch (error) {
      button.textContent = 'Cancel failed';
      button.title = String(error);
    }
  }
}

export async function killActor(client: ClusterClient, actorId: string, button: HTMLButtonElement): Promise<void> {
  button.disabled = true;
  try {
    await client.killActor(actorId);
    button.textContent = 'Killed';
  } catch (error) {
    button.textContent = 'Failed';
    button.title = String(error);
  }
}

function field(name: string, value: string | number | null | undefined, cls = ''): HTMLElement {
  return h(
    'div',
    { class: `nbray-field ${cls}` },
    h('span', { class: 'nbray-field-name' }, name),
    h('span', { class: 'nbray-field-value' }, value === null || value === undefined ? '–' : String(value))
  );
}

function append(parent: HTMLElement, ...children: (HTMLElement | null)[]): void {
  for (const c of children) {
    if (c) {
      parent.appendChild(c);
    }
  }
}

function fillSelect(
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
