/**
 * nbray for JupyterLab: a left sidebar showing the cluster live, a command
 * to open it (palette and launcher), restored with the layout.
 */

import { ILabShell, ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { ILauncher } from '@jupyterlab/launcher';

import { ClusterClient } from './client';
import { GraphWindow } from './graphwindow';
import { nbrayIcon } from './icon';
import { NbrayPanel, PANEL_ID } from './panel';

const OPEN_COMMAND = 'nbray:open-panel';
const OPEN_GRAPH_COMMAND = 'nbray:open-task-graph';

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'nbray-labextension:plugin',
  description: 'The nbray cluster panel: nodes, object stores and the live task graph.',
  autoStart: true,
  requires: [ILabShell],
  optional: [ICommandPalette, ILauncher, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    shell: ILabShell,
    palette: ICommandPalette | null,
    launcher: ILauncher | null,
    restorer: ILayoutRestorer | null
  ) => {
    const client = new ClusterClient();
    let graphWindow: GraphWindow | null = null;
    const openGraph = (): void => {
      if (graphWindow === null || graphWindow.isDisposed) {
        graphWindow = new GraphWindow(client);
        shell.add(graphWindow, 'main');
      }
      shell.activateById(graphWindow.id);
    };
    const panel = new NbrayPanel(client, { popOut: openGraph });
    panel.title.icon = nbrayIcon;
    panel.title.caption = 'nbray cluster';
    shell.add(panel, 'left', { rank: 250 });
    restorer?.add(panel, PANEL_ID);
    client.start();

    app.commands.addCommand(OPEN_COMMAND, {
      label: 'nbray Cluster Panel',
      caption: 'Show the nbray cluster: nodes, object stores and the task graph',
      icon: nbrayIcon,
      execute: () => shell.activateById(panel.id)
    });
    app.commands.addCommand(OPEN_GRAPH_COMMAND, {
      label: 'nbray Task Graph',
      caption: 'Open the live task graph in a tab',
      icon: nbrayIcon,
      execute: openGraph
    });
    palette?.addItem({ command: OPEN_COMMAND, category: 'nbray' });
    palette?.addItem({ command: OPEN_GRAPH_COMMAND, category: 'nbray' });
    launcher?.add({ command: OPEN_COMMAND, category: 'Other', rank: 1 });
  }
};

export default plugin;
