/**
 * The panel's live copy of the cluster: a snapshot loaded over the API,
 * then kept current by the relayed event stream.
 *
 * The stream is opened first; when the dashboard's `hello` arrives the
 * snapshot is loaded, and events that arrive meanwhile are applied after
 * it (rows carry their update time, so older ones lose). A dropped stream
 * (a cluster restart, a Jupyter server restart) is reopened with backoff,
 * and every new `hello` reloads the snapshot.
 */

import { ISignal, Signal } from '@lumino/signaling';

import { ApiError, NbrayApi } from './api';
import { GraphModel } from './graph/model';
import { ISseEvent, SseParser } from './sse';
import { StreamModel } from './stream/model';
import { INodeHistory, IUtilizationReply, mergeHistory } from './utilization';
import {
  IActorRow,
  IClusterSummary,
  IClustersStatus,
  IJobRow,
  INodeRow,
  IObjectRow,
  ITaskRow
} from './types';

export type ChangeKind = 'status' | 'clusters' | 'nodes' | 'tasks' | 'actors' | 'objects' | 'summary' | 'utilization';

export interface IConnectionStatus {
  connected: boolean;
  cluster: string | null;
  error: string | null;
  loading: boolean;
}

const TASK_PAGE = 20_000;

interface ITasksPage {
  total: number;
  tasks: ITaskRow[];
  /** With `attempts=true`: earlier attempts of retried tasks (absent from an older dashboard). */
  earlier_attempts?: ITaskRow[];
}
const OBJECTS_SHOWN = 10;
const OBJECTS_REFRESH_MS = 1500;
const MAX_BACKOFF_MS = 5000;
const UTILIZATION_REFRESH_MS = 2000;

function sleep(ms: number): Promise<void> {
  return new Promise(resolve => setTimeout(resolve, ms));
}

export class ClusterClient {
  readonly api: NbrayApi;
  readonly graph = new GraphModel();
  /** Task attempts over time, for the task stream. */
  readonly stream = new StreamModel();
  /** Per-node utilization history (sparklines), by node id. */
  utilization = new Map<string, INodeHistory>();
  /** How far back the utilization history goes (the dashboard says). */
  utilizationWindowMs = 600_000;
  nodes = new Map<string, INodeRow>();
  actors = new Map<string, IActorRow>();
  jobs = new Map<string, IJobRow>();
  objects: IObjectRow[] = [];
  objectsTotal = { count: 0, bytes: 0 };
  summary: IClusterSummary | null = null;
  clusters: IClustersStatus | null = null;
  status: IConnectionStatus = { connected: false, cluster: null, error: null, loading: false };

  private _changed = new Signal<this, ChangeKind>(this);
  private _abort: AbortController | null = null;
  private _disposed = false;
  private _buffer: ISseEvent[] | null = null;
  private _objectsTimer: number | null = null;
  private _loadGeneration = 0;
  private _utilizationTimer: number | null = null;

  constructor(api?: NbrayApi) {
    this.api = api || new NbrayApi();
  }

  get changed(): ISignal<this, ChangeKind> {
    return this._changed;
  }

  start(): void {
    void this._streamLoop();
    void this.refreshClusters();
    void this.refreshUtilization();
  }

  dispose(): void {
    this._disposed = true;
    this._abort?.abort();
    if (this._objectsTimer !== null) {
      clearTimeout(this._objectsTimer);
    }
    if (this._utilizationTimer !== null) {
      clearTimeout(this._utilizationTimer);
    }
  }

  // ---- cluster choice ---------------------------------------------------------------------------------------

  async refreshClusters(): Promise<void> {
    try {
      this.clusters = await this.api.get<IClustersStatus>('clusters');
      if (!this.status.connected && this.clusters.error) {
        this.status = { ...this.status, error: this.clusters.error };
        this._changed.emit('status');
      }
    } catch (error) {
      this.clusters = null;
    }
    this._changed.emit('clusters');
  }

