import { canStop, IJobDetails, isTerminal, jobDurationMs, JobsModel, LogTail } from '../jobsmodel';

function job(id: string, status: string, start: number | null, end: number | null = null): IJobDetails {
  return {
    submission_id: id,
    entrypoint: `python ${id}.py`,
    status,
    message: null,
    start_time: start,
    end_time: end,
    driver_exit_code: null,
    metadata: {}
  };
}

describe('job statuses', () => {
  it('lets only jobs that have not ended be stopped', () => {
    expect(canStop('RUNNING')).toBe(true);
    expect(canStop('PENDING')).toBe(true);
    for (const s of ['STOPPED', 'SUCCEEDED', 'FAILED']) {
      expect(isTerminal(s)).toBe(true);
      expect(canStop(s)).toBe(false);
    }
  });

  it('measures a running job until now and an ended one until its end', () => {
    expect(jobDurationMs(job('a', 'RUNNING', 1000), 4500)).toBe(3500);
    expect(jobDurationMs(job('b', 'SUCCEEDED', 1000, 2200), 9999)).toBe(1200);
    expect(jobDurationMs(job('c', 'PENDING', null), 9999)).toBeNull();
    expect(jobDurationMs(job('d', 'FAILED', 1000, null), 9999)).toBe(0);
  });
});

describe('JobsModel', () => {
  it('lists jobs that still run first, then the newest first', () => {
    const m = new JobsModel();
    m.update([job('old', 'SUCCEEDED', 100, 200), job('new', 'FAILED', 300, 400), job('live', 'RUNNING', 50)]);
    expect(m.rows().map(r => r.submission_id)).toEqual(['live', 'new', 'old']);
    expect(m.counts()).toEqual({ running: 1, total: 3 });
  });

  it('reports a change only when something shown changed', () => {
    const m = new JobsModel();
    expect(m.update([job('a', 'RUNNING', 1)])).toBe(true);
    expect(m.update([job('a', 'RUNNING', 1)])).toBe(false);
    expect(m.update([job('a', 'STOPPED', 1, 5)])).toBe(true);
    expect(m.get('a')!.status).toBe('STOPPED');
    expect(m.update([])).toBe(true);
    expect(m.size).toBe(0);
  });
});

describe('LogTail', () => {
  it('follows the log from the offsets the server returns', () => {
    const t = new LogTail();
    expect(t.append({ logs: 'one\n', offset: 4, done: false })).toBe(true);
    expect(t.append({ logs: '', offset: 4, done: false })).toBe(false);
    expect(t.append({ logs: 'two\n', offset: 8, done: true })).toBe(true);
    expect(t.text).toBe('one\ntwo\n');
    expect(t.offset).toBe(8);
    expect(t.done).toBe(true);
  });

  it('ignores an answer older than what it has', () => {
    const t = new LogTail();
    t.append({ logs: 'abc', offset: 3, done: false });
    expect(t.append({ logs: 'a', offset: 1, done: false })).toBe(false);
    expect(t.text).toBe('abc');
  });

  it('keeps only the last lines when the log grows past its limit', () => {
    const t = new LogTail(20);
    let offset = 0;
    for (let i = 0; i < 10; i++) {
      const line = `line ${i}\n`;
      offset += line.length;
      t.append({ logs: line, offset, done: false });
    }
    expect(t.truncated).toBe(true);
    expect(t.text.length).toBeLessThanOrEqual(20);
    expect(t.text.endsWith('line 9\n')).toBe(true);
    expect(t.text.startsWith('line ')).toBe(true); // cut at a whole line
  });
});
