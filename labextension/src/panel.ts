/**
 * The nbray sidebar: connection and cluster choice, nodes, object stores,
 * actors and the live task graph with a detail view of the chosen task.
 *
 * Redraws are coalesced to one per animation frame; each section redraws
 * only when its part of the model changed.
 */

import { Widget } from '@lumino/widgets';

import { ChangeKind, ClusterClient } from './client';
import { amount, bytes, h, objectId, short } from './format';
import { GraphSection, killActor } from './graphsection';
import { JobsSection } from './jobssection';
import { nodeSparklines } from './sparklines';
import { StreamSection } from './streamsection';
import { IActorRow, INodeRow, IUsage } from './types';

export const PANEL_ID = 'nbray-panel';

function usageBar(label: string, usage: IUsage, text: string, cls: string): HTMLElement {
  const pct = usage.total > 0 ? Math.min(100, (100 * usage.used) / usage.total) : 0;
  const fill = h('div', { class: 'nbray-bar-fill' });
  fill.style.width = `${pct}%`;
  return h(
    'div',
    { class: `nbray-usage ${cls}`, 'data-used': usage.used, 'data-total': usage.total },
    h('span', { class: 'nbray-usage-label' }, label),
    h('div', { class: 'nbray-bar' }, fill),
    h('span', { class: 'nbray-usage-text' }, text)
  );
}

function section(title: string, cls: string): { root: HTMLElement; body: HTMLElement; title: HTMLElement } {
  const heading = h('span', { class: 'nbray-section-title' }, title);
  const body = h('div', { class: 'nbray-section-body' });
  const header = h('div', { class: 'nbray-section-header', role: 'button', tabindex: 0 }, heading);
  const root = h('section', { class: `nbray-section ${cls}` }, header, body);
  header.addEventListener('click', () => root.classList.toggle('nbray-collapsed'));
  return { root, body, title: heading };
}

export class NbrayPanel extends Widget {
  readonly client: ClusterClient;
  private _status: HTMLElement;
  private _chooser: HTMLSelectElement;
  private _nodes = section('Nodes', 'nbray-nodes-section');
  private _store = section('Object store', 'nbray-store-section');
  private _actors = section('Actors', 'nbray-actors-section');
  private _graphSection = section('Task graph', 'nbray-graph-section');
  private _graphBox: GraphSection;
  private _jobs = section('Jobs', 'nbray-jobs-section');
  private _jobsBox: JobsSection;
  private _streamSection = section('Task stream', 'nbray-stream-section');
  private _streamBox: StreamSection;
  private _pending = new Set<ChangeKind>();
  private _frame: number | null = null;

  constructor(client: ClusterClient, options: { popOut?: () => void } = {}) {
    super();
    this.id = PANEL_ID;
    this.addClass('nbray-panel');
    this.client = client;

    this._status = h('div', { class: 'nbray-status' });
    this._chooser = h('select', { class: 'nbray-chooser', title: 'Cluster to show' }) as HTMLSelectElement;
    this._chooser.addEventListener('change', () => void this._choose(this._chooser.value));
    const header = h(
      'div',
      { class: 'nbray-header' },
      h('div', { class: 'nbray-title' }, 'nbray'),
      this._status,
      h('label', { class: 'nbray-chooser-label' }, 'Cluster ', this._chooser)
    );

    this._graphBox = new GraphSection(client, { popOut: options.popOut }, () => this._schedule('tasks'));
    this._graphSection.body.append(this._graphBox.node);

    this._streamBox = new StreamSection(client);
    this._streamSection.body.append(this._streamBox.node);
    this._streamSection.root.firstElementChild?.addEventListener('click', () => this._schedule('tasks'));

    this._jobsBox = new JobsSection(client.api, text => (this._jobs.title.textContent = text));
    this._jobs.body.append(this._jobsBox.node);

    this.node.append(
      header,
      this._nodes.root,
      this._store.root,
      this._actors.root,
      this._jobs.root,
      this._streamSection.root,
      this._graphSection.root
    );
    client.changed.connect(this._onChanged, this);
    for (const kind of ['status', 'clusters', 'nodes', 'objects', 'actors', 'tasks'] as ChangeKind[]) {
      this._pending.add(kind);
    }
  }

  protected onAfterAttach(): void {
    this._schedule('status');
    this._jobsBox.start();
  }

  protected onBeforeDetach(): void {
    this._jobsBox.stop();
  }

  protected onAfterShow(): void {
    this._graphBox.fit();
    this._schedule('tasks');
  }

  dispose(): void {
    if (this._frame !== null) {
      cancelAnimationFrame(this._frame);
    }
    this.client.changed.disconnect(this._onChanged, this);
    this._jobsBox.stop();
    this._streamBox.dispose();
    super.dispose();
  }

