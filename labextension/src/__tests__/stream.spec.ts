import { IStreamBar, StreamModel } from '../stream/model';
import {
  FAILED_COLOR,
  firstStartingAt,
  frameSegments,
  funcColor,
  initialViewport,
  layoutRows,
  panBy,
  segmentAt,
  shortFuncName,
  timeTicks,
  windowAt,
  zoomAt
} from '../stream/layout';
import { later, task } from './fixtures';

function bar(i: number, extra: Partial<IStreamBar> = {}): IStreamBar {
  return {
    key: `t${i}:0`,
    taskId: `t${i}`,
    attempt: 0,
    func: 'f',
    name: 'f',
    state: 'FINISHED',
    failed: false,
    nodeId: 'n1',
    workerId: 'w1',
    workerPid: 100,
    jobId: 'j',
    contextTag: null,
    start: i * 10,
    end: i * 10 + 5,
    ...extra
  };
}

describe('StreamModel', () => {
  it('makes a bar per started attempt and closes an attempt that was retried as failed', () => {
    const m = new StreamModel();
    const pending = task('a');
    m.upsert([pending]);
    expect(m.size).toBe(0); // not started yet
    const running = later(pending, { state: 'RUNNING', start_time_ms: 100, node_id: 'n1', worker_id: 'w1', worker_pid: 7 });
    m.upsert([running]);
    expect(m.bars()).toEqual([expect.objectContaining({ key: 'a:0', start: 100, end: null, failed: false })]);
    const retry = later(running, {
      attempt_number: 1,
      state: 'RUNNING',
      creation_time_ms: 250,
      start_time_ms: 300,
      worker_id: 'w2'
    });
    m.upsert([retry]);
    const bars = m.bars();
    expect(bars).toHaveLength(2);
    expect(bars[0]).toEqual(expect.objectContaining({ key: 'a:0', end: 250, failed: true, state: 'FAILED' }));
    expect(bars[1]).toEqual(expect.objectContaining({ key: 'a:1', end: null, workerId: 'w2' }));
    m.upsert([later(retry, { state: 'FINISHED', end_time_ms: 400 })]);
    expect(m.bars()[1]).toEqual(expect.objectContaining({ end: 400, failed: false }));
  });

  it('reloads a snapshot with the earlier attempts of retried tasks, whatever their order', () => {
    const common = { node_id: 'n1', worker_pid: 7 };
    const first = task('a', {
      ...common,
      state: 'FAILED',
      creation_time_ms: 90,
      start_time_ms: 100,
      end_time_ms: 200,
      worker_id: 'w1'
    });
    const second = later(first, {
      attempt_number: 1,
      state: 'FINISHED',
      creation_time_ms: 210,
      start_time_ms: 220,
      end_time_ms: 300,
      worker_id: 'w2'
    });
    const other = task('b', { ...common, state: 'RUNNING', start_time_ms: 150, worker_id: 'w3' });
    const m = new StreamModel();
    m.upsert([task('stale', { ...common, state: 'RUNNING', start_time_ms: 1, worker_id: 'w9' })]);
    const expected = [
      ['a:0', 100, 200, true],
      ['b:0', 150, null, false],
      ['a:1', 220, 300, false]
    ];
    // The task list has one row per task (the latest attempt); the earlier attempt comes apart.
    m.reload([other, second], [first]);
    expect(m.bars().map(b => [b.key, b.start, b.end, b.failed])).toEqual(expected);
    // Listed the other way round, the result is the same (and so is the eviction order).
    m.reload([second, other], [first]);
    expect(m.bars().map(b => [b.key, b.start, b.end, b.failed])).toEqual(expected);
    // Without earlier attempts (an older dashboard), only the latest attempt has a bar.
    m.reload([second, other]);
    expect(m.bars().map(b => b.key)).toEqual(['a:1', 'b:0']);
    // Live updates after a reload: a late report of the earlier attempt keeps it failed,
    // and the retried task's latest row does not drop it.
    m.reload([second], [first]);
    m.upsert([later(second, {}), later(first, { state: 'RUNNING', end_time_ms: null })]);
    expect(m.bars().map(b => [b.key, b.failed])).toEqual([
      ['a:0', true],
      ['a:1', false]
    ]);
  });

  it('keeps an ended bar when an older running report arrives late, and filters by job and cell', () => {
    const m = new StreamModel();
    const base = { start_time_ms: 10, node_id: 'n', worker_id: 'w', context_tag: 'cell-1' };
    const done = task('a', { ...base, state: 'FAILED', end_time_ms: 20, job_id: 'j1' });
    m.upsert([done, task('a', { ...base, state: 'RUNNING', job_id: 'j1' })]);
    expect(m.bars()[0]).toEqual(expect.objectContaining({ end: 20, failed: true }));
    m.upsert([task('b', { ...base, state: 'RUNNING', job_id: 'j2', context_tag: 'cell-2' })]);
    expect(m.bars({ jobId: 'j2', contextTag: null }).map(b => b.taskId)).toEqual(['b']);
    expect(m.bars({ jobId: null, contextTag: 'cell-1' }).map(b => b.taskId)).toEqual(['a']);
  });

  it('is bounded: the oldest finished bars go first, running ones stay', () => {
    const m = new StreamModel(3);
    const rows = [0, 1, 2, 3, 4].map(i =>
      task(`t${i}`, {
        state: i === 0 ? 'RUNNING' : 'FINISHED',
        start_time_ms: i,
        end_time_ms: i + 1,
        node_id: 'n',
        worker_id: 'w'
      })
    );
    m.upsert(rows);
    expect(m.bars().map(b => b.taskId)).toEqual(['t0', 't3', 't4']);
  });
});

