/**
 * The nbpipe icon: three steps joined into a small DAG, drawn with Lab's icon colour classes so
 * it follows light and dark themes. Non-goals: a general icon set.
 */

import { LabIcon } from '@jupyterlab/ui-components';

const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <rect x="2" y="3" width="8" height="6" rx="1.5"/>
    <rect x="14" y="9" width="8" height="6" rx="1.5"/>
    <rect x="2" y="15" width="8" height="6" rx="1.5"/>
    <path d="M10 5.2h2.2a1.8 1.8 0 0 1 1.8 1.8v3h-1.6V7a.2.2 0 0 0-.2-.2H10zM10 18.8h2.2a1.8 1.8 0 0 0 1.8-1.8v-3h-1.6v3a.2.2 0 0 1-.2.2H10z"/>
  </g>
</svg>`;

export const nbpipeIcon = new LabIcon({ name: 'nbpipe:icon', svgstr: svg });
