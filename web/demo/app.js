// Telehub demo room: one consultation over the WebSocket protocol (v1).
//
// Plain ES module, no dependencies. It does what a real client must do:
// resume with `since` after a reconnect, render every `seq` once, resend
// unacknowledged messages with their original `client_id` (the hub stores
// each one once), back off with jitter, and stop on an expired session.

const params = new URLSearchParams(location.search);
const room = params.get('room');
const token = params.get('token');

const $ = (id) => document.getElementById(id);
const statusEl = $('status');
const meEl = $('me');
const messagesEl = $('messages');
const typingEl = $('typing');
const peersEl = $('peers');
const form = $('chat-form');
const input = $('chat-input');
const sendButton = $('send');
const endButton = $('end');
const alertEl = $('alert');
const alertText = $('alert-text');
const historyNote = $('history-note');
const endedNote = $('ended-note');

const RESEND_AFTER_MS = 5000;
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 15000;
const TYPING_EVERY_MS = 2000;
const TYPING_IDLE_MS = 3000;
const TYPING_SHOWN_MS = 6000;

const STATE_TEXT = {
  connecting: 'Connecting…',
  online: 'Online',
  reconnecting: 'Reconnecting…',
  ended: 'Ended',
  expired: 'Session expired',
  error: 'Error',
};

let ws = null;
let me = null;              // {id, name, role} from `welcome`
let session = null;         // this connection's session id
let joined = false;         // the current connection has its `joined`
let ended = false;
let stopped = false;        // never reconnect again (expired, bad link, refused)
let everOnline = false;
let lastSeq = 0;            // highest seq received in `message`/history
let lastOtherSeq = 0;       // highest seq of a message from someone else
let lastReadSent = 0;
let backoff = BACKOFF_MIN_MS;
let goawayDelay = null;     // set by `goaway`: the wait before the next connect
let reconnectTimer = null;
let failedConnects = 0;     // connections closed before any `welcome`
let joinCount = 0;
let refCount = 0;

const bySeq = new Map();    // seq -> <li>, so a seq is never rendered twice
const pending = new Map();  // client_id -> {clientId, text, ref, dueAt, el}
const chatRefs = new Map(); // ref of a chat frame -> client_id
const peers = new Map();    // session -> user (other sessions only)
const readBy = new Map();   // user id (not me) -> highest read seq
const typists = new Map();  // user id -> {name, timer}

// ---------------------------------------------------------------- helpers

function newRef(prefix) {
  refCount += 1;
  return `${prefix}${refCount}`;
}

