import { LabIcon } from '@jupyterlab/ui-components';

const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <circle cx="12" cy="5" r="2.6"/>
    <circle cx="5" cy="18" r="2.6"/>
    <circle cx="19" cy="18" r="2.6"/>
    <circle cx="12" cy="13" r="1.8"/>
    <path d="M11.2 6.8 L11.4 11.4 L12.6 11.4 L12.8 6.8 Z M6.4 16.3 L10.6 13.6 L11.2 14.6 L7.2 17.4 Z M17.6 16.3 L13.4 13.6 L12.8 14.6 L16.8 17.4 Z"/>
  </g>
</svg>`;

export const nbrayIcon = new LabIcon({ name: 'nbray:logo', svgstr: svg });
