// The gateway's REST API (docs/api.md), relative to the page so `server.base_path` works.

/** An error answer of the gateway, or the gateway being unreachable. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status; // 0 when the gateway did not answer at all
    this.code = code;
  }

  /** A sentence for people. */
  describe() {
    switch (this.code) {
      case 'network':
        return 'The gateway is not reachable. Is it running? Retrying when you act again.';
      case 'provider_unavailable':
        return `The chat provider is down or not answering (${this.message}).`;
      case 'provider_error':
        return `The chat provider answered something unreadable (${this.message}).`;
      case 'service_unavailable':
        return `The gateway cannot work right now (${this.message}).`;
      case 'rate_limited':
        return `Too many requests; try again shortly (${this.message}).`;
      case 'unauthorized':
        return `Not signed in: ${this.message}`;
      default:
        return `${this.code}: ${this.message}`;
    }
  }
}

/** A URL below the page's base: `url('api/v1/rooms')`. Leading slashes are base-relative. */
export function url(path) {
  return new URL(path.replace(/^\/+/, ''), document.baseURI).href;
}

export class Api {
  constructor(token) {
    this.token = token;
  }

  async request(method, path, { json, body, query, raw } = {}) {
    const target = new URL(url(path));
    if (target.origin !== location.origin) {
      // Never send the token elsewhere (a file URL is only ever below the gateway).
      throw new ApiError(0, 'refused', `not a URL of this gateway: ${path}`);
    }
    for (const [k, v] of Object.entries(query || {})) {
      if (v !== undefined && v !== null) target.searchParams.set(k, v);
    }
    const headers = { Authorization: `Bearer ${this.token}` };
    if (json !== undefined) {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(json);
    }
    let res;
    try {
      res = await fetch(target, { method, headers, body });
    } catch (err) {
      throw new ApiError(0, 'network', String(err.message || err));
    }
    if (!res.ok) {
      let code = `http_${res.status}`;
      let message = res.statusText || 'request failed';
      try {
        const envelope = await res.json();
        if (envelope && envelope.error) {
          code = envelope.error;
          message = envelope.message || message;
        }
      } catch {
        // not the gateway's envelope (a proxy's error page, say)
        if (res.status === 502 || res.status === 503 || res.status === 504) code = 'network';
      }
      throw new ApiError(res.status, code, message);
    }
    if (raw) return res;
    if (res.status === 204) return null;
    const type = res.headers.get('content-type') || '';
    return type.includes('json') ? res.json() : res.text();
  }

  me() { return this.request('GET', 'api/v1/me'); }
  rooms() { return this.request('GET', 'api/v1/rooms'); }
  unread() { return this.request('GET', 'api/v1/unread'); }
  room(id) { return this.request('GET', `api/v1/rooms/${enc(id)}`); }
  createRoom(kind, name, members) {
    return this.request('POST', 'api/v1/rooms', { json: { kind, name, members } });
  }
  direct(members) { return this.request('POST', 'api/v1/rooms/direct', { json: { members } }); }
  history(room, { limit = 30, before } = {}) {
    return this.request('GET', `api/v1/rooms/${enc(room)}/messages`, { query: { limit, before } });
  }
  send(room, text, clientMessageId) {
    return this.request('POST', `api/v1/rooms/${enc(room)}/messages`, { json: { text, clientMessageId } });
  }
  edit(room, id, text) {
    return this.request('PATCH', `api/v1/rooms/${enc(room)}/messages/${enc(id)}`, { json: { text } });
  }
  remove(room, id) { return this.request('DELETE', `api/v1/rooms/${enc(room)}/messages/${enc(id)}`); }
  markRead(room) { return this.request('POST', `api/v1/rooms/${enc(room)}/read`); }
  upload(room, file, text) {
    const form = new FormData();
    if (text) form.append('text', text);
    form.append('file', file, file.name);
    return this.request('POST', `api/v1/rooms/${enc(room)}/files`, { body: form });
  }
  /** A file as a Blob: downloads need the Bearer header, so no plain link works. */
  async fileBlob(fileUrl) {
    const res = await this.request('GET', fileUrl, { raw: true });
    return res.blob();
  }
  session() { return this.request('POST', 'api/v1/session'); }
}

/** A demo token from the gateway's demo endpoint, or null when it has none. */
export async function demoToken(user) {
  let res;
  try {
    res = await fetch(url(`demo/token?user=${encodeURIComponent(user)}`));
  } catch {
    return null;
  }
  if (!res.ok) return null;
  const type = res.headers.get('content-type') || '';
  if (type.includes('json')) {
    const body = await res.json();
    return body.token || body.accessToken || null;
  }
  const text = (await res.text()).trim();
  return /^[\w-]+\.[\w-]+\.[\w-]*$/.test(text) ? text : null;
}

function enc(s) { return encodeURIComponent(s); }