describe('layoutRows', () => {
  it('makes one row per worker, grouped by node in the given order, bars sorted', () => {
    const bars = [
      bar(3, { nodeId: 'n2', workerId: 'x', workerPid: 5 }),
      bar(2, { workerId: 'w2', workerPid: 200 }),
      bar(1),
      bar(0),
      bar(4, { nodeId: 'n2', workerId: 'y', workerPid: 3, end: null })
    ];
    const rows = layoutRows(bars, ['n2', 'n1']);
    expect(rows.map(r => r.key)).toEqual(['n2/y', 'n2/x', 'n1/w1', 'n1/w2']);
    expect(rows.map(r => r.nodeFirst)).toEqual([true, false, true, false]);
    expect(rows[2].bars.map(b => b.taskId)).toEqual(['t0', 't1']);
    expect(rows[2].maxFinishedMs).toBe(5);
    expect(rows[0].firstRunning).toBe(0);
  });
});

describe('the time window', () => {
  it('follows now until panned, and follows again when panned back', () => {
    let v = initialViewport(1000);
    expect(windowAt(v, 5000)).toEqual([4000, 5000]);
    v = panBy(v, 100, 1000, 5000); // drag right by 10% of the width: 100 ms earlier
    expect(v.follow).toBe(false);
    expect(windowAt(v, 9000)).toEqual([3900, 4900]);
    v = panBy(v, -200, 1000, 5000);
    expect(v.follow).toBe(true);
  });

  it('zooms around the anchor and stays within bounds', () => {
    const v = { end: 2000, spanMs: 1000, follow: false };
    const z = zoomAt(v, 2, 0.5, 10_000);
    expect(z.spanMs).toBe(500);
    expect(windowAt(z, 10_000)).toEqual([1250, 1750]); // the middle (1500) stays put
    expect(zoomAt(v, 1e9, 0.5, 10_000).spanMs).toBe(20);
    expect(zoomAt(initialViewport(), 0.5, 0.2, 10_000)).toEqual({ end: 10_000, spanMs: 120_000, follow: true });
  });

  it('puts ticks on round steps', () => {
    expect(timeTicks(0, 1000, 5)).toEqual({ step: 200, ticks: [0, 200, 400, 600, 800, 1000] });
    expect(timeTicks(1234, 1300, 4).ticks).toEqual([1240, 1260, 1280, 1300]);
  });
});

