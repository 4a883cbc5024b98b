// A minimal Rocket.Chat realtime (DDP over WebSocket) client for frontend mode:
// connect, resume login, subscribe to streams, answer pings, reconnect with backoff.
// The page treats events as "something changed" signals and reads the data through the
// gateway's REST API, so it never has to map provider ids to host ids.

export class Ddp {
  /**
   * @param {() => Promise<{url: string, token: string, userId: string}>} credentials
   *   called before every (re)connect: `POST api/v1/session` through the gateway
   * @param {{onEvent, onState}} handlers onEvent(stream, eventName, args); onState(state, detail)
   */
  constructor(credentials, handlers) {
    this.credentials = credentials;
    this.handlers = handlers;
    this.nextId = 1;
    this.pending = new Map();
    this.subs = new Map(); // key stream|event -> sub id
    this.wanted = new Set(); // stream|event kept across reconnects
    this.closed = false;
    this.attempt = 0;
    this.ready = false;
  }

  start() {
    this.closed = false;
    this.connect();
  }

  stop() {
    this.closed = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    if (this.ws) this.ws.close(1000, 'bye');
  }

  /** Keeps a subscription (re-made after every reconnect). */
  subscribe(stream, eventName) {
    const key = `${stream}|${eventName}`;
    if (this.wanted.has(key)) return;
    this.wanted.add(key);
    if (this.ready) this.sendSub(stream, eventName);
  }

  /** Calls a DDP method; resolves with its result. */
  call(method, params) {
    const id = String(this.nextId++);
    return new Promise((resolve, reject) => {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
        reject(new Error('not connected to the provider'));
        return;
      }
      this.pending.set(id, { resolve, reject });
      this.ws.send(JSON.stringify({ msg: 'method', method, id, params }));
    });
  }

  async connect() {
    if (this.closed) return;
    this.handlers.onState(this.attempt ? 'reconnecting' : 'connecting');
    let creds;
    try {
      creds = await this.credentials();
    } catch (err) {
      this.handlers.onState('error', err);
      this.retry();
      return;
    }
    if (this.closed) return;
    this.userId = creds.userId;
    let ws;
    try {
      ws = new WebSocket(creds.url);
    } catch (err) {
      this.handlers.onState('error', err);
      this.retry();
      return;
    }
    this.ws = ws;
    this.ready = false;
    this.subs.clear();
    let lastFrame = Date.now();
    ws.onopen = () => {
      ws.send(JSON.stringify({ msg: 'connect', version: '1', support: ['1'] }));
    };
    ws.onmessage = (event) => {
      lastFrame = Date.now();
      let frame;
      try { frame = JSON.parse(event.data); } catch { return; }
      switch (frame.msg) {
        case 'ping':
          ws.send(JSON.stringify(frame.id ? { msg: 'pong', id: frame.id } : { msg: 'pong' }));
          break;
        case 'connected':
          this.call('login', [{ resume: creds.token }]).then(
            () => {
              this.ready = true;
              this.attempt = 0;
              for (const key of this.wanted) {
                const [stream, name] = key.split('|');
                this.sendSub(stream, name);
              }
              this.handlers.onState('connected');
            },
            (err) => {
              this.handlers.onState('error', err);
              ws.close(4001, 'login refused');
            },
          );
          break;
        case 'result': {
          const p = this.pending.get(frame.id);
          if (!p) break;
          this.pending.delete(frame.id);
          if (frame.error) p.reject(new Error(frame.error.reason || frame.error.message || 'DDP error'));
          else p.resolve(frame.result);
          break;
        }
        case 'changed':
          if (frame.fields && frame.fields.eventName !== undefined) {
            this.handlers.onEvent(frame.collection, frame.fields.eventName, frame.fields.args || []);
          }
          break;
        case 'nosub':
          for (const [key, id] of this.subs) if (id === frame.id) this.subs.delete(key);
          break;
        default:
          break; // ready, updated, added, server_id, …: nothing to do
      }
    };
    clearInterval(this.pingTimer);
    this.pingTimer = setInterval(() => {
      if (ws.readyState !== WebSocket.OPEN) return;
      if (Date.now() - lastFrame > 60000) { ws.close(4000, 'silent'); return; }
      ws.send(JSON.stringify({ msg: 'ping', id: `p${this.nextId++}` }));
    }, 25000);
    ws.onclose = () => {
      clearInterval(this.pingTimer);
      for (const p of this.pending.values()) p.reject(new Error('connection closed'));
      this.pending.clear();
      this.ready = false;
      if (this.ws === ws) this.ws = null;
      if (!this.closed) this.retry();
    };
  }

  sendSub(stream, eventName) {
    const key = `${stream}|${eventName}`;
    const id = `s${this.nextId++}`;
    this.subs.set(key, id);
    this.ws.send(JSON.stringify({
      msg: 'sub', id, name: stream, params: [eventName, { useCollection: false, args: [] }],
    }));
  }

  retry() {
    if (this.closed) return;
    this.attempt += 1;
    const delay = Math.min(30000, 250 * 2 ** Math.min(this.attempt, 7)) * (0.5 + Math.random() / 2);
    this.handlers.onState('reconnecting', `retrying in ${Math.round(delay / 1000)} s`);
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }
}
