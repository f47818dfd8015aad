/**
 * A Server-Sent Events parser, fed with text as it arrives.
 *
 * The stream is read with `fetch` (through Jupyter's ServerConnection, so
 * the request carries Jupyter's credentials) rather than EventSource,
 * which cannot send headers.
 */

export interface ISseEvent {
  event: string;
  data: string;
  id: string | null;
}

export class SseParser {
  private _buffer = '';
  private _event = '';
  private _data: string[] = [];
  private _id: string | null = null;
  lastEventId: string | null = null;

  /** Feed text; returns the events completed by it. */
  push(text: string): ISseEvent[] {
    this._buffer += text;
    const out: ISseEvent[] = [];
    let start = 0;
    for (;;) {
      const nl = this._buffer.indexOf('\n', start);
      if (nl < 0) {
        break;
      }
      let line = this._buffer.slice(start, nl);
      start = nl + 1;
      if (line.endsWith('\r')) {
        line = line.slice(0, -1);
      }
      const ev = this._line(line);
      if (ev) {
        out.push(ev);
      }
    }
    this._buffer = this._buffer.slice(start);
    return out;
  }

  private _line(line: string): ISseEvent | null {
    if (line === '') {
      if (this._data.length === 0 && !this._event) {
        return null;
      }
      const ev: ISseEvent = {
        event: this._event || 'message',
        data: this._data.join('\n'),
        id: this._id
      };
      if (this._id !== null) {
        this.lastEventId = this._id;
      }
      this._event = '';
      this._data = [];
      this._id = null;
      return ev;
    }
    if (line.startsWith(':')) {
      return null; // a comment (keepalive)
    }
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) {
      value = value.slice(1);
    }
    if (field === 'event') {
      this._event = value;
    } else if (field === 'data') {
      this._data.push(value);
    } else if (field === 'id') {
      this._id = value;
    }
    return null;
  }
}