describe('frameSegments', () => {
  it('draws wide bars one by one and clips them to the window', () => {
    const rows = layoutRows([bar(0), bar(1), bar(2, { failed: true, func: 'g' })]);
    const frame = frameSegments(rows, 12, 1, 100, 1000); // 1 ms per pixel from t=12
    expect(frame.segments.map(s => [s.x0, s.x1, s.func, s.failed])).toEqual([
      [0, 3, 'f', false],
      [8, 13, 'g', true]
    ]);
    expect(frame.barsInView).toBe(2);
    expect(frame.failedInView).toBe(1);
    expect([...frame.funcs]).toEqual([
      ['f', 1],
      ['g', 1]
    ]);
  });

  it('merges bars thinner than a pixel per column, coloured by the most frequent function, failures kept', () => {
    const bars: IStreamBar[] = [];
    for (let i = 0; i < 10_000; i++) {
      bars.push(bar(i, { start: i, end: i + 0.5, func: i % 4 === 0 ? 'g' : 'f', failed: i === 5000 }));
    }
    const rows = layoutRows(bars);
    const frame = frameSegments(rows, 0, 100, 100, 20_000); // 100 ms per pixel: 100 bars per pixel
    expect(frame.barsInView).toBe(10_000);
    expect(frame.failedInView).toBe(1);
    // touching columns merge into one rectangle covering them
    expect(frame.segments).toHaveLength(1);
    const [s] = frame.segments;
    expect([s.x0, s.x1, s.count, s.func, s.failed, s.bar]).toEqual([0, 100, 10_000, 'f', true, null]);
  });

  it('separates thin bars with gaps between them, and finds long and running bars that started earlier', () => {
    const rows = layoutRows([
      bar(0, { start: 0, end: 10_000 }), // long, started before the window
      bar(1, { start: 5000, end: 5001 }),
      bar(2, { start: 5500, end: 5501 }),
      bar(3, { start: 100, end: null, workerId: 'w2' }) // running, from before the window
    ]);
    const frame = frameSegments(rows, 4000, 10, 200, 6000);
    const row0 = frame.segments.filter(s => s.row === 0);
    expect(row0.map(s => [s.x0, s.x1, s.count])).toEqual([
      [0, 200, 1],
      [100, 101, 1],
      [150, 151, 1]
    ]);
    const running = frame.segments.filter(s => s.row === 1);
    expect(running.map(s => [s.x0, s.x1, s.running])).toEqual([[0, 200, true]]);
  });

  it('touches only the bars near the window', () => {
    const bars: IStreamBar[] = [];
    for (let i = 0; i < 100_000; i++) {
      bars.push(bar(i));
    }
    const rows = layoutRows(bars);
    expect(firstStartingAt(rows[0].bars, 500_000)).toBe(50_000);
    // count the bars a frame reads
    let reads = 0;
    rows[0].bars = new Proxy(rows[0].bars, {
      get(target, key, receiver) {
        if (typeof key === 'string' && /^[0-9]+$/.test(key)) {
          reads++;
        }
        return Reflect.get(target, key, receiver);
      }
    });
    const frame = frameSegments(rows, 500_000, 1, 500, 2_000_000); // [500000, 500500]: 51 bars
    expect(frame.barsInView).toBe(51);
    expect(reads).toBeLessThan(200); // a binary search plus the bars in view, not 100,000
  });
});

describe('hit testing and colours', () => {
  it('finds the segment under the pointer in its row', () => {
    const rows = layoutRows([bar(0), bar(1, { workerId: 'w2' })]);
    const frame = frameSegments(rows, 0, 1, 100, 100);
    expect(segmentAt(frame.segments, 0, 3)?.bar?.taskId).toBe('t0');
    expect(segmentAt(frame.segments, 1, 12)?.bar?.taskId).toBe('t1');
    expect(segmentAt(frame.segments, 0, 50)).toBeNull();
  });

  it('gives each function a stable colour that is never the failure colour', () => {
    expect(funcColor('square')).toBe(funcColor('square'));
    const colours = new Set(['load', 'square', 'total', 'check', 'noop', 'train'].map(funcColor));
    expect(colours.size).toBeGreaterThan(3);
    expect(colours.has(FAILED_COLOR)).toBe(false);
  });
});

describe('shortFuncName', () => {
  it('drops the module path but keeps a class', () => {
    expect(shortFuncName('tests.browser.run_workload.<locals>.load')).toBe('load');
    expect(shortFuncName('mymod.Counter.incr')).toBe('Counter.incr');
    expect(shortFuncName('mymod.sub.square')).toBe('square');
    expect(shortFuncName('noop')).toBe('noop');
  });
});
