import { layeredLayout } from '../graph/layout';

const n = (id: string, seq: number) => ({ id, seq, kind: 'task' });

describe('layeredLayout', () => {
  it('puts producers above consumers, one rank per step', () => {
    const l = layeredLayout([n('a', 0), n('b', 1), n('c', 2)], [
      { source: 'a', target: 'b' },
      { source: 'b', target: 'c' },
      { source: 'a', target: 'c' }
    ]);
    expect(l.ranks.get('a')).toBe(0);
    expect(l.ranks.get('b')).toBe(1);
    expect(l.ranks.get('c')).toBe(2);
    expect(l.positions.get('a')!.y).toBeLessThan(l.positions.get('b')!.y);
    expect(l.positions.get('b')!.y).toBeLessThan(l.positions.get('c')!.y);
  });

  it('wraps a wide rank onto several rows', () => {
    const nodes = Array.from({ length: 20 }, (_, i) => n(`s${i}`, i));
    const l = layeredLayout(nodes, [], { maxPerRow: 8, rowHeight: 10 });
    const rows = new Set([...l.positions.values()].map(p => p.y));
    expect(rows.size).toBe(3);
    expect(l.height).toBe(30);
  });

  it('orders a rank by its predecessors, then by first-seen order', () => {
    const l = layeredLayout([n('p1', 0), n('p2', 1), n('c2', 2), n('c1', 3)], [
      { source: 'p1', target: 'c1' },
      { source: 'p2', target: 'c2' }
    ]);
    expect(l.positions.get('c1')!.x).toBeLessThan(l.positions.get('c2')!.x);
  });

  it('terminates on a cycle and still places every node', () => {
    const l = layeredLayout([n('a', 0), n('b', 1), n('c', 2)], [
      { source: 'a', target: 'b' },
      { source: 'b', target: 'a' },
      { source: 'c', target: 'a' }
    ]);
    expect(l.positions.size).toBe(3);
  });

  it('ignores edges to unknown nodes', () => {
    const l = layeredLayout([n('a', 0)], [{ source: 'a', target: 'zz' }]);
    expect(l.ranks.get('a')).toBe(0);
  });
});
