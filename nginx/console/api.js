// api.js: the keys, fetch with a Bearer header, API errors, SSE reading.
//
// Keys live in sessionStorage (this tab only, gone when it closes) and go
// out only as "Authorization: Bearer KEY", never in a URL. Every call goes
// to this page's own origin, the only one the Content-Security-Policy allows.

const KEY_NAMES = { api: 'edgegate.apiKey', admin: 'edgegate.adminKey' };

export function getKey(kind) {
  return sessionStorage.getItem(KEY_NAMES[kind]) || '';
}

export function setKey(kind, value) {
  value = value.trim();
  if (value) sessionStorage.setItem(KEY_NAMES[kind], value);
  else sessionStorage.removeItem(KEY_NAMES[kind]);
}

// An error to show: the API's own message (error.message of its JSON body)
// and the HTTP status (0 when the request never got an answer).
export class ApiError extends Error {
  constructor(status, message, code = null) {
    super(message);
    this.status = status;
    this.code = code;
  }
  toString() {
    return this.status ? `${this.status}: ${this.message}` : this.message;
  }
}

async function errorOf(resp) {
  let message = `HTTP ${resp.status} ${resp.statusText}`.trim();
  let code = null;
  try {
    const body = await resp.json();
    if (body && body.error && body.error.message) {
      message = body.error.message;
      code = body.error.code ?? null;
    }
  } catch { /* not JSON: keep the status line */ }
  return new ApiError(resp.status, message, code);
}

// Calls the API and returns the Response when it is 2xx; throws ApiError
// otherwise. opts: key ('api' | 'admin' | null for none), method, json (sent
// as a JSON body), body and type (a raw body and its Content-Type), signal.
export async function call(path, opts = {}) {
  const kind = opts.key === undefined ? 'api' : opts.key;
  const headers = {};
  if (kind) {
    const key = getKey(kind);
    if (!key) throw new ApiError(0, kind === 'admin' ? 'Enter the admin key first (Keys, above).'
                                                     : 'Enter an API key first (Keys, above).');
    headers.Authorization = `Bearer ${key}`;
  }
  let body = opts.body;
  if (opts.json !== undefined) {
    body = JSON.stringify(opts.json);
    headers['Content-Type'] = 'application/json';
  } else if (opts.type) {
    headers['Content-Type'] = opts.type;
  }
  const method = opts.method || (body === undefined ? 'GET' : 'POST');
  let resp;
  try {
    // Figures are read fresh; other requests keep the default mode, since
    // 'no-store' makes the browser send "Cache-Control: no-cache", which
    // tells the gateway to bypass its response cache.
    resp = await fetch(path, { method, headers, body, signal: opts.signal,
                               cache: method === 'GET' ? 'no-store' : 'default' });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, `Network error: ${e.message}`);
  }
  if (!resp.ok) throw await errorOf(resp);
  return resp;
}

export async function callJSON(path, opts) {
  return (await call(path, opts)).json();
}

// Yields the parsed JSON of every "data:" event of a text/event-stream
// response until [DONE] or the end of the body. An event carrying
// {"error": {...}} (a failure after the headers were sent) throws ApiError.
export async function* events(resp) {
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let end;
      while ((end = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, end);
        buf = buf.slice(end + 2);
        const data = block.split('\n')
          .map((l) => l.replace(/\r$/, ''))
          .filter((l) => l.startsWith('data:'))
          .map((l) => l.slice(l[5] === ' ' ? 6 : 5))
          .join('\n');
        if (!data) continue;
        if (data === '[DONE]') return;
        const ev = JSON.parse(data);
        if (ev && ev.error) throw new ApiError(resp.status, ev.error.message || 'stream failed',
                                               ev.error.code ?? null);
        yield ev;
      }
    }
  } finally {
    reader.releaseLock();
  }
}
