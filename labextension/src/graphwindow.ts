/** The task graph in a main-area tab, for more room than the sidebar gives. */

import { Widget } from '@lumino/widgets';

import { ChangeKind, ClusterClient } from './client';
import { GraphSection } from './graphsection';
import { nbrayIcon } from './icon';

export const GRAPH_WINDOW_ID = 'nbray-graph-window';

export class GraphWindow extends Widget {
  private _section: GraphSection;
  private _frame: number | null = null;

  constructor(readonly client: ClusterClient) {
    super();
    this.id = GRAPH_WINDOW_ID;
    this.addClass('nbray-panel');
    this.addClass('nbray-graph-window');
    this.title.label = 'nbray Task Graph';
    this.title.icon = nbrayIcon;
    this.title.closable = true;
    this._section = new GraphSection(client, {}, () => this._schedule());
    this.node.appendChild(this._section.node);
    client.changed.connect(this._onChanged, this);
  }

  protected onAfterShow(): void {
    this._schedule();
  }

  dispose(): void {
    this.client.changed.disconnect(this._onChanged, this);
    if (this._frame !== null) {
      cancelAnimationFrame(this._frame);
    }
    super.dispose();
  }

  private _onChanged(_: ClusterClient, kind: ChangeKind): void {
    if (kind === 'tasks' || kind === 'status' || kind === 'summary') {
      this._schedule();
    }
  }

  private _schedule(): void {
    if (this._frame === null) {
      this._frame = requestAnimationFrame(() => {
        this._frame = null;
        if (this.isVisible) {
          this._section.render();
        }
      });
    }
  }
}