  async select(clusterId: string): Promise<void> {
    this.clusters = await this.api.post<IClustersStatus>('clusters/select', { cluster: clusterId });
    this._changed.emit('clusters');
  }

  // ---- actions -------------------------------------------------------------------------------------------------

  cancelTask(taskId: string, force = false): Promise<{ found: boolean; state: string }> {
    return this.api.post(`api/tasks/${taskId}/cancel`, undefined, { force });
  }

  killActor(actorId: string): Promise<{ killed: boolean }> {
    return this.api.post(`api/actors/${actorId}/kill`);
  }

  // ---- the event stream --------------------------------------------------------------------------------------

  private async _streamLoop(): Promise<void> {
    let backoff = 500;
    while (!this._disposed) {
      const abort = new AbortController();
      this._abort = abort;
      try {
        const response = await this.api.openEvents(abort.signal);
        if (!response.ok || !response.body) {
          throw new ApiError(response.status, `event stream refused (${response.status})`);
        }
        backoff = 500;
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        const parser = new SseParser();
        for (;;) {
          const { done, value } = await reader.read();
          if (done) {
            break;
          }
          for (const ev of parser.push(decoder.decode(value, { stream: true }))) {
            this._onEvent(ev);
          }
        }
      } catch (error) {
        if (this._disposed) {
          return;
        }
        this._setDisconnected(error instanceof ApiError ? error.message : 'the Jupyter server is not reachable');
      }
      if (this._disposed) {
        return;
      }
      this._setDisconnected(this.status.error || 'reconnecting');
      await sleep(backoff);
      backoff = Math.min(MAX_BACKOFF_MS, backoff * 2);
    }
  }

  private _setDisconnected(error: string | null): void {
    if (this.status.connected || this.status.error !== error) {
      this.status = { connected: false, cluster: this.status.cluster, error, loading: false };
      this._changed.emit('status');
    }
  }

  private _onEvent(ev: ISseEvent): void {
    let data: any;
    try {
      data = JSON.parse(ev.data);
    } catch {
      return;
    }
    if (ev.event === 'relay') {
      if (!data.connected) {
        this._setDisconnected(data.error || 'no cluster');
        void this.refreshClusters();
      } else {
        this.status = { ...this.status, cluster: data.cluster, error: null };
      }
      return;
    }
    if (ev.event === 'hello' || ev.event === 'resync') {
      void this._loadSnapshot();
      return;
    }
    if (this._buffer !== null) {
      this._buffer.push(ev);
      return;
    }
    this._apply(ev.event, data);
  }

  private _apply(event: string, data: any): void {
    switch (event) {
      case 'tasks': {
        this.graph.upsert(data.tasks as ITaskRow[]);
        this.stream.upsert(data.tasks as ITaskRow[]);
        this._changed.emit('tasks');
        break;
      }
      case 'nodes': {
        let storeChanged = false;
        for (const n of data.nodes as INodeRow[]) {
          const old = this.nodes.get(n.node_id);
          storeChanged =
            storeChanged ||
            !old ||
            old.object_store.used_bytes !== n.object_store.used_bytes ||
            old.object_store.spilled_bytes !== n.object_store.spilled_bytes;
          this.nodes.set(n.node_id, n);
        }
        this._changed.emit('nodes');
        if (storeChanged) {
          this._scheduleObjects();
        }
        break;
      }
      case 'actors':
        for (const a of data.actors as IActorRow[]) {
          this.actors.set(a.actor_id, a);
        }
        this._changed.emit('actors');
        break;
      case 'jobs':
        for (const j of data.jobs as IJobRow[]) {
          this.jobs.set(j.job_id, j);
        }
        this._changed.emit('summary');
        break;
      case 'status':
        if (this.summary) {
          this.summary.gcs_connected = !!data.gcs_connected;
        }
        this._changed.emit('status');
        break;
    }
  }

