// imgate demo chat page: plain ES modules, no build step. REST through the gateway
// (api.js); live updates from the gateway's hub (backend mode) or the provider's realtime
// API (frontend mode, ddp.js).
import { Api, ApiError, demoToken, url } from './api.js';
import { Ddp } from './ddp.js';

const $ = (id) => document.getElementById(id);
const PAGE = 30;

const state = {
  api: null,
  token: null,
  me: null, // {userId, name}
  mode: 'backend',
  rooms: new Map(), // id -> Room
  current: null, // room id
  messages: new Map(), // id -> Message (current room)
  oldest: null,
  hasMore: false,
  hub: null,
  ddp: null,
  live: false,
  blobs: [], // object URLs of the current room
  typingPeople: new Map(), // username -> timer
  typingSent: 0,
  typingStop: null,
  roomsTimer: null,
};

// ---------------------------------------------------------------- messages to the user

function showError(err, kind = 'error') {
  const text = err instanceof ApiError ? err.describe() : String(err && err.message ? err.message : err);
  $('banner-text').textContent = text;
  $('banner').dataset.kind = err instanceof ApiError ? err.code : kind;
  $('banner').hidden = false;
  if (err instanceof ApiError && err.code === 'unauthorized' && state.token) {
    signOut(`Signed out: ${err.message}`);
  }
}

/** How long a host notice stays unless dismissed. */
const NOTICE_MS = 15000;

/** Shows a host application's `notify` push: its first argument when that is text, else
 *  every argument as JSON. */
function showNotice(args) {
  const li = document.createElement('li');
  li.className = 'notice';
  const text = document.createElement('span');
  text.textContent = typeof args[0] === 'string' ? args[0] : JSON.stringify(args);
  const close = document.createElement('button');
  close.type = 'button';
  close.textContent = '×';
  close.setAttribute('aria-label', 'Dismiss notice');
  close.addEventListener('click', () => li.remove());
  li.append(text, close);
  $('notices').append(li);
  setTimeout(() => li.remove(), NOTICE_MS);
}

function clearError(onlyCode) {
  if (onlyCode && $('banner').dataset.kind !== onlyCode) return;
  $('banner').hidden = true;
}

function setStatus(text, kind) {
  const el = $('status');
  el.textContent = text;
  el.dataset.kind = kind;
}

/** Runs an action; shows what went wrong instead of throwing. */
async function attempt(fn) {
  try {
    return await fn();
  } catch (err) {
    showError(err);
    return undefined;
  }
}

// ---------------------------------------------------------------- sign in

async function signIn(user, token, mode) {
  user = user.trim();
  token = token.trim();
  if (!token) {
    if (!user) throw new Error('Give a user id (or paste a token).');
    token = await demoToken(user);
    if (!token) {
      $('signin-token').focus();
      throw new Error('This gateway hands out no demo tokens (no /demo/token): paste a token, e.g. from `imgate token --user ' + user + '`.');
    }
  }
  const api = new Api(token);
  const me = await api.me();
  if (me.kind !== 'user') throw new Error('That token is not an end user\'s.');
  if (user && me.userId !== user) {
    throw new Error(`That token is for ${me.userId}, not ${user}.`);
  }
  sessionStorage.setItem('imgate.token', token);
  sessionStorage.setItem('imgate.mode', mode);
  await enter(api, token, me, mode);
}

async function enter(api, token, me, mode) {
  Object.assign(state, { api, token, me, mode });
  $('signin-view').hidden = true;
  $('chat-view').hidden = false;
  $('session-bar').hidden = false;
  $('me').textContent = me.name && me.name !== me.userId ? `${me.name} (${me.userId})` : me.userId;
  $('mode').value = mode;
  clearError();
  await attempt(refreshRooms);
  await startRealtime();
}

function signOut(reason) {
  stopRealtime();
  sessionStorage.removeItem('imgate.token');
  Object.assign(state, { api: null, token: null, me: null, current: null });
  state.rooms.clear();
  state.messages.clear();
  $('rooms').replaceChildren();
  $('messages').replaceChildren();
  $('chat-view').hidden = true;
  $('session-bar').hidden = true;
  $('signin-view').hidden = false;
  if (reason) {
    $('banner-text').textContent = reason;
    $('banner').hidden = false;
  }
}

