/**
 * The task graph as the panel shows it: tasks, the objects they consume
 * and produce (data edges) and who submitted whom (parent edges).
 *
 * Pure logic, no DOM. Rows arrive incrementally (snapshot, then event
 * batches); `upsert` keeps a structure version (nodes or edges changed:
 * lay out again) apart from a state version (only colours changed: keep
 * positions), so a busy cluster does not make the graph jump around.
 *
 * Large graphs are grouped by function: past `groupThreshold` visible
 * tasks, each function becomes one node with per-state counts, and data
 * edges connect groups directly (objects are folded into them). A group
 * can be expanded on its own. This keeps the drawing to a few hundred
 * elements at 10,000 tasks.
 */

import { ITaskRow, TERMINAL_STATES } from '../types';

export type NodeKind = 'task' | 'object' | 'group' | 'puts';
export type EdgeKind = 'data' | 'parent';

export interface IGraphNode {
  /** 't:<task id>', 'o:<object id>', 'g:<function>' or 'p:puts'. */
  id: string;
  kind: NodeKind;
  label: string;
  /** Task state; for a group the state that colours it; 'OBJECT' for objects. */
  state: string;
  /** First-seen order: keeps layouts stable as the graph grows. */
  seq: number;
  taskId?: string;
  objectId?: string;
  func?: string;
  counts?: { [state: string]: number };
  size?: number;
}

export interface IGraphEdge {
  source: string;
  target: string;
  kind: EdgeKind;
  count: number;
}

export interface IGraphView {
  nodes: IGraphNode[];
  edges: IGraphEdge[];
  grouped: boolean;
  totalTasks: number;
  visibleTasks: number;
  /** Changes when nodes or edges change (positions must be recomputed). */
  structureKey: string;
}

export interface IGraphFilter {
  jobId: string | null;
  contextTag: string | null;
}

export interface IGraphOptions {
  /** Visible tasks above which tasks are grouped by function. */
  groupThreshold: number;
  /** Largest group that may be expanded into single tasks. */
  maxExpandedGroupTasks: number;
}

export const DEFAULT_GRAPH_OPTIONS: IGraphOptions = {
  groupThreshold: 250,
  maxExpandedGroupTasks: 250
};

const RUNNING = new Set(['RUNNING', 'RUNNING_IN_RAY_GET', 'RUNNING_IN_RAY_WAIT']);

/** The state a group is coloured by: what most needs attention. */
export function groupState(counts: { [state: string]: number }): string {
  let pending = false;
  for (const [state, n] of Object.entries(counts)) {
    if (n <= 0) {
      continue;
    }
    if (RUNNING.has(state)) {
      return 'RUNNING';
    }
    if (!TERMINAL_STATES.has(state)) {
      pending = true;
    }
  }
  if (pending) {
    return 'PENDING_NODE_ASSIGNMENT';
  }
  return (counts['FAILED'] || 0) > 0 ? 'FAILED' : 'FINISHED';
}

export function funcKey(row: ITaskRow): string {
  return row.func_or_class_name || row.name || '(unknown)';
}

function sameList(a: string[], b: string[]): boolean {
  if (a.length !== b.length) {
    return false;
  }
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) {
      return false;
    }
  }
  return true;
}

export class GraphModel {
  readonly options: IGraphOptions;
  private _tasks = new Map<string, ITaskRow>();
  private _seq = new Map<string, number>();
  private _nextSeq = 0;
  private _producer = new Map<string, string>();
  private _expanded = new Set<string>();
  private _filter: IGraphFilter = { jobId: null, contextTag: null };
  private _structureVersion = 0;
  private _stateVersion = 0;
  private _settingsVersion = 0;
  private _cache: { key: string; view: IGraphView } | null = null;

  constructor(options: Partial<IGraphOptions> = {}) {
    this.options = { ...DEFAULT_GRAPH_OPTIONS, ...options };
  }

  get size(): number {
    return this._tasks.size;
  }

  get structureVersion(): number {
    return this._structureVersion;
  }

  get stateVersion(): number {
    return this._stateVersion;
  }

  get filter(): IGraphFilter {
    return { ...this._filter };
  }

  task(taskId: string): ITaskRow | undefined {
    return this._tasks.get(taskId);
  }

