/** The task graph in a main-area tab, for more room than the sidebar gives. */

import { Widget } from '@lumino/widgets';

import { ChangeKind, ClusterClient } from './client';
import { h } from './format';
import { GraphSection } from './graphsection';
import { nbrayIcon } from './icon';
import { StreamSection } from './streamsection';

export const GRAPH_WINDOW_ID = 'nbray-graph-window';

export class GraphWindow extends Widget {
  private _section: GraphSection;
  private _stream: StreamSection;
  private _frame: number | null = null;

  constructor(readonly client: ClusterClient) {
    super();
    this.id = GRAPH_WINDOW_ID;
    this.addClass('nbray-panel');
    this.addClass('nbray-graph-window');
    this.title.label = 'nbray Task Graph and Stream';
    this.title.icon = nbrayIcon;
    this.title.closable = true;
    this._section = new GraphSection(client, {}, () => this._schedule());
    this.node.appendChild(this._section.node);
    this._stream = new StreamSection(client);
    this.node.appendChild(h('h3', { class: 'nbray-window-heading' }, 'Task stream'));
    this.node.appendChild(this._stream.node);
    client.changed.connect(this._onChanged, this);
  }

  protected onAfterShow(): void {
    this._schedule();
  }

  dispose(): void {
    this.client.changed.disconnect(this._onChanged, this);
    this._stream.dispose();
    if (this._frame !== null) {
      cancelAnimationFrame(this._frame);
    }
    super.dispose();
  }

  private _onChanged(_: ClusterClient, kind: ChangeKind): void {
    if (kind === 'tasks' || kind === 'status' || kind === 'summary' || kind === 'nodes') {
      this._schedule();
    }
  }

  private _schedule(): void {
    if (this._frame === null) {
      this._frame = requestAnimationFrame(() => {
        this._frame = null;
        if (this.isVisible) {
          this._section.render();
          this._stream.render();
        }
      });
    }
  }
}
