import { GraphModel, groupState, isOlder } from '../graph/model';
import { layeredLayout } from '../graph/layout';
import { later, task } from './fixtures';

function ids(model: GraphModel): string[] {
  return model.view().nodes.map(n => n.id).sort();
}

function edges(model: GraphModel): string[] {
  return model
    .view()
    .edges.map(e => `${e.source}>${e.target}:${e.kind}${e.count > 1 ? 'x' + e.count : ''}`)
    .sort();
}

describe('GraphModel: full graph', () => {
  it('draws tasks, their objects and data edges', () => {
    const m = new GraphModel();
    m.upsert([
      task('A', { return_object_ids: ['a1'] }),
      task('B', { arg_object_ids: ['a1', 'put1'], return_object_ids: ['b1'] })
    ]);
    expect(ids(m)).toEqual(['o:a1', 'o:b1', 'o:put1', 't:A', 't:B']);
    expect(edges(m)).toEqual(['o:a1>t:B:data', 'o:put1>t:B:data', 't:A>o:a1:data', 't:B>o:b1:data']);
    expect(m.view().grouped).toBe(false);
    expect(m.producerOf('a1')).toBe('A');
  });

  it('draws parent edges between visible tasks only', () => {
    const m = new GraphModel();
    m.upsert([
      task('P', { parent_task_id: 'driver' }),
      task('C', { parent_task_id: 'P' })
    ]);
    expect(edges(m)).toContain('t:P>t:C:parent');
    expect(edges(m).filter(e => e.includes('driver'))).toEqual([]);
  });

  it('filters by job and by notebook cell', () => {
    const m = new GraphModel();
    m.upsert([
      task('A', { job_id: '01', context_tag: 'cell-1' }),
      task('B', { job_id: '01', context_tag: 'cell-2' }),
      task('C', { job_id: '02', context_tag: 'cell-2' })
    ]);
    m.setFilter({ jobId: '01' });
    expect(ids(m).filter(i => i.startsWith('t:'))).toEqual(['t:A', 't:B']);
    m.setFilter({ contextTag: 'cell-2' });
    expect(ids(m).filter(i => i.startsWith('t:'))).toEqual(['t:B']);
    m.setFilter({ jobId: null });
    expect(ids(m).filter(i => i.startsWith('t:'))).toEqual(['t:B', 't:C']);
    expect(m.facets()).toEqual({ jobs: ['01', '02'], contextTags: ['cell-1', 'cell-2'] });
  });
});

describe('GraphModel: grouping by function', () => {
  function fanOut(n: number): GraphModel {
    const m = new GraphModel({ groupThreshold: 10 });
    const rows = [task('G', { func_or_class_name: 'load', return_object_ids: ['g1'], state: 'FINISHED' })];
    for (let i = 0; i < n; i++) {
      rows.push(
        task(`F${i}`, {
          func_or_class_name: 'square',
          arg_object_ids: ['g1', `put${i % 3}`],
          state: i % 4 === 0 ? 'FAILED' : 'FINISHED'
        })
      );
    }
    m.upsert(rows);
    return m;
  }

  it('collapses past the threshold: one node per function, objects folded into edges', () => {
    const m = fanOut(30);
    const view = m.view();
    expect(view.grouped).toBe(true);
    expect(ids(m)).toEqual(['g:load', 'g:square', 'p:puts']);
    expect(edges(m)).toEqual(['g:load>g:square:datax30', 'p:puts>g:square:datax30']);
    const square = view.nodes.find(n => n.id === 'g:square')!;
    expect(square.size).toBe(30);
    expect(square.counts).toEqual({ FAILED: 8, FINISHED: 22 });
    expect(square.state).toBe('FAILED');
    expect(square.label).toBe('square ×30');
  });

  it('stays a full graph at or below the threshold', () => {
    const m = fanOut(9);
    expect(m.view().grouped).toBe(false);
    expect(ids(m).filter(i => i.startsWith('t:')).length).toBe(10);
  });

  it('expands one group on demand and keeps the others folded', () => {
    const m = fanOut(30);
    m.toggleGroup('load');
    expect(ids(m)).toEqual(['g:square', 'p:puts', 't:G']);
    expect(edges(m)).toContain('t:G>g:square:datax30');
    m.toggleGroup('load');
    expect(ids(m)).toContain('g:load');
  });

  it('does not expand groups larger than the limit', () => {
    const m = new GraphModel({ groupThreshold: 10, maxExpandedGroupTasks: 20 });
    const rows = [];
    for (let i = 0; i < 30; i++) {
      rows.push(task(`F${i}`, { func_or_class_name: 'square' }));
    }
    m.upsert(rows);
    m.toggleGroup('square');
    expect(ids(m)).toEqual(['g:square']);
  });

  it('colours a group by what needs attention', () => {
    expect(groupState({ FINISHED: 3, RUNNING: 1, FAILED: 1 })).toBe('RUNNING');
    expect(groupState({ FINISHED: 3, PENDING_ARGS_AVAIL: 1 })).toBe('PENDING_NODE_ASSIGNMENT');
    expect(groupState({ FINISHED: 3, FAILED: 1 })).toBe('FAILED');
    expect(groupState({ FINISHED: 3 })).toBe('FINISHED');
  });
});

