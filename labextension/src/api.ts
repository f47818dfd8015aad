/**
 * Requests to the nbray server extension (`<base_url>/nbray/...`).
 *
 * Everything goes through Jupyter's ServerConnection, which adds Jupyter's
 * token and XSRF header; the cluster token stays on the server.
 */

import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string
  ) {
    super(message);
  }
}

export class NbrayApi {
  readonly settings: ServerConnection.ISettings;

  constructor(settings?: ServerConnection.ISettings) {
    this.settings = settings || ServerConnection.makeSettings();
  }

  url(path: string, query: { [key: string]: string | number | boolean | null | undefined } = {}): string {
    const params = Object.entries(query)
      .filter(([, v]) => v !== null && v !== undefined && v !== '')
      .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`)
      .join('&');
    const base = URLExt.join(this.settings.baseUrl, 'nbray', path);
    return params ? `${base}?${params}` : base;
  }

  async get<T>(path: string, query: { [key: string]: string | number | boolean | null | undefined } = {}): Promise<T> {
    return this._json<T>(this.url(path, query), { method: 'GET' });
  }

  async post<T>(path: string, body?: unknown, query: { [key: string]: string | number | boolean } = {}): Promise<T> {
    return this._json<T>(this.url(path, query), {
      method: 'POST',
      body: body === undefined ? undefined : JSON.stringify(body)
    });
  }

  /** The relayed event stream; read its body as Server-Sent Events. */
  openEvents(signal: AbortSignal): Promise<Response> {
    return ServerConnection.makeRequest(
      this.url('events'),
      { method: 'GET', headers: { Accept: 'text/event-stream' }, signal },
      this.settings
    );
  }

  private async _json<T>(url: string, init: RequestInit): Promise<T> {
    let response: Response;
    try {
      response = await ServerConnection.makeRequest(url, init, this.settings);
    } catch (error) {
      throw new ApiError(0, `the Jupyter server is not reachable: ${error}`);
    }
    const text = await response.text();
    let data: any = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
    if (!response.ok) {
      const message = (data && (data.error || data.message)) || response.statusText;
      throw new ApiError(response.status, message);
    }
    return data as T;
  }
}