// ---------------------------------------------------------------- realtime

async function startRealtime() {
  stopRealtime();
  if (state.mode === 'frontend') startDdp();
  else await startHub();
}

function stopRealtime() {
  state.live = false;
  if (state.hub) {
    const hub = state.hub;
    state.hub = null;
    hub.stop().catch(() => {});
  }
  if (state.ddp) {
    state.ddp.stop();
    state.ddp = null;
  }
  clearTimeout(state.hubRetry);
  setStatus('offline', 'offline');
}

async function startHub() {
  if (!window.signalR) {
    showError(new Error('The SignalR client did not load (assets/signalr.min.js).'));
    return;
  }
  const hub = new signalR.HubConnectionBuilder()
    .withUrl(url('hub'), { accessTokenFactory: () => state.token })
    .withAutomaticReconnect()
    .configureLogging(signalR.LogLevel.Warning)
    .build();
  state.hub = hub;
  hub.on('getRoomMessageNotification', (m) => onMessage(m));
  hub.on('getRoomSubscriptionChangedNotification', (e) => onSubscriptionChanged(e.method, e.room));
  hub.on('messageDeleted', (e) => onDeleted(e.roomId, e.messageId));
  hub.on('typing', (e) => onTyping(e.roomId, e.username, e.typing));
  hub.on('notify', (...args) => showNotice(args));
  hub.onreconnecting(() => {
    state.live = false;
    setStatus('reconnecting…', 'reconnecting');
  });
  hub.onreconnected(() => {
    state.live = true;
    setStatus('live (gateway hub)', 'live');
    clearError('network');
    resync();
  });
  hub.onclose(() => {
    if (state.hub !== hub) return; // stopped on purpose
    state.live = false;
    setStatus('disconnected, retrying…', 'offline');
    state.hubRetry = setTimeout(() => { if (state.hub === hub) connectHub(hub); }, 5000);
  });
  await connectHub(hub);
}

async function connectHub(hub) {
  setStatus('connecting…', 'reconnecting');
  try {
    await hub.start();
    if (state.hub !== hub) return;
    state.live = true;
    setStatus('live (gateway hub)', 'live');
    clearError('network');
    resync();
  } catch (err) {
    if (state.hub !== hub) return;
    setStatus('disconnected, retrying…', 'offline');
    const text = String(err && err.message ? err.message : err);
    showError(new ApiError(0, /401|Unauthorized/.test(text) ? 'hub' : 'network',
      `live updates unavailable: ${text}`));
    state.hubRetry = setTimeout(() => { if (state.hub === hub) connectHub(hub); }, 5000);
  }
}

function startDdp() {
  const ddp = new Ddp(
    async () => {
      const s = await state.api.session();
      // The page's only provider client is Rocket.Chat's; other providers are live through
      // the gateway's hub (backend mode).
      if (s.provider !== 'rocketchat') {
        throw new ApiError(0, 'frontend_unsupported',
          `this page speaks Rocket.Chat's realtime API and the gateway's provider is ${s.provider}`);
      }
      return { url: s.realtimeUrl, token: s.authToken, userId: s.userId };
    },
    {
      onState: (what, detail) => {
        if (state.ddp !== ddp) return;
        if (what === 'connected') {
          state.live = true;
          setStatus('live (provider direct)', 'live');
          clearError('network');
          ddp.subscribe('stream-room-messages', '__my_messages__');
          ddp.subscribe('stream-notify-user', `${ddp.userId}/subscriptions-changed`);
          for (const id of state.rooms.keys()) subscribeRoom(id);
          resync();
        } else if (what === 'reconnecting') {
          state.live = false;
          setStatus('reconnecting…', 'reconnecting');
        } else if (what === 'connecting') {
          setStatus('connecting…', 'reconnecting');
        } else if (what === 'error') {
          const off = detail instanceof ApiError && detail.status === 403;
          if (off || (detail instanceof ApiError && detail.code === 'frontend_unsupported')) {
            ddp.stop();
            const why = off ? 'is off on this gateway' : 'is not available here';
            showError(new Error(`Frontend mode ${why} (${detail.message}); back to backend mode.`));
            state.mode = 'backend';
            $('mode').value = 'backend';
            sessionStorage.setItem('imgate.mode', 'backend');
            startRealtime();
          } else if (detail instanceof ApiError) {
            showError(detail);
          } else if (detail) {
            showError(new ApiError(0, 'provider', `provider realtime: ${detail.message || detail}`));
          }
        }
      },
      onEvent: (collection, eventName, args) => onDdpEvent(collection, eventName, args),
    },
  );
  state.ddp = ddp;
  ddp.start();
}

