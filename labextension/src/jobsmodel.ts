/**
 * Submitted jobs as the panel shows them: rows from the Jobs API, their
 * order, durations, and the tail of a job's log. Pure logic, no I/O.
 */

export type JobStatus = 'PENDING' | 'RUNNING' | 'STOPPED' | 'SUCCEEDED' | 'FAILED' | string;

/** A job as the dashboard's `GET /api/jobs/` returns it (Ray's field names). */
export interface IJobDetails {
  submission_id: string;
  entrypoint: string;
  status: JobStatus;
  message: string | null;
  start_time: number | null; // ms since the epoch
  end_time: number | null;
  driver_exit_code: number | null;
  metadata: { [key: string]: string };
}

/** The answer of `GET nbray/api/submissions/<id>/logs?offset=N`. */
export interface ILogChunk {
  logs: string;
  offset: number;
  done: boolean;
}

const TERMINAL = new Set(['STOPPED', 'SUCCEEDED', 'FAILED']);

export function isTerminal(status: JobStatus): boolean {
  return TERMINAL.has(status);
}

/** Only a job that has not ended can be stopped. */
export function canStop(status: JobStatus): boolean {
  return !isTerminal(status);
}

/** How long the job ran (until now while it runs); null before it started. */
export function jobDurationMs(job: IJobDetails, nowMs: number): number | null {
  if (!job.start_time) {
    return null;
  }
  const end = job.end_time || (isTerminal(job.status) ? job.start_time : nowMs);
  return Math.max(0, end - job.start_time);
}

export class JobsModel {
  private _jobs = new Map<string, IJobDetails>();

  /** Replace the list with the server's; returns whether anything shown changed. */
  update(rows: IJobDetails[]): boolean {
    const next = new Map(rows.map(r => [r.submission_id, r]));
    let changed = next.size !== this._jobs.size;
    for (const [id, row] of next) {
      const old = this._jobs.get(id);
      if (
        !old ||
        old.status !== row.status ||
        old.end_time !== row.end_time ||
        old.start_time !== row.start_time ||
        old.message !== row.message
      ) {
        changed = true;
      }
    }
    this._jobs = next;
    return changed;
  }

  get(id: string): IJobDetails | undefined {
    return this._jobs.get(id);
  }

  get size(): number {
    return this._jobs.size;
  }

  /** Running and pending jobs first, then the newest first. */
  rows(): IJobDetails[] {
    return [...this._jobs.values()].sort(
      (a, b) =>
        Number(isTerminal(a.status)) - Number(isTerminal(b.status)) ||
        (b.start_time || 0) - (a.start_time || 0) ||
        a.submission_id.localeCompare(b.submission_id)
    );
  }

  counts(): { running: number; total: number } {
    let running = 0;
    for (const j of this._jobs.values()) {
      running += isTerminal(j.status) ? 0 : 1;
    }
    return { running, total: this._jobs.size };
  }
}

/** The end of a job's log, read piece by piece from a byte offset; keeps the last `maxChars`. */
export class LogTail {
  offset = 0;
  text = '';
  done = false;
  truncated = false;

  constructor(readonly maxChars = 64 * 1024) {}

  /** Take a chunk read from `this.offset`; returns whether the text changed. */
  append(chunk: ILogChunk): boolean {
    if (chunk.offset < this.offset) {
      return false; // an answer to an older request
    }
    this.offset = chunk.offset;
    this.done = chunk.done;
    if (!chunk.logs) {
      return false;
    }
    this.text += chunk.logs;
    if (this.text.length > this.maxChars) {
      this.text = this.text.slice(this.text.length - this.maxChars);
      const newline = this.text.indexOf('\n');
      if (newline >= 0 && newline < this.text.length - 1) {
        this.text = this.text.slice(newline + 1); // start at a whole line
      }
      this.truncated = true;
    }
    return true;
  }
}