  private _onChanged(_: ClusterClient, kind: ChangeKind): void {
    this._schedule(kind);
  }

  private _schedule(kind: ChangeKind): void {
    this._pending.add(kind);
    if (this._frame === null) {
      this._frame = requestAnimationFrame(() => this._flush());
    }
  }

  private _flush(): void {
    this._frame = null;
    const kinds = this._pending;
    this._pending = new Set();
    if (kinds.has('status') || kinds.has('clusters')) {
      this._renderStatus();
    }
    if (kinds.has('nodes') || kinds.has('actors') || kinds.has('status') || kinds.has('utilization')) {
      this._renderNodes();
    }
    if (kinds.has('nodes') || kinds.has('objects') || kinds.has('status')) {
      this._renderStore();
    }
    if (kinds.has('actors') || kinds.has('status')) {
      this._renderActors();
    }
    if (kinds.has('tasks') || kinds.has('summary') || kinds.has('status')) {
      this._graphBox.render();
    }
    if (kinds.has('tasks') || kinds.has('summary') || kinds.has('status') || kinds.has('nodes')) {
      this._streamBox.render();
    }
  }

  // ---- connection ----------------------------------------------------------------------------------------------

  private _renderStatus(): void {
    const s = this.client.status;
    const state = s.connected ? 'connected' : s.loading ? 'loading' : 'disconnected';
    this._status.className = `nbray-status nbray-status-${state}`;
    this._status.dataset.state = state;
    this._status.textContent = '';
    this._status.append(
      h('span', { class: 'nbray-dot' }),
      s.connected
        ? `Connected to ${s.cluster}`
        : s.loading
          ? 'Loading…'
          : `Not connected${s.error ? ': ' + s.error : ''}`
    );
    const clusters = this.client.clusters;
    const current = clusters?.selection || 'auto';
    this._chooser.textContent = '';
    this._chooser.append(h('option', { value: 'auto' }, 'Automatic (newest visible cluster)'));
    for (const c of clusters?.clusters || []) {
      this._chooser.append(h('option', { value: c.id }, `${c.gcs_address} — ${c.description}`));
    }
    this._chooser.value = current;
  }

  private async _choose(id: string): Promise<void> {
    try {
      await this.client.select(id);
    } catch (error) {
      this.client.status = { ...this.client.status, error: String(error) };
      this._schedule('status');
    }
  }

  // ---- nodes ------------------------------------------------------------------------------------------------------

  private _renderNodes(): void {
    const body = this._nodes.body;
    body.textContent = '';
    const nodes = [...this.client.nodes.values()].sort(
      (a, b) => Number(b.is_head_node) - Number(a.is_head_node) || a.node_id.localeCompare(b.node_id)
    );
    const alive = nodes.filter(n => n.state === 'ALIVE').length;
    this._nodes.title.textContent = `Nodes (${alive} alive${nodes.length > alive ? `, ${nodes.length - alive} dead` : ''})`;
    for (const n of nodes) {
      body.appendChild(this._nodeCard(n));
    }
    if (nodes.length === 0) {
      body.appendChild(h('div', { class: 'nbray-empty' }, 'No nodes.'));
    }
  }

  private _nodeCard(n: INodeRow): HTMLElement {
    const gpus = h('ul', { class: 'nbray-gpus' });
    for (const g of n.gpus_in_use) {
      const who = g.actor_class
        ? `actor ${g.actor_class}${g.task_name ? ` (${g.task_name})` : ''}`
        : g.task_name
          ? `task ${g.task_name}`
          : `worker ${short(g.worker_id)}`;
      gpus.appendChild(
        h('li', { class: 'nbray-gpu', 'data-gpu-id': g.gpu_id }, `GPU ${g.gpu_id}: ${who}${g.pid ? ` · pid ${g.pid}` : ''}`)
      );
    }
    const card = h(
      'div',
      { class: `nbray-node nbray-node-${n.state.toLowerCase()}`, 'data-node-id': n.node_id, 'data-state': n.state },
      h(
        'div',
        { class: 'nbray-node-title' },
        h('span', { class: 'nbray-node-name' }, `${n.node_name || n.node_ip}`),
        h('span', { class: 'nbray-node-id' }, short(n.node_id)),
        n.is_head_node ? h('span', { class: 'nbray-badge nbray-badge-head' }, 'head') : null,
        h('span', { class: `nbray-badge nbray-badge-${n.state.toLowerCase()}` }, n.state)
      ),
      usageBar('CPU', n.cpu, `${amount(n.cpu.used)} / ${amount(n.cpu.total)}`, 'nbray-usage-cpu'),
      n.gpu.total > 0
        ? usageBar('GPU', n.gpu, `${amount(n.gpu.used)} / ${amount(n.gpu.total)}`, 'nbray-usage-gpu')
        : null,
      usageBar('Memory', n.memory, `${bytes(n.memory.used)} / ${bytes(n.memory.total)}`, 'nbray-usage-memory'),
      n.state === 'ALIVE' ? nodeSparklines(this.client.utilization.get(n.node_id), this.client.utilizationWindowMs) : null,
      n.gpus_in_use.length ? gpus : null,
      n.state === 'ALIVE'
        ? h(
            'div',
            { class: 'nbray-node-load' },
            `${n.num_workers ?? '–'} workers · ${n.pending_leases} queued lease requests`
          )
        : null
    );
    if (n.state === 'DEAD' && n.state_message) {
      card.appendChild(h('div', { class: 'nbray-node-death' }, n.state_message));
    }
    return card;
  }