function subscribeRoom(id) {
  if (!state.ddp || !state.ddp.ready) return;
  state.ddp.subscribe('stream-notify-room', `${id}/deleteMessage`);
  state.ddp.subscribe('stream-notify-room', `${id}/user-activity`);
  state.ddp.subscribe('stream-notify-room', `${id}/typing`);
}

/** Provider events are signals; the data comes from the gateway's REST API. */
function onDdpEvent(collection, eventName, args) {
  if (collection === 'stream-room-messages') {
    const m = args[0] || {};
    if (m.rid === state.current) scheduleLatest();
    if (m.u && m.u.username) stopTypingOf(m.u.username);
    scheduleRoomsRefresh(50);
  } else if (collection === 'stream-notify-user') {
    scheduleRoomsRefresh(50);
  } else if (collection === 'stream-notify-room') {
    const [rid, event] = splitOnce(eventName, '/');
    if (event === 'deleteMessage') {
      const gone = args[0] && args[0]._id;
      if (gone) onDeleted(rid, gone);
    } else if (event === 'user-activity') {
      const [username, activities] = args;
      onTyping(rid, username, Array.isArray(activities) && activities.includes('user-typing'));
    } else if (event === 'typing') {
      onTyping(rid, args[0], Boolean(args[1]));
    }
  }
}

function splitOnce(s, sep) {
  const i = s.indexOf(sep);
  return i < 0 ? [s, ''] : [s.slice(0, i), s.slice(i + 1)];
}

/** After (re)connecting: read what may have changed meanwhile. */
function resync() {
  scheduleRoomsRefresh(0);
  if (state.current) scheduleLatest();
}

// ---------------------------------------------------------------- events

function onMessage(m) {
  const room = state.rooms.get(m.roomId);
  if (room) {
    if (!room.lastMessage || room.lastMessage.id === m.id || room.lastMessage.createdAt <= m.createdAt) {
      room.lastMessage = m;
      if (m.createdAt > room.updatedAt) room.updatedAt = m.createdAt;
    }
    renderRooms();
  }
  stopTypingOf(m.sender.username);
  if (m.roomId === state.current) {
    upsertMessage(m, { scroll: true });
    if (m.sender.id !== state.me.userId && document.visibilityState === 'visible') markRead(m.roomId);
  }
  scheduleRoomsRefresh(400);
}

function onSubscriptionChanged(method, room) {
  if (!room || !room.id) return;
  if (method === 'removed') {
    state.rooms.delete(room.id);
    if (state.current === room.id) closeRoom();
  } else {
    const old = state.rooms.get(room.id) || {};
    const merged = { ...old, ...room };
    if (room.id === state.current && document.visibilityState === 'visible') merged.unread = 0;
    state.rooms.set(room.id, merged);
    subscribeRoom(room.id);
  }
  renderRooms();
}

function onDeleted(roomId, messageId) {
  if (roomId === state.current && state.messages.has(messageId)) {
    state.messages.delete(messageId);
    const li = $('messages').querySelector(`li[data-id="${CSS.escape(messageId)}"]`);
    if (li) li.remove();
  }
  scheduleRoomsRefresh(200);
}

function onTyping(roomId, username, typing) {
  if (roomId !== state.current || !username || username === state.me.userId) return;
  clearTimeout(state.typingPeople.get(username));
  if (typing) {
    state.typingPeople.set(username, setTimeout(() => stopTypingOf(username), 6000));
  } else {
    state.typingPeople.delete(username);
  }
  renderTyping();
}