// crypto.randomUUID needs a secure context; fall back for plain http on a LAN.
function uuid() {
  if (typeof crypto.randomUUID === 'function') return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function send(frame) {
  if (ws && ws.readyState === WebSocket.OPEN) {
    ws.send(JSON.stringify(frame));
    return true;
  }
  return false;
}

function setState(state) {
  statusEl.dataset.state = state;
  statusEl.textContent = STATE_TEXT[state] || state;
}

function showAlert(text) {
  alertText.textContent = text;
  alertEl.hidden = false;
}

function hideAlert() {
  alertEl.hidden = true;
  alertText.textContent = '';
}

function formatTime(at) {
  const d = new Date(at);
  if (Number.isNaN(d.getTime())) return '';
  const sameDay = d.toDateString() === new Date().toDateString();
  return sameDay
    ? d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
    : d.toLocaleString([], { dateStyle: 'short', timeStyle: 'short' });
}

function isMine(m) {
  return Boolean(me && m.from && m.kind !== 'system' && m.from.id === me.id);
}

function nearBottom() {
  return messagesEl.scrollHeight - messagesEl.scrollTop - messagesEl.clientHeight < 80;
}

function scrollDown() {
  messagesEl.scrollTop = messagesEl.scrollHeight;
}

// ---------------------------------------------------------------- messages

// One message element. `m` is a `message` frame, or a local draft (no seq).
function messageElement(m) {
  const li = document.createElement('li');
  li.className = 'msg';
  if (m.kind === 'system') li.classList.add('system');
  else li.classList.add(isMine(m) ? 'mine' : 'theirs');
  if (m.client_id) li.dataset.clientId = m.client_id;

  const meta = document.createElement('div');
  meta.className = 'meta';
  const from = document.createElement('span');
  from.className = 'from';
  from.textContent = m.kind === 'system' ? (m.from?.name || 'System') : (isMine(m) ? 'You' : m.from?.name || '');
  const time = document.createElement('time');
  const note = document.createElement('span');
  note.className = 'state';
  meta.append(from, time, note);

  const text = document.createElement('p');
  text.className = 'text';
  text.textContent = m.text;
  li.append(meta, text);
  if (m.seq) stored(li, m);
  return li;
}

// Marks an element as stored under `seq` (from a `message` or an `ack`).
function stored(li, { seq, id, at }) {
  li.dataset.seq = String(seq);
  if (id) li.dataset.id = id;
  li.removeAttribute('data-pending');
  li.removeAttribute('data-failed');
  const time = li.querySelector('time');
  if (at) {
    time.dateTime = at;
    time.textContent = formatTime(at);
  }
  if (li.classList.contains('mine')) {
    li.dataset.sent = 'true';
    li.querySelector('.state').textContent = li.dataset.read ? 'Read' : 'Sent';
  }
}

// Stored messages stay in seq order; drafts (pending or failed) stay last.
function placeBySeq(li, seq) {
  let before = null;
  for (const child of messagesEl.children) {
    if (child === li) continue;
    if (child.dataset.seq ? Number(child.dataset.seq) > seq : true) {
      before = child;
      break;
    }
  }
  messagesEl.insertBefore(li, before);
}

// A `message` frame, live or from history.
function onMessage(m) {
  if (typeof m.seq !== 'number') return;
  const follow = nearBottom() || isMine(m);
  if (m.seq > lastSeq) lastSeq = m.seq;
  if (!isMine(m) && m.seq > lastOtherSeq) lastOtherSeq = m.seq;
  if (m.from && typists.has(m.from.id)) clearTypist(m.from.id);

  let li = bySeq.get(m.seq);
  if (li) {
    stored(li, m); // seen already (our own ack, or a replay): update, never duplicate
  } else {
    // Our own message: replace the draft that has its client_id.
    const draft = isMine(m) && m.client_id ? draftFor(m.client_id) : null;
    if (draft) {
      forgetPending(m.client_id);
      stored(draft, m);
      li = draft;
    } else {
      li = messageElement(m);
    }
    bySeq.set(m.seq, li);
    placeBySeq(li, m.seq);
  }
  updateReadMarks();
  if (follow) scrollDown();
  maybeSendRead();
}

function draftFor(clientId) {
  const p = pending.get(clientId);
  if (p) return p.el;
  for (const li of messagesEl.querySelectorAll('li[data-client-id]:not([data-seq])')) {
    if (li.dataset.clientId === clientId) return li;
  }
  return null;
}

function forgetPending(clientId) {
  const p = pending.get(clientId);
  if (!p) return;
  pending.delete(clientId);
  for (const [ref, id] of chatRefs) if (id === clientId) chatRefs.delete(ref);
}

function updateReadMarks() {
  let upTo = 0;
  for (const seq of readBy.values()) upTo = Math.max(upTo, seq);
  if (!upTo) return;
  for (const li of messagesEl.querySelectorAll('li.mine[data-seq]:not([data-read])')) {
    if (Number(li.dataset.seq) <= upTo) {
      li.dataset.read = 'true';
      li.querySelector('.state').textContent = 'Read';
    }
  }
}

function maybeSendRead() {
  if (!joined || ended || document.visibilityState !== 'visible') return;
  if (lastOtherSeq > lastReadSent && lastSeq > lastReadSent) {
    lastReadSent = lastSeq;
    send({ type: 'read', room, seq: lastSeq });
  }
}

// ---------------------------------------------------------------- sending

function transmit(p) {
  if (!joined || ended) return; // sent on the next `joined`
  p.ref = newRef('c');
  chatRefs.set(p.ref, p.clientId);
  p.dueAt = Date.now() + RESEND_AFTER_MS;
  send({ type: 'chat', ref: p.ref, room, client_id: p.clientId, text: p.text });
}

function resendPending() {
  for (const p of pending.values()) transmit(p);
}

function failDraft(clientId, why) {
  const p = pending.get(clientId);
  if (!p) return;
  forgetPending(clientId);
  p.el.removeAttribute('data-pending');
  p.el.dataset.failed = 'true';
  p.el.querySelector('.state').textContent = `Not sent${why ? `: ${why}` : ''}`;
}

form.addEventListener('submit', (event) => {
  event.preventDefault();
  if (ended) return;
  const text = input.value.trim();
  if (!text) return;
  const clientId = uuid();
  const el = messageElement({ kind: 'text', client_id: clientId, from: me || { id: '', name: 'You' }, text });
  el.classList.remove('theirs');
  el.classList.add('mine');
  el.querySelector('.from').textContent = 'You';
  el.dataset.pending = 'true';
  el.querySelector('.state').textContent = 'Sending…';
  messagesEl.append(el);
  scrollDown();
  const p = { clientId, text, ref: null, dueAt: 0, el };
  pending.set(clientId, p);
  input.value = '';
  stopTyping();
  transmit(p);
  input.focus();
});

input.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    form.requestSubmit();
  }
});

