/**
 * The detail of one task attempt: where and when it ran, its error and
 * traceback, and its actions (cancel, kill the actor). Shown by the task
 * graph and the task stream when a task is clicked.
 */

import { ClusterClient } from './client';
import { clock, duration, h, short } from './format';
import { stateClass } from './graph/view';
import { ITaskDetail, ITaskRow, TERMINAL_STATES } from './types';

export class TaskDetail {
  constructor(
    readonly client: ClusterClient,
    readonly node: HTMLElement
  ) {}

  /** The task's row at once, then its full detail from the dashboard. */
  async show(taskId: string): Promise<void> {
    const row = this.client.graph.task(taskId);
    this.node.dataset.taskId = taskId;
    this.node.className = 'nbray-detail nbray-task-detail';
    if (row) {
      this._renderTask(row, null);
    }
    try {
      const detail = await this.client.api.get<ITaskDetail>(`api/tasks/${taskId}`);
      if (this.node.dataset.taskId === taskId) {
        this._renderTask(detail, detail);
      }
    } catch (error) {
      if (this.node.dataset.taskId === taskId) {
        this.node.appendChild(h('div', { class: 'nbray-error' }, `Could not load the task: ${error}`));
      }
    }
  }

  private _renderTask(row: ITaskRow, detail: ITaskDetail | null): void {
    const d = this.node;
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

export function field(name: string, value: string | number | null | undefined, cls = ''): HTMLElement {
  return h(
    'div',
    { class: `nbray-field ${cls}` },
    h('span', { class: 'nbray-field-name' }, name),
    h('span', { class: 'nbray-field-value' }, value === null || value === undefined ? '–' : String(value))
  );
}

export function append(parent: HTMLElement, ...children: (HTMLElement | null)[]): void {
  for (const c of children) {
    if (c) {
      parent.appendChild(c);
    }
  }
}