function stopTypingOf(username) {
  if (!state.typingPeople.has(username)) return;
  clearTimeout(state.typingPeople.get(username));
  state.typingPeople.delete(username);
  renderTyping();
}

function renderTyping() {
  const people = [...state.typingPeople.keys()];
  $('typing').textContent = people.length === 0 ? ''
    : people.length === 1 ? `${people[0]} is typing…`
      : `${people.slice(0, -1).join(', ')} and ${people.at(-1)} are typing…`;
}

// ---------------------------------------------------------------- rooms

function scheduleRoomsRefresh(delay) {
  clearTimeout(state.roomsTimer);
  state.roomsTimer = setTimeout(() => attempt(refreshRooms), delay);
}

async function refreshRooms() {
  if (!state.api) return;
  const rooms = await state.api.rooms();
  state.rooms.clear();
  for (const r of rooms) {
    if (r.id === state.current && document.visibilityState === 'visible' && r.unread > 0) {
      r.unread = 0;
      markRead(r.id);
    }
    state.rooms.set(r.id, r);
    subscribeRoom(r.id);
  }
  if (state.current && !state.rooms.has(state.current)) closeRoom();
  renderRooms();
  clearError('network');
}

const KIND = { direct: 'DM', channel: 'public', group: 'private' };

function roomLabel(room) {
  return room.kind === 'direct' ? `@${room.name}` : room.kind === 'channel' ? `#${room.name}` : room.name;
}

/** The room's name with a tag saying its kind. */
function roomHeading(room) {
  const frag = document.createDocumentFragment();
  const kind = el('span', 'kind', KIND[room.kind] || room.kind || '');
  kind.title = room.kind === 'direct' ? 'direct messages' : room.kind === 'channel' ? 'public channel' : 'private group';
  frag.append(kind, roomLabel(room));
  return frag;
}

function preview(m) {
  if (!m) return '';
  if (m.system) return `${m.sender.name || m.sender.id} ${m.system}`;
  const who = m.sender.id === state.me.userId ? 'you' : (m.sender.name || m.sender.id);
  const what = m.text || (m.file ? `file ${m.file.name}` : '');
  return `${who}: ${what}`;
}

function renderRooms() {
  const list = [...state.rooms.values()].sort((a, b) => (b.updatedAt || '').localeCompare(a.updatedAt || ''));
  const items = list.map((room) => {
    const li = document.createElement('li');
    const btn = document.createElement('button');
    btn.type = 'button';
    btn.className = 'room-item';
    btn.dataset.id = room.id;
    if (room.id === state.current) btn.setAttribute('aria-current', 'true');
    const name = el('span', 'room-name');
    name.append(roomHeading(room));
    const badge = el('span', 'badge', String(room.unread));
    badge.hidden = !room.unread;
    badge.setAttribute('aria-label', `${room.unread} unread`);
    const last = el('span', 'room-last', preview(room.lastMessage));
    btn.append(name, badge, last);
    btn.addEventListener('click', () => openRoom(room.id));
    li.append(btn);
    return li;
  });
  $('rooms').replaceChildren(...items);
  $('rooms-empty').hidden = list.length > 0;
  const total = list.reduce((n, r) => n + (r.unread || 0), 0);
  $('unread-total').textContent = String(total);
  $('unread-total').hidden = total === 0;
  document.title = total ? `(${total}) imgate demo chat` : 'imgate demo chat';
  if (state.current) {
    const room = state.rooms.get(state.current);
    if (room) $('room-title').replaceChildren(roomHeading(room));
  }
}

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

async function openRoom(id) {
  if (state.current !== id) {
    releaseBlobs();
    state.current = id;
    state.messages.clear();
    state.typingPeople.forEach((t) => clearTimeout(t));
    state.typingPeople.clear();
    renderTyping();
    $('messages').replaceChildren();
    $('load-older').hidden = true;
  }
  document.body.classList.add('in-room');
  $('composer').hidden = false;
  const room = state.rooms.get(id);
  if (room) room.unread = 0;
  renderRooms();
  await attempt(async () => {
    const page = await state.api.history(id, { limit: PAGE });
    if (state.current !== id) return;
    state.hasMore = page.hasMore;
    for (const m of page.messages.slice().reverse()) upsertMessage(m);
    $('load-older').hidden = !state.hasMore;
    scrollToEnd();
  });
  markRead(id);
  $('text').focus();
}