// Unacknowledged messages go again after 5 s, with the same client_id.
setInterval(() => {
  if (!joined || ended) return;
  const now = Date.now();
  for (const p of pending.values()) if (p.dueAt && now >= p.dueAt) transmit(p);
}, 500);

// ---------------------------------------------------------------- typing

let typingActive = false;
let typingSentAt = 0;
let typingIdleTimer = null;

function stopTyping() {
  clearTimeout(typingIdleTimer);
  if (typingActive) {
    typingActive = false;
    typingSentAt = 0;
    send({ type: 'typing', room, active: false });
  }
}

input.addEventListener('input', () => {
  if (!joined || ended) return;
  if (!input.value.trim()) {
    stopTyping();
    return;
  }
  const now = Date.now();
  if (now - typingSentAt >= TYPING_EVERY_MS) {
    typingSentAt = now;
    typingActive = true;
    send({ type: 'typing', room, active: true });
  }
  clearTimeout(typingIdleTimer);
  typingIdleTimer = setTimeout(stopTyping, TYPING_IDLE_MS);
});

function clearTypist(userId) {
  const t = typists.get(userId);
  if (t) clearTimeout(t.timer);
  typists.delete(userId);
  renderTyping();
}

function renderTyping() {
  const names = [...typists.values()].map((t) => t.name);
  if (names.length === 0) typingEl.textContent = '';
  else if (names.length === 1) typingEl.textContent = `${names[0]} is typing…`;
  else typingEl.textContent = `${names.join(', ')} are typing…`;
}

// ---------------------------------------------------------------- presence

function renderPeers() {
  const items = [];
  for (const [peerSession, user] of peers) {
    const li = document.createElement('li');
    li.dataset.session = peerSession;
    li.dataset.role = user.role;
    const sameUser = me && user.id === me.id;
    li.textContent = `${user.name} (${user.role})${sameUser ? ' · your other window' : ''}`;
    items.push(li);
  }
  if (items.length === 0) {
    const li = document.createElement('li');
    li.className = 'empty';
    li.textContent = joined || ended ? 'Nobody else is here yet.' : 'Not connected.';
    items.push(li);
  }
  peersEl.replaceChildren(...items);
}

// ---------------------------------------------------------------- ending

function markEnded(by) {
  ended = true;
  setState('ended');
  input.disabled = true;
  sendButton.disabled = true;
  form.setAttribute('aria-disabled', 'true');
  endButton.hidden = true;
  endButton.disabled = true;
  stopTyping();
  for (const id of [...typists.keys()]) clearTypist(id);
  for (const clientId of [...pending.keys()]) failDraft(clientId, 'the consultation has ended');
  endedNote.textContent = by && by.name ? `Consultation ended by ${by.name}` : 'This consultation has ended.';
  endedNote.hidden = false;
}