  // ---- object store -----------------------------------------------------------------------------------------------

  private _renderStore(): void {
    const body = this._store.body;
    body.textContent = '';
    let used = 0;
    let capacity = 0;
    for (const n of this.client.nodes.values()) {
      if (n.state !== 'ALIVE') {
        continue;
      }
      used += n.object_store.used_bytes;
      capacity += n.object_store.capacity_bytes;
      body.appendChild(
        h(
          'div',
          { class: 'nbray-store-node', 'data-node-id': n.node_id, 'data-used': n.object_store.used_bytes },
          usageBar(
            n.is_head_node ? 'head' : `node ${short(n.node_id, 6)}`,
            { used: n.object_store.used_bytes, total: n.object_store.capacity_bytes },
            `${bytes(n.object_store.used_bytes)} / ${bytes(n.object_store.capacity_bytes)}`,
            'nbray-usage-store'
          ),
          h(
            'div',
            { class: 'nbray-spilled', 'data-spilled': n.object_store.spilled_bytes },
            `spilled ${bytes(n.object_store.spilled_bytes)}` +
              (n.object_store.num_objects !== null ? ` · ${n.object_store.num_objects} objects in shared memory` : '')
          )
        )
      );
    }
    this._store.title.textContent = `Object store (${bytes(used)} / ${bytes(capacity)})`;
    const objects = this.client.objects;
    if (objects.length) {
      const table = h(
        'table',
        { class: 'nbray-objects' },
        h('tr', {}, h('th', {}, 'Largest objects'), h('th', {}, 'size'), h('th', {}, 'owner'), h('th', {}, 'refs'))
      );
      for (const o of objects) {
        const owner = o.owner ? `${o.owner.type ? o.owner.type.toLowerCase() + ' ' : ''}${o.owner.pid ?? ''}` : '–';
        const where = o.locations.map(l => `${short(l.node_id, 6)}${l.where === 'SPILLED' ? ' (spilled)' : ''}`).join(', ');
        table.appendChild(
          h(
            'tr',
            { class: 'nbray-object-row', 'data-object-id': o.object_id, 'data-size': o.size_bytes },
            h('td', { title: `${o.object_id}${where ? ' on ' + where : ''}` }, objectId(o.object_id)),
            h('td', { class: 'nbray-object-size' }, bytes(o.size_bytes)),
            h('td', {}, owner),
            h('td', {}, o.reference_types.join(', ').toLowerCase().replace(/_/g, ' '))
          )
        );
      }
      body.appendChild(table);
    }
  }

  // ---- actors ------------------------------------------------------------------------------------------------------

  private _renderActors(): void {
    const body = this._actors.body;
    body.textContent = '';
    const actors = [...this.client.actors.values()];
    const alive = actors.filter(a => a.state !== 'DEAD');
    this._actors.title.textContent = `Actors (${alive.length} alive of ${actors.length})`;
    for (const a of actors.slice(-50).reverse()) {
      body.appendChild(this._actorRow(a));
    }
  }

  private _actorRow(a: IActorRow): HTMLElement {
    const kill = h('button', { class: 'nbray-kill-actor', title: 'Kill this actor (no restart)' }, 'Kill');
    kill.addEventListener('click', () => void killActor(this.client, a.actor_id, kill as HTMLButtonElement));
    return h(
      'div',
      { class: `nbray-actor nbray-actor-${a.state.toLowerCase()}`, 'data-actor-id': a.actor_id, 'data-state': a.state },
      h('span', { class: 'nbray-actor-name' }, a.name ? `${a.class_name} "${a.name}"` : a.class_name),
      h('span', { class: `nbray-badge nbray-badge-${a.state.toLowerCase()}` }, a.state),
      a.pid ? h('span', { class: 'nbray-actor-pid' }, `pid ${a.pid}`) : null,
      a.state !== 'DEAD' ? kill : null
    );
  }
}