function closeRoom() {
  releaseBlobs();
  state.current = null;
  state.messages.clear();
  $('messages').replaceChildren();
  $('composer').hidden = true;
  $('load-older').hidden = true;
  $('room-title').textContent = 'Pick a room';
  document.body.classList.remove('in-room');
}

let latestTimer = null;
function scheduleLatest() {
  clearTimeout(latestTimer);
  latestTimer = setTimeout(() => attempt(loadLatest), 50);
}

async function loadLatest() {
  const id = state.current;
  if (!id) return;
  const page = await state.api.history(id, { limit: PAGE });
  if (state.current !== id) return;
  // Messages gone from the newest page were deleted (frontend mode sees deletes this way too).
  const newest = page.messages.at(-1);
  const fresh = new Set(page.messages.map((m) => m.id));
  for (const [mid, m] of state.messages) {
    if (!fresh.has(mid) && newest && m.createdAt >= newest.createdAt) onDeleted(id, mid);
  }
  const added = page.messages.slice().reverse().map((m) => upsertMessage(m)).some(Boolean);
  if (added) scrollToEnd();
  if (document.visibilityState === 'visible') markRead(id);
}

async function loadOlder() {
  const id = state.current;
  if (!id || !state.oldest) return;
  const box = $('history');
  const before = box.scrollHeight - box.scrollTop;
  await attempt(async () => {
    const page = await state.api.history(id, { limit: PAGE, before: state.oldest });
    if (state.current !== id) return;
    state.hasMore = page.hasMore;
    for (const m of page.messages) upsertMessage(m);
    $('load-older').hidden = !state.hasMore;
    box.scrollTop = box.scrollHeight - before;
  });
}

function markRead(id) {
  const room = state.rooms.get(id);
  if (room && room.unread) {
    room.unread = 0;
    renderRooms();
  }
  if (state.mode === 'backend' && state.hub && state.live) {
    state.hub.invoke('MarkRead', id).catch((err) => showError(err));
  } else if (state.api) {
    attempt(() => state.api.markRead(id));
  }
}

// ---------------------------------------------------------------- messages

/** Inserts or replaces a message of the current room in order; true when it was new. */
function upsertMessage(m, { scroll = false } = {}) {
  if (m.roomId !== state.current) return false;
  const isNew = !state.messages.has(m.id);
  const old = state.messages.get(m.id);
  if (old && old.editedAt && m.editedAt && old.editedAt > m.editedAt) return false;
  state.messages.set(m.id, m);
  if (!state.oldest || m.createdAt < state.oldest) state.oldest = m.createdAt;
  const node = renderMessage(m);
  const list = $('messages');
  const existing = list.querySelector(`li[data-id="${CSS.escape(m.id)}"]`);
  if (existing) {
    if (existing.classList.contains('editing')) return false; // keep the open editor
    existing.replaceWith(node);
    return false;
  }
  const box = $('history');
  const atEnd = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  let after = null;
  for (const li of list.children) {
    if (li.dataset.created > m.createdAt) { after = li; break; }
  }
  list.insertBefore(node, after);
  if (scroll && (atEnd || m.sender.id === state.me.userId)) scrollToEnd();
  return isNew;
}

function scrollToEnd() {
  const box = $('history');
  box.scrollTop = box.scrollHeight;
}

function formatTime(iso) {
  const d = new Date(iso);
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
    : d.toLocaleString([], { dateStyle: 'short', timeStyle: 'short' });
}