endButton.addEventListener('click', () => {
  if (ended) return;
  if (!send({ type: 'end', ref: 'e1', room })) showAlert('Not connected: try again when the status shows Online.');
});

// ---------------------------------------------------------------- frames

function join() {
  joinCount += 1;
  const frame = { type: 'join', ref: `j${joinCount}`, room };
  if (lastSeq > 0) frame.since = lastSeq;
  send(frame);
}

function onError(frame) {
  const ref = frame.ref || '';
  if (frame.code === 'unauthorized') {
    expire();
    return;
  }
  if (chatRefs.has(ref)) {
    const clientId = chatRefs.get(ref);
    const p = pending.get(clientId);
    if (frame.code === 'rate_limited' || frame.code === 'unavailable' || frame.code === 'internal') {
      // Nothing was stored: send again later with the same client_id.
      if (p) p.dueAt = Date.now() + (frame.retry_ms || 2000);
      if (frame.code !== 'rate_limited') showAlert(`Message not stored yet, retrying: ${frame.message}`);
    } else if (frame.code === 'conflict' && !ended) {
      failDraft(clientId, frame.message);
    } else if (!ended) {
      failDraft(clientId, frame.message);
      showAlert(`Message not sent: ${frame.message}`);
    }
    return;
  }
  if (/^j\d+$/.test(ref)) {
    if (frame.code === 'rate_limited' || frame.code === 'unavailable' || frame.code === 'internal') {
      setTimeout(() => { if (ws && !joined) join(); }, frame.retry_ms || 2000);
      return;
    }
    stopped = true;
    setState('error');
    showAlert(`Cannot enter consultation ${room}: ${frame.message}`);
    if (ws) ws.close(1000);
    return;
  }
  if (frame.code === 'rate_limited') {
    // A typing or read frame over the limit: nothing to show. Drafts go
    // again after the pause.
    const due = Date.now() + (frame.retry_ms || 1000);
    for (const p of pending.values()) p.dueAt = Math.max(p.dueAt, due);
    return;
  }
  if (ref === 'e1') {
    showAlert(`Could not end the consultation: ${frame.message}`);
    return;
  }
  showAlert(frame.message || frame.code);
}

function onFrame(frame) {
  switch (frame.type) {
    case 'welcome':
      me = frame.user;
      session = frame.session;
      failedConnects = 0;
      meEl.textContent = `You are ${me.name} (${me.role})`;
      endButton.hidden = ended || !(me.role === 'doctor' || me.role === 'staff');
      join();
      break;
    case 'joined': {
      if (frame.room !== room) break;
      joined = true;
      everOnline = true;
      backoff = BACKOFF_MIN_MS;
      peers.clear();
      for (const p of frame.peers || []) if (p.session !== session) peers.set(p.session, p.user);
      renderPeers();
      messagesEl.setAttribute('aria-busy', 'true');
      for (const item of frame.history || []) if (item.type === 'message') onMessage(item);
      messagesEl.setAttribute('aria-busy', 'false');
      if (frame.history_complete === false) historyNote.hidden = false;
      if (frame.status === 'ended' || frame.status === 'cancelled') {
        markEnded(null);
      } else if (!ended) {
        setState('online');
        resendPending();
      }
      scrollDown();
      maybeSendRead();
      break;
    }
    case 'message':
      if (frame.room === room) onMessage(frame);
      break;
    case 'ack': {
      const clientId = chatRefs.get(frame.ref);
      if (clientId === undefined) break;
      const p = pending.get(clientId);
      forgetPending(clientId);
      if (!p || bySeq.has(frame.seq)) break; // its `message` came first
      stored(p.el, frame);
      bySeq.set(frame.seq, p.el);
      placeBySeq(p.el, frame.seq);
      updateReadMarks();
      break;
    }
    case 'presence':
      if (frame.room !== room || !frame.peer || frame.peer.session === session) break;
      if (frame.event === 'join') peers.set(frame.peer.session, frame.peer.user);
      else if (frame.event === 'leave') peers.delete(frame.peer.session);
      renderPeers();
      break;
    case 'typing': {
      if (frame.room !== room || !frame.user || (me && frame.user.id === me.id)) break;
      const id = frame.user.id;
      if (frame.active && !ended) {
        const old = typists.get(id);
        if (old) clearTimeout(old.timer);
        typists.set(id, { name: frame.user.name, timer: setTimeout(() => clearTypist(id), TYPING_SHOWN_MS) });
        renderTyping();
      } else {
        clearTypist(id);
      }
      break;
    }
    case 'read':
      if (frame.room !== room || !frame.user || (me && frame.user.id === me.id)) break;
      readBy.set(frame.user.id, Math.max(readBy.get(frame.user.id) || 0, frame.seq));
      updateReadMarks();
      break;
    case 'ended':
      if (frame.room === room) markEnded(frame.by);
      break;
    case 'error':
      onError(frame);
      break;
    case 'goaway':
      // The node is going down: reconnect (to any node) after retry_ms.
      goawayDelay = frame.retry_ms || 1000;
      break;
    default:
      break; // ok, pong, left, signal, media_mode, queue…: not used here
  }
}