  /** The task that produced an object, if it is known. */
  producerOf(objectId: string): string | undefined {
    return this._producer.get(objectId);
  }

  clear(): void {
    this._tasks.clear();
    this._seq.clear();
    this._producer.clear();
    this._nextSeq = 0;
    this._structureVersion++;
    this._stateVersion++;
  }

  /**
   * Merge task rows (newer reports win). Returns whether the structure
   * changed (new tasks or edges) and whether any state changed.
   */
  upsert(rows: ITaskRow[]): { structure: boolean; state: boolean } {
    let structure = false;
    let state = false;
    for (const row of rows) {
      const old = this._tasks.get(row.task_id);
      if (old !== undefined && isOlder(row, old)) {
        continue;
      }
      this._tasks.set(row.task_id, row);
      if (old === undefined) {
        this._seq.set(row.task_id, this._nextSeq++);
        this._indexReturns(row);
        structure = true;
        continue;
      }
      if (
        !sameList(old.arg_object_ids, row.arg_object_ids) ||
        !sameList(old.return_object_ids, row.return_object_ids) ||
        old.parent_task_id !== row.parent_task_id ||
        funcKey(old) !== funcKey(row) ||
        old.name !== row.name ||
        old.job_id !== row.job_id ||
        old.context_tag !== row.context_tag
      ) {
        for (const o of old.return_object_ids) {
          if (this._producer.get(o) === old.task_id) {
            this._producer.delete(o);
          }
        }
        this._indexReturns(row);
        structure = true;
      } else if (old.state !== row.state) {
        state = true;
      }
    }
    if (structure) {
      this._structureVersion++;
    }
    if (structure || state) {
      this._stateVersion++;
    }
    return { structure, state };
  }

  setFilter(filter: Partial<IGraphFilter>): void {
    this._filter = { ...this._filter, ...filter };
    this._settingsVersion++;
  }

  isExpanded(func: string): boolean {
    return this._expanded.has(func);
  }

  /** Show the tasks of one function group one by one, or fold them again. */
  toggleGroup(func: string): void {
    if (this._expanded.has(func)) {
      this._expanded.delete(func);
    } else {
      this._expanded.add(func);
    }
    this._settingsVersion++;
  }

  /** Distinct job ids and notebook cells of the known tasks, first seen first. */
  facets(): { jobs: string[]; contextTags: string[] } {
    const jobs = new Set<string>();
    const tags = new Set<string>();
    for (const t of this._tasks.values()) {
      if (t.job_id) {
        jobs.add(t.job_id);
      }
      if (t.context_tag) {
        tags.add(t.context_tag);
      }
    }
    return { jobs: [...jobs], contextTags: [...tags] };
  }

  private _indexReturns(row: ITaskRow): void {
    for (const o of row.return_object_ids) {
      this._producer.set(o, row.task_id);
    }
  }

  private _visible(row: ITaskRow): boolean {
    const f = this._filter;
    return (
      (f.jobId === null || row.job_id === f.jobId) &&
      (f.contextTag === null || row.context_tag === f.contextTag)
    );
  }

  /** The nodes and edges to draw (the layout's input). */
  view(): IGraphView {
    const key = `${this._structureVersion}/${this._stateVersion}/${this._settingsVersion}`;
    if (this._cache !== null && this._cache.key === key) {
      return this._cache.view;
    }
    const view = this._build(`${this._structureVersion}/${this._settingsVersion}`);
    this._cache = { key, view };
    return view;
  }