  private async _loadSnapshot(): Promise<void> {
    const generation = ++this._loadGeneration;
    this._buffer = [];
    this.status = { ...this.status, loading: true };
    this._changed.emit('status');
    try {
      const [summary, nodes, actors] = await Promise.all([
        this.api.get<IClusterSummary>('api/cluster'),
        this.api.get<{ nodes: INodeRow[] }>('api/nodes'),
        this.api.get<{ actors: IActorRow[] }>('api/actors')
      ]);
      const rows: ITaskRow[] = [];
      // Earlier attempts of retried tasks (for the task stream) come with the first page.
      let earlierAttempts: ITaskRow[] = [];
      for (let offset = 0; ; offset += TASK_PAGE) {
        const page = await this.api.get<ITasksPage>('api/tasks', {
          offset,
          limit: TASK_PAGE,
          attempts: offset === 0 ? true : undefined
        });
        if (offset === 0) {
          earlierAttempts = page.earlier_attempts || [];
        }
        rows.push(...page.tasks);
        if (page.tasks.length < TASK_PAGE || rows.length >= page.total) {
          break;
        }
      }
      if (generation !== this._loadGeneration) {
        return; // a newer load started
      }
      this.summary = summary;
      this.nodes = new Map(nodes.nodes.map(n => [n.node_id, n]));
      this.actors = new Map(actors.actors.map(a => [a.actor_id, a]));
      this.jobs = new Map(summary.jobs.map(j => [j.job_id, j]));
      this.graph.clear();
      this.graph.upsert(rows);
      this.stream.reload(rows, earlierAttempts);
      this.utilization = new Map();
      const buffered = this._buffer || [];
      this._buffer = null;
      for (const ev of buffered) {
        try {
          this._apply(ev.event, JSON.parse(ev.data));
        } catch {
          // a malformed event is skipped
        }
      }
      this.status = { connected: true, cluster: summary.gcs_address, error: null, loading: false };
      for (const kind of ['status', 'summary', 'nodes', 'actors', 'tasks'] as ChangeKind[]) {
        this._changed.emit(kind);
      }
      void this.refreshObjects();
      void this.refreshClusters();
    } catch (error) {
      if (generation === this._loadGeneration) {
        this._buffer = null;
        this._setDisconnected(error instanceof ApiError ? error.message : String(error));
      }
    }
  }

  // ---- objects -------------------------------------------------------------------------------------------------

  private _scheduleObjects(): void {
    if (this._objectsTimer === null) {
      this._objectsTimer = window.setTimeout(() => {
        this._objectsTimer = null;
        void this.refreshObjects();
      }, OBJECTS_REFRESH_MS);
    }
  }

  async refreshObjects(): Promise<void> {
    try {
      const reply = await this.api.get<{ total: number; total_bytes: number; objects: IObjectRow[] }>(
        'api/objects',
        { limit: OBJECTS_SHOWN }
      );
      this.objects = reply.objects;
      this.objectsTotal = { count: reply.total, bytes: reply.total_bytes };
      this._changed.emit('objects');
    } catch {
      // shown again at the next change
    }
  }

  // ---- utilization history ---------------------------------------------------------------------------------------

  /** Newer utilization samples (all of them after a reload); repeats every couple of seconds. */
  async refreshUtilization(): Promise<void> {
    if (this._disposed) {
      return;
    }
    const full = this.utilization.size === 0;
    let since = 0;
    for (const n of this.utilization.values()) {
      if (n.t_ms.length) {
        since = Math.max(since, n.t_ms[n.t_ms.length - 1]);
      }
    }
    try {
      if (this.status.connected) {
        const reply = await this.api.get<IUtilizationReply>('api/utilization', full ? {} : { since_ms: since });
        this.utilization = mergeHistory(this.utilization, reply, full);
        this.utilizationWindowMs = reply.history_ms;
        this._changed.emit('utilization');
      }
    } catch {
      // an older dashboard, or a cluster going away: tried again shortly
    }
    if (!this._disposed) {
      this._utilizationTimer = window.setTimeout(() => void this.refreshUtilization(), UTILIZATION_REFRESH_MS);
    }
  }
}