// ---------------------------------------------------------------- connection

function expire() {
  stopped = true;
  joined = false;
  clearTimeout(reconnectTimer);
  setState('expired');
  showAlert('Your session has expired. Ask the clinic for a new link.');
  input.disabled = true;
  sendButton.disabled = true;
  endButton.disabled = true;
}

function connect() {
  reconnectTimer = null;
  if (stopped || ended) return;
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const socket = new WebSocket(`${scheme}://${location.host}/v1/ws?token=${encodeURIComponent(token)}`);
  ws = socket;
  let welcomed = false;
  socket.onmessage = (event) => {
    if (ws !== socket || typeof event.data !== 'string') return;
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return;
    }
    if (!frame || typeof frame.type !== 'string') return;
    if (frame.type === 'welcome') welcomed = true;
    onFrame(frame);
  };
  socket.onclose = (event) => {
    if (ws !== socket) return;
    ws = null;
    joined = false;
    session = null;
    // Presence and typing are live only: forget them until the next `joined`.
    if (!ended) {
      peers.clear();
      renderPeers();
    }
    for (const id of [...typists.keys()]) clearTypist(id);
    if (event.code === 4001 || event.code === 1008) {
      expire();
      return;
    }
    if (stopped || ended) return;
    setState(everOnline ? 'reconnecting' : 'connecting');
    if (!welcomed) {
      failedConnects += 1;
      // A refused token is an HTTP 401 before the upgrade, which a browser
      // cannot tell from a hub that is down.
      if (failedConnects === 4) showAlert('Cannot reach the hub, or this link has expired. Still trying…');
    }
    let delay;
    if (goawayDelay !== null) {
      delay = goawayDelay + Math.random() * 500;
      goawayDelay = null;
    } else {
      // Exponential backoff with jitter: half fixed, half random.
      delay = backoff / 2 + Math.random() * (backoff / 2);
      backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
    }
    reconnectTimer = setTimeout(connect, delay);
  };
}

// Back on the network: do not wait out the backoff.
window.addEventListener('online', () => {
  if (reconnectTimer !== null) {
    clearTimeout(reconnectTimer);
    connect();
  }
});

document.addEventListener('visibilitychange', maybeSendRead);

$('alert-dismiss').addEventListener('click', hideAlert);
document.addEventListener('keydown', (event) => {
  if (event.key === 'Escape' && !alertEl.hidden) hideAlert();
});

// ---------------------------------------------------------------- start

renderPeers();
if (!room || !token) {
  stopped = true;
  setState('error');
  input.disabled = true;
  sendButton.disabled = true;
  showAlert('This page needs a room and a token: open it from the demo launcher.');
} else {
  $('title').textContent = `Consultation ${room}`;
  document.title = `Consultation ${room} · Telehub`;
  setState('connecting');
  connect();
}
