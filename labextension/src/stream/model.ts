/**
 * The task stream's data: one bar per task attempt that started on a
 * worker, from its start to its end (or now, while it runs).
 *
 * Pure logic, no DOM. Task rows carry the latest attempt of a task; when a
 * newer attempt shows up, the earlier attempt's bar stays and, if it never
 * reported an end, is closed and marked failed (a retry means it failed).
 * The dashboard also keeps earlier attempts of retried tasks apart from its
 * task list; `reload` merges them with the list, so a reload of the page
 * still shows the failed attempts that came before a retry.
 * Bounded: past `maxBars` the oldest finished bars go first.
 */

import { ITaskRow } from '../types';

export interface IStreamBar {
  /** `<task id>:<attempt>` */
  key: string;
  taskId: string;
  attempt: number;
  func: string;
  name: string;
  state: string;
  failed: boolean;
  nodeId: string;
  workerId: string;
  workerPid: number | null;
  jobId: string;
  contextTag: string | null;
  start: number;
  /** null while the attempt runs. */
  end: number | null;
}

export interface IStreamFilter {
  jobId: string | null;
  contextTag: string | null;
}

export const DEFAULT_MAX_BARS = 200_000;

/** The bar of a row's attempt, or null when it has not started on a worker. */
export function barFromRow(row: ITaskRow): IStreamBar | null {
  if (row.start_time_ms === null || !row.worker_id || !row.node_id) {
    return null;
  }
  const failed = row.state === 'FAILED';
  const terminal = failed || row.state === 'FINISHED';
  return {
    key: `${row.task_id}:${row.attempt_number}`,
    taskId: row.task_id,
    attempt: row.attempt_number,
    func: row.func_or_class_name || row.name || '?',
    name: row.name || row.func_or_class_name || row.task_id,
    state: row.state,
    failed,
    nodeId: row.node_id,
    workerId: row.worker_id,
    workerPid: row.worker_pid,
    jobId: row.job_id,
    contextTag: row.context_tag,
    start: row.start_time_ms,
    end: terminal ? Math.max(row.start_time_ms, row.end_time_ms ?? row.start_time_ms) : null
  };
}

export class StreamModel {
  /** Changes whenever the bars change. */
  version = 0;
  private _bars = new Map<string, IStreamBar>();
  private _latestAttempt = new Map<string, number>();

  constructor(readonly maxBars = DEFAULT_MAX_BARS) {}

  get size(): number {
    return this._bars.size;
  }

  clear(): void {
    this._bars.clear();
    this._latestAttempt.clear();
    this.version++;
  }

  /**
   * Start again from a snapshot: the latest attempt of each task and the
   * earlier attempts of retried tasks, merged in the order they started
   * (so eviction still drops the oldest first).
   */
  reload(rows: ITaskRow[], earlierAttempts: ITaskRow[] = []): void {
    this.clear();
    if (earlierAttempts.length === 0) {
      this.upsert(rows);
      return;
    }
    const started = (r: ITaskRow): number => r.start_time_ms ?? r.creation_time_ms ?? 0;
    const merged = rows.concat(earlierAttempts);
    merged.sort((a, b) => started(a) - started(b) || a.attempt_number - b.attempt_number);
    this.upsert(merged);
  }

  upsert(rows: ITaskRow[]): void {
    let changed = false;
    for (const row of rows) {
      const latest = this._latestAttempt.get(row.task_id);
      if (latest !== undefined && row.attempt_number > latest) {
        this._closeEarlier(row.task_id, latest, row);
      }
      if (latest === undefined || row.attempt_number >= latest) {
        this._latestAttempt.set(row.task_id, row.attempt_number);
      }
      const bar = barFromRow(row);
      if (bar === null) {
        continue;
      }
      const old = this._bars.get(bar.key);
      if (old && old.end !== null && bar.end === null) {
        continue; // an older report of an attempt already known to have ended
      }
      this._bars.set(bar.key, bar);
      changed = true;
    }
    if (changed) {
      this._evict();
      this.version++;
    }
  }

  private _closeEarlier(taskId: string, attempt: number, next: ITaskRow): void {
    const old = this._bars.get(`${taskId}:${attempt}`);
    if (old && old.end === null) {
      const end = next.creation_time_ms ?? next.start_time_ms ?? old.start;
      this._bars.set(old.key, { ...old, end: Math.max(old.start, end), failed: true, state: 'FAILED' });
    }
  }

  private _evict(): void {
    let excess = this._bars.size - this.maxBars;
    if (excess <= 0) {
      return;
    }
    // Map order is insertion order: the oldest first; running bars stay.
    for (const [key, bar] of this._bars) {
      if (excess <= 0) {
        break;
      }
      if (bar.end !== null) {
        this._bars.delete(key);
        excess--;
      }
    }
  }

  bars(filter: IStreamFilter = { jobId: null, contextTag: null }): IStreamBar[] {
    const out: IStreamBar[] = [];
    for (const bar of this._bars.values()) {
      if (filter.jobId !== null && bar.jobId !== filter.jobId) {
        continue;
      }
      if (filter.contextTag !== null && bar.contextTag !== filter.contextTag) {
        continue;
      }
      out.push(bar);
    }
    return out;
  }
}