describe('GraphModel: incremental updates', () => {
  it('keeps the structure when only states change', () => {
    const m = new GraphModel();
    const a = task('A');
    m.upsert([a, task('B', { arg_object_ids: ['A-ret'] })]);
    const before = m.view();
    const r = m.upsert([later(a, { state: 'RUNNING' })]);
    expect(r).toEqual({ structure: false, state: true });
    const after = m.view();
    expect(after.structureKey).toBe(before.structureKey);
    expect(after.nodes.find(n => n.id === 't:A')!.state).toBe('RUNNING');
  });

  it('adds new tasks and edges as they arrive', () => {
    const m = new GraphModel();
    m.upsert([task('A')]);
    const key = m.view().structureKey;
    const r = m.upsert([task('B', { arg_object_ids: ['A-ret'] })]);
    expect(r.structure).toBe(true);
    expect(m.view().structureKey).not.toBe(key);
    expect(edges(m)).toContain('o:A-ret>t:B:data');
  });

  it('fills in edges when the complete row follows a minimal one', () => {
    const m = new GraphModel();
    const minimal = task('B', { name: '', func_or_class_name: '', return_object_ids: [] });
    m.upsert([task('A'), minimal]);
    expect(edges(m)).not.toContain('o:A-ret>t:B:data');
    const r = m.upsert([later(minimal, { name: 'g', func_or_class_name: 'g', arg_object_ids: ['A-ret'] })]);
    expect(r.structure).toBe(true);
    expect(edges(m)).toContain('o:A-ret>t:B:data');
    expect(m.view().nodes.find(n => n.id === 't:B')!.label).toBe('g');
  });

  it('ignores reports older than what it has', () => {
    const a = task('A');
    const done = later(a, { state: 'FINISHED' });
    const m = new GraphModel();
    m.upsert([done]);
    expect(m.upsert([later(a, { state: 'RUNNING' })])).toEqual({ structure: false, state: false });
    expect(m.task('A')!.state).toBe('FINISHED');
    expect(isOlder(later(a, { state: 'RUNNING' }), done)).toBe(true);
    expect(isOlder(later(a, { attempt_number: 1 }), done)).toBe(false);
  });

  it('updates group counts in place when states change', () => {
    const m = new GraphModel({ groupThreshold: 2 });
    const rows = [task('A'), task('B'), task('C')];
    m.upsert(rows);
    const key = m.view().structureKey;
    m.upsert([later(rows[0], { state: 'FINISHED' })]);
    const g = m.view().nodes.find(n => n.id === 'g:f')!;
    expect(m.view().structureKey).toBe(key);
    expect(g.counts).toEqual({ FINISHED: 1, PENDING_NODE_ASSIGNMENT: 2 });
  });
});

describe('GraphModel at 10,000 tasks', () => {
  it('stays small, and state updates neither relayout nor rebuild more than once per batch', () => {
    const m = new GraphModel();
    const rows = [];
    for (let i = 0; i < 10_000; i++) {
      const fn = `fn${i % 5}`;
      const args = i >= 5 ? [`T${i - 5}-ret`] : [];
      rows.push(task(`T${i}`, { func_or_class_name: fn, name: fn, arg_object_ids: args, parent_task_id: 'driver' }));
    }
    m.upsert(rows);
    const view = m.view();
    const layout = layeredLayout(view.nodes, view.edges);
    expect(view.grouped).toBe(true);
    expect(view.visibleTasks).toBe(10_000);
    expect(view.nodes.length).toBe(5);
    expect(layout.positions.size).toBe(5);

    // 50 event batches of 200 state changes each, each followed by a redraw's view().
    // The work is counted rather than timed (a loaded machine makes clocks lie):
    // state changes must not touch the structure, so nothing is laid out again,
    // and each redraw rebuilds the view at most once.
    const builds = jest.spyOn(m as any, '_build');
    const structureKey = view.structureKey;
    let structureChanges = 0;
    for (let b = 0; b < 50; b++) {
      const batch = [];
      for (let i = b * 200; i < (b + 1) * 200; i++) {
        batch.push(later(rows[i], { state: 'FINISHED' }));
      }
      if (m.upsert(batch).structure) {
        structureChanges++;
      }
      m.view();
      m.view(); // a second redraw without changes reuses the view
    }
    expect(structureChanges).toBe(0);
    expect(m.view().structureKey).toBe(structureKey);
    expect(builds).toHaveBeenCalledTimes(50);
    builds.mockRestore();
    const counts = m.view().nodes.reduce((s, n) => s + (n.counts!['FINISHED'] || 0), 0);
    expect(counts).toBe(10_000);
  });
});
