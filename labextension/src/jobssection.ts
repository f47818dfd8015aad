/**
 * The panel's Jobs section: submitted jobs with status, id, entrypoint,
 * start and duration; a row opens to the tail of the job's log; running
 * jobs have a Stop button. Polls the server extension while shown (jobs
 * are not on the event stream).
 */

import { ApiError, NbrayApi } from './api';
import { clock, duration, h } from './format';
import { canStop, IJobDetails, ILogChunk, JobsModel, jobDurationMs, LogTail } from './jobsmodel';

export const JOBS_POLL_MS = 1500;

export class JobsSection {
  readonly node: HTMLElement;
  readonly model = new JobsModel();
  private _list: HTMLElement;
  private _error: HTMLElement;
  private _open = new Map<string, LogTail>();
  private _timer: number | null = null;
  private _polling = false;
  private _running = false;

  constructor(
    private readonly api: NbrayApi,
    private readonly onTitle: (text: string) => void
  ) {
    this._error = h('div', { class: 'nbray-jobs-error' });
    this._list = h('div', { class: 'nbray-jobs' });
    this.node = h('div', { class: 'nbray-jobs-box' }, this._error, this._list);
    this.render();
  }

  start(): void {
    if (!this._running) {
      this._running = true;
      void this._tick();
    }
  }

  private async _tick(): Promise<void> {
    this._timer = null;
    await this.poll();
    if (this._running && this._timer === null) {
      this._timer = window.setTimeout(() => void this._tick(), JOBS_POLL_MS);
    }
  }

  stop(): void {
    this._running = false;
    if (this._timer !== null) {
      clearTimeout(this._timer);
      this._timer = null;
    }
  }

  /** One round: the list, then the log of every open job that may still grow. */
  async poll(): Promise<void> {
    if (this._polling) {
      return;
    }
    this._polling = true;
    try {
      const rows = await this.api.get<IJobDetails[]>('api/submissions');
      this._error.textContent = '';
      let changed = this.model.update(rows || []);
      for (const [id, tail] of this._open) {
        if (!tail.done) {
          changed = (await this._readLog(id, tail)) || changed;
        }
      }
      if (changed) {
        this.render();
      } else {
        this._refreshDurations();
      }
    } catch (error) {
      this._error.textContent = error instanceof ApiError ? `Jobs: ${error.message}` : `Jobs: ${error}`;
    } finally {
      this._polling = false;
    }
  }

  private async _readLog(id: string, tail: LogTail): Promise<boolean> {
    const chunk = await this.api.get<ILogChunk>(`api/submissions/${encodeURIComponent(id)}/logs`, {
      offset: tail.offset
    });
    return tail.append(chunk);
  }

  render(): void {
    const { running, total } = this.model.counts();
    this.onTitle(`Jobs (${running} running of ${total})`);
    this._list.textContent = '';
    const now = Date.now();
    for (const job of this.model.rows()) {
      this._list.appendChild(this._row(job, now));
    }
    if (this.model.size === 0) {
      this._list.appendChild(h('div', { class: 'nbray-empty' }, 'No submitted jobs.'));
    }
  }

  private _refreshDurations(): void {
    const now = Date.now();
    for (const el of Array.from(this._list.querySelectorAll<HTMLElement>('.nbray-job'))) {
      const job = this.model.get(el.dataset.submissionId || '');
      const cell = el.querySelector('.nbray-job-duration');
      if (job && cell) {
        cell.textContent = duration(jobDurationMs(job, now));
      }
    }
  }

  private _row(job: IJobDetails, now: number): HTMLElement {
    const id = job.submission_id;
    const tail = this._open.get(id);
    const status = job.status.toLowerCase();
    const stop = h('button', { class: 'nbray-job-stop', title: 'Stop this job (SIGTERM, then SIGKILL)' }, 'Stop');
    stop.addEventListener('click', event => {
      event.stopPropagation();
      void this._stop(id, stop as HTMLButtonElement);
    });
    const summary = h(
      'div',
      { class: 'nbray-job-summary', role: 'button', tabindex: 0, title: job.message || '' },
      h('span', { class: `nbray-badge nbray-badge-${status} nbray-job-status` }, job.status),
      h('span', { class: 'nbray-job-id', title: id }, id),
      canStop(job.status) ? stop : null
    );
    summary.addEventListener('click', () => this._toggle(id));
    const row = h(
      'div',
      { class: `nbray-job nbray-job-${status}${tail ? ' nbray-job-open' : ''}`, 'data-submission-id': id,
        'data-status': job.status },
      summary,
      h(
        'div',
        { class: 'nbray-job-times' },
        h('span', { class: 'nbray-job-start', title: 'started' }, `started ${clock(job.start_time)}`),
        h('span', { class: 'nbray-job-duration', title: 'duration' }, duration(jobDurationMs(job, now)))
      ),
      h('div', { class: 'nbray-job-entrypoint', title: job.entrypoint }, job.entrypoint)
    );
    if (tail) {
      if (job.message) {
        row.appendChild(h('div', { class: 'nbray-job-message' }, job.message));
      }
      row.appendChild(
        h('pre', { class: 'nbray-job-logs' }, (tail.truncated ? '…\n' : '') + (tail.text || '(no output yet)'))
      );
    }
    return row;
  }

  private _toggle(id: string): void {
    if (this._open.has(id)) {
      this._open.delete(id);
      this.render();
      return;
    }
    const tail = new LogTail();
    this._open.set(id, tail);
    this.render();
    void this._readLog(id, tail)
      .then(changed => changed && this.render())
      .catch(error => {
        this._error.textContent = `Logs of ${id}: ${error instanceof ApiError ? error.message : error}`;
      });
  }

  private async _stop(id: string, button: HTMLButtonElement): Promise<void> {
    button.disabled = true;
    button.textContent = 'Stopping…';
    try {
      await this.api.post(`api/submissions/${encodeURIComponent(id)}/stop`);
      await this.poll();
    } catch (error) {
      button.disabled = false;
      button.textContent = 'Stop';
      this._error.textContent = `Stop ${id}: ${error instanceof ApiError ? error.message : error}`;
    }
  }
}