  private _build(structureBase: string): IGraphView {
    const visible: ITaskRow[] = [];
    const groupSize = new Map<string, number>();
    for (const row of this._tasks.values()) {
      if (this._visible(row)) {
        visible.push(row);
        const f = funcKey(row);
        groupSize.set(f, (groupSize.get(f) || 0) + 1);
      }
    }
    const grouped = visible.length > this.options.groupThreshold;
    const visibleIds = new Set<string>();
    for (const row of visible) {
      visibleIds.add(row.task_id);
    }
    const rep = (row: ITaskRow): string => {
      if (!grouped) {
        return 't:' + row.task_id;
      }
      const f = funcKey(row);
      if (this._expanded.has(f) && (groupSize.get(f) || 0) <= this.options.maxExpandedGroupTasks) {
        return 't:' + row.task_id;
      }
      return 'g:' + f;
    };

    const nodes = new Map<string, IGraphNode>();
    const edges = new Map<string, IGraphEdge>();
    const addEdge = (source: string, target: string, kind: EdgeKind): void => {
      if (source === target) {
        return;
      }
      const k = `${source}|${target}|${kind}`;
      const e = edges.get(k);
      if (e) {
        e.count++;
      } else {
        edges.set(k, { source, target, kind, count: 1 });
      }
    };

    for (const row of visible) {
      const id = rep(row);
      const seq = this._seq.get(row.task_id) || 0;
      if (id.startsWith('t:')) {
        nodes.set(id, {
          id,
          kind: 'task',
          label: row.name || funcKey(row),
          state: row.state,
          seq,
          taskId: row.task_id,
          func: funcKey(row)
        });
      } else {
        let g = nodes.get(id);
        if (!g) {
          const f = funcKey(row);
          g = { id, kind: 'group', label: row.name || f, state: 'FINISHED', seq, func: f, counts: {}, size: 0 };
          nodes.set(id, g);
        }
        g.counts![row.state] = (g.counts![row.state] || 0) + 1;
        g.size! += 1;
        g.seq = Math.min(g.seq, seq);
      }
    }
    for (const g of nodes.values()) {
      if (g.kind === 'group') {
        g.state = groupState(g.counts!);
        g.label = `${g.label} ×${g.size}`;
      }
    }

    let putsCount = 0;
    for (const row of visible) {
      const me = rep(row);
      const mySeq = this._seq.get(row.task_id) || 0;
      if (row.parent_task_id && visibleIds.has(row.parent_task_id)) {
        addEdge(rep(this._tasks.get(row.parent_task_id)!), me, 'parent');
      }
      if (!grouped) {
        for (const o of row.return_object_ids) {
          const oid = 'o:' + o;
          if (!nodes.has(oid)) {
            nodes.set(oid, { id: oid, kind: 'object', label: o.slice(0, 8), state: 'OBJECT', seq: mySeq, objectId: o });
          }
          addEdge(me, oid, 'data');
        }
      }
      for (const o of row.arg_object_ids) {
        const producer = this._producer.get(o);
        const fromVisibleTask = producer !== undefined && visibleIds.has(producer);
        if (!grouped) {
          const oid = 'o:' + o;
          if (!nodes.has(oid)) {
            nodes.set(oid, { id: oid, kind: 'object', label: o.slice(0, 8), state: 'OBJECT', seq: mySeq, objectId: o });
          }
          addEdge(oid, me, 'data');
        } else if (fromVisibleTask) {
          addEdge(rep(this._tasks.get(producer!)!), me, 'data');
        } else {
          if (!nodes.has('p:puts')) {
            nodes.set('p:puts', { id: 'p:puts', kind: 'puts', label: 'objects from drivers', state: 'OBJECT', seq: -1, size: 0 });
          }
          putsCount++;
          addEdge('p:puts', me, 'data');
        }
      }
    }
    const puts = nodes.get('p:puts');
    if (puts) {
      puts.size = putsCount;
      puts.label = `objects from drivers ×${putsCount}`;
    }

    const nodeList = [...nodes.values()];
    const edgeList = [...edges.values()];
    return {
      nodes: nodeList,
      edges: edgeList,
      grouped,
      totalTasks: this._tasks.size,
      visibleTasks: visible.length,
      structureKey: `${structureBase}/${nodeList.length}/${edgeList.length}/${grouped ? 'g' : 'f'}`
    };
  }
}

/** True when `row` is an older report of the task than `current`. */
export function isOlder(row: ITaskRow, current: ITaskRow): boolean {
  if (row.attempt_number !== current.attempt_number) {
    return row.attempt_number < current.attempt_number;
  }
  const rowTerminal = TERMINAL_STATES.has(row.state);
  const curTerminal = TERMINAL_STATES.has(current.state);
  if (rowTerminal !== curTerminal) {
    return !rowTerminal;
  }
  return row.updated_ns < current.updated_ns;
}