function renderMessage(m) {
  const li = document.createElement('li');
  li.dataset.id = m.id;
  li.dataset.created = m.createdAt;
  const mine = m.sender.id === state.me.userId;
  li.className = `message${mine ? ' mine' : ''}${m.system ? ' system' : ''}`;
  if (m.system) {
    li.textContent = `${m.sender.name || m.sender.id} ${m.system}${m.text ? `: ${m.text}` : ''}`;
    return li;
  }
  const meta = el('div', 'meta');
  meta.append(el('span', 'sender', mine ? 'You' : (m.sender.name || m.sender.id)));
  const time = el('time', 'time', formatTime(m.createdAt));
  time.dateTime = m.createdAt;
  time.title = new Date(m.createdAt).toLocaleString();
  meta.append(' ', time);
  if (m.editedAt) meta.append(' ', el('span', 'edited', '(edited)'));
  li.append(meta);
  if (m.text) li.append(el('div', 'text', m.text));
  if (m.file) li.append(renderFile(m.file));
  if (mine) {
    const actions = el('div', 'actions');
    if (!m.file) {
      const edit = el('button', 'edit', 'Edit');
      edit.type = 'button';
      edit.setAttribute('aria-label', 'Edit message');
      edit.addEventListener('click', () => startEdit(li, m));
      actions.append(edit);
    }
    const del = el('button', 'delete', 'Delete');
    del.type = 'button';
    del.setAttribute('aria-label', 'Delete message');
    del.addEventListener('click', () => {
      if (del.dataset.armed) {
        attempt(async () => {
          await state.api.remove(m.roomId, m.id);
          onDeleted(m.roomId, m.id);
        });
      } else {
        del.dataset.armed = '1';
        del.textContent = 'Really delete?';
        setTimeout(() => { delete del.dataset.armed; del.textContent = 'Delete'; }, 4000);
      }
    });
    actions.append(del);
    li.append(actions);
  }
  return li;
}

function humanSize(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function renderFile(file) {
  const box = el('div', 'file');
  const name = el('span', 'file-name', file.name);
  const size = el('span', 'file-size muted', ` ${humanSize(file.size)}`);
  const dl = el('button', 'download', 'Download');
  dl.type = 'button';
  dl.setAttribute('aria-label', `Download ${file.name}`);
  dl.addEventListener('click', () => attempt(async () => {
    const blob = await state.api.fileBlob(file.url);
    const href = keepBlob(blob);
    const a = document.createElement('a');
    a.href = href;
    a.download = file.name;
    document.body.append(a);
    a.click();
    a.remove();
  }));
  box.append(el('span', 'file-tag', 'FILE'), name, size, ' ', dl);
  if (/^image\//.test(file.mime)) {
    const img = document.createElement('img');
    img.alt = file.name;
    img.className = 'preview';
    box.append(img);
    state.api.fileBlob(file.url).then(
      (blob) => { img.src = keepBlob(blob); },
      (err) => { img.replaceWith(el('span', 'muted', ` (preview failed: ${err.message})`)); },
    );
  }
  return box;
}

function keepBlob(blob) {
  const href = URL.createObjectURL(blob);
  state.blobs.push(href);
  return href;
}

function releaseBlobs() {
  for (const href of state.blobs) URL.revokeObjectURL(href);
  state.blobs = [];
}

function startEdit(li, m) {
  li.classList.add('editing');
  const form = el('form', 'edit-form');
  const label = el('label', 'sr-only', 'Edit message');
  const input = document.createElement('textarea');
  input.value = m.text;
  input.rows = 2;
  input.id = `edit-${m.id}`;
  label.htmlFor = input.id;
  const save = el('button', 'primary', 'Save');
  save.type = 'submit';
  const cancel = el('button', '', 'Cancel');
  cancel.type = 'button';
  const done = () => {
    li.classList.remove('editing');
    li.replaceWith(renderMessage(state.messages.get(m.id) || m));
  };
  cancel.addEventListener('click', done);
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') done();
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); form.requestSubmit(); }
  });
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (!text || text === m.text) { done(); return; }
    attempt(async () => {
      const updated = await state.api.edit(m.roomId, m.id, text);
      state.messages.set(updated.id, updated);
      done();
    });
  });
  form.append(label, input, save, cancel);
  const text = li.querySelector('.text');
  if (text) text.replaceWith(form);
  else li.append(form);
  input.focus();
}

