import { SseParser } from '../sse';

describe('SseParser', () => {
  it('parses events split across chunks, with ids, CRLF and comments', () => {
    const p = new SseParser();
    expect(p.push('retry: 1000\n\nid: 4\nevent: tas')).toEqual([]);
    const evs = p.push('ks\ndata: {"a":1}\r\n\r\n: keepalive\n\nevent: nodes\ndata: x\ndata: y\n\n');
    expect(evs).toEqual([
      { event: 'tasks', data: '{"a":1}', id: '4' },
      { event: 'nodes', data: 'x\ny', id: null }
    ]);
    expect(p.lastEventId).toBe('4');
  });

  it('defaults the event name to message', () => {
    expect(new SseParser().push('data: hi\n\n')).toEqual([{ event: 'message', data: 'hi', id: null }]);
  });
});
