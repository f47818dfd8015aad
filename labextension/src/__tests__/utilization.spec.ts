import { INodeHistory, IUtilizationReply, mergeHistory, seriesMax, sparklinePath } from '../utilization';

function hist(id: string, times: number[], cpu: number[] = times.map(() => 1)): INodeHistory {
  const zeros = times.map(() => 0);
  return {
    node_id: id,
    state: 'ALIVE',
    t_ms: times,
    cpu_used: cpu,
    cpu_total: times.map(() => 2),
    gpu_used: zeros,
    gpu_total: zeros,
    memory_used: zeros,
    memory_total: zeros,
    store_used_bytes: zeros,
    store_capacity_bytes: zeros
  };
}

function reply(now: number, nodes: INodeHistory[], historyMs = 10_000): IUtilizationReply {
  return { period_ms: 1000, history_ms: historyMs, now_ms: now, series: [], nodes };
}

describe('mergeHistory', () => {
  it('appends only newer samples and drops those out of the window', () => {
    let m = mergeHistory(new Map(), reply(3000, [hist('a', [1000, 2000, 3000], [1, 2, 3])]), true);
    m = mergeHistory(m, reply(12_500, [hist('a', [3000, 4000, 12_000], [3, 4, 5])]), false);
    expect(m.get('a')!.t_ms).toEqual([3000, 4000, 12_000]);
    expect(m.get('a')!.cpu_used).toEqual([3, 4, 5]);
    expect(m.get('a')!.cpu_total).toEqual([2, 2, 2]);
  });

  it('keeps a quiet node until its samples age out; a full read replaces everything', () => {
    let m = mergeHistory(new Map(), reply(2000, [hist('a', [2000]), hist('b', [2000])]), true);
    m = mergeHistory(m, reply(3000, [hist('a', [3000])]), false);
    expect([...m.keys()].sort()).toEqual(['a', 'b']);
    m = mergeHistory(m, reply(20_000, [hist('a', [20_000])]), false);
    expect([...m.keys()]).toEqual(['a']);
    m = mergeHistory(m, reply(21_000, [hist('c', [21_000])]), true);
    expect([...m.keys()]).toEqual(['c']);
  });
});

describe('sparklinePath', () => {
  it('maps time left to right and value bottom to top, clipped to the max', () => {
    expect(sparklinePath([0, 50, 100], [0, 1, 4], 0, 100, 2, 100, 10)).toBe('M0.0,10.0L50.0,5.0L100.0,0.0');
    expect(sparklinePath([0, 200], [1, 1], 100, 300, 1, 10, 10)).toBe('M5.0,0.0');
    expect(sparklinePath([], [], 0, 1, 1, 10, 10)).toBe('');
    expect(seriesMax([0, 3, 2])).toBe(3);
  });
});