function clientId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return `c-${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

async function send() {
  const id = state.current;
  const box = $('text');
  const text = box.value.trim();
  if (!id || !text) return;
  box.value = '';
  sendTyping(false);
  try {
    let m;
    if (state.mode === 'backend' && state.hub && state.live) {
      m = await state.hub.invoke('SendMessage', id, text);
    } else {
      m = await state.api.send(id, text, clientId());
    }
    onMessage(m);
  } catch (err) {
    if (!box.value) box.value = text; // give the text back to try again
    showError(err);
  }
}

function sendTyping(typing) {
  const id = state.current;
  clearTimeout(state.typingStop);
  if (!id || !state.live) return;
  if (!typing && !state.typingSent) return;
  state.typingSent = typing ? Date.now() : 0;
  if (state.mode === 'backend' && state.hub) {
    state.hub.invoke('Typing', id, typing).catch(() => {});
  } else if (state.ddp) {
    state.ddp.call('stream-notify-room', [`${id}/user-activity`, state.me.userId, typing ? ['user-typing'] : [], {}])
      .catch(() => {});
  }
}

function onComposerInput() {
  if (!$('text').value.trim()) { sendTyping(false); return; }
  if (Date.now() - state.typingSent > 3000) sendTyping(true);
  clearTimeout(state.typingStop);
  state.typingStop = setTimeout(() => sendTyping(false), 4000);
}

async function upload(file) {
  const id = state.current;
  if (!id || !file) return;
  setStatus(`uploading ${file.name}…`, 'reconnecting');
  try {
    const m = await state.api.upload(id, file);
    onMessage(m);
  } catch (err) {
    showError(err);
  } finally {
    setStatus(state.live ? (state.mode === 'backend' ? 'live (gateway hub)' : 'live (provider direct)') : 'offline',
      state.live ? 'live' : 'offline');
  }
}

// ---------------------------------------------------------------- wiring

function wire() {
  $('banner-close').addEventListener('click', () => clearError());
  $('signin-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const button = e.submitter || $('signin-form').querySelector('button');
    button.disabled = true;
    try {
      await signIn($('signin-user').value, $('signin-token').value, $('signin-mode').value);
    } catch (err) {
      showError(err);
    } finally {
      button.disabled = false;
    }
  });
  $('sign-out').addEventListener('click', () => signOut());
  $('mode').addEventListener('change', () => {
    state.mode = $('mode').value;
    sessionStorage.setItem('imgate.mode', state.mode);
    startRealtime();
  });
  $('dm-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const user = $('dm-user').value.trim();
    if (!user) return;
    attempt(async () => {
      const room = await state.api.direct([user]);
      state.rooms.set(room.id, { ...(state.rooms.get(room.id) || { unread: 0 }), ...room });
      $('dm-user').value = '';
      subscribeRoom(room.id);
      await openRoom(room.id);
      scheduleRoomsRefresh(100);
    });
  });
  $('room-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const members = $('room-members').value.split(/[\s,]+/).filter(Boolean);
    attempt(async () => {
      const room = await state.api.createRoom($('room-kind').value, $('room-name').value.trim(), members);
      state.rooms.set(room.id, { unread: 0, ...room });
      $('room-form').reset();
      $('new-room').open = false;
      subscribeRoom(room.id);
      await openRoom(room.id);
      scheduleRoomsRefresh(100);
    });
  });
  $('load-older').addEventListener('click', loadOlder);
  $('back').addEventListener('click', () => document.body.classList.remove('in-room'));
  $('composer').addEventListener('submit', (e) => { e.preventDefault(); send(); });
  $('text').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    }
  });
  $('text').addEventListener('input', onComposerInput);
  $('file').addEventListener('change', () => {
    const file = $('file').files[0];
    $('file').value = '';
    upload(file);
  });
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible' && state.current) markRead(state.current);
  });
  window.addEventListener('online', () => state.api && resync());
}

async function boot() {
  wire();
  const params = new URLSearchParams(location.hash.slice(1));
  const mode = params.get('mode') || sessionStorage.getItem('imgate.mode') || 'backend';
  $('signin-mode').value = mode;
  if (params.get('user')) $('signin-user').value = params.get('user');
  const token = sessionStorage.getItem('imgate.token');
  if (!token) return;
  try {
    const api = new Api(token);
    const me = await api.me();
    await enter(api, token, me, mode);
  } catch (err) {
    if (err instanceof ApiError && err.code === 'unauthorized') sessionStorage.removeItem('imgate.token');
    showError(err);
  }
}

boot();
