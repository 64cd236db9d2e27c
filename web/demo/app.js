// The demo room page: one consultation over the Telehub WebSocket protocol.
// It keeps what a real client needs: resume with `since`, deduplicate by
// `seq`, resend unacknowledged messages with their original `client_id`,
// reconnect with backoff and jitter.

const params = new URLSearchParams(location.search);
const room = params.get('room');
const token = params.get('token');

const $ = (id) => document.getElementById(id);
const statusEl = $('status');
const messagesEl = $('messages');
const input = $('chat-input');
const form = $('chat-form');

let ws = null;
let me = null;              // {id, name, role}
let session = null;
let lastSeq = 0;            // the last seq rendered
let joined = false;
let ended = false;
let stopped = false;        // no more reconnects (expired token, no params)
let backoff = 500;
let nextRef = 0;
const pending = new Map();  // client_id -> {text, ref, sentAt}
const peers = new Map();    // session -> user
const readBy = new Map();   // user id -> seq
let lastReadSent = 0;
let typingSentAt = 0;
let typingTimer = null;
const typingUsers = new Map(); // user id -> {name, timer}

function setState(state) {
  statusEl.dataset.state = state;
  statusEl.textContent = state;
}

function showAlert(text) {
  const box = $('alert');
  box.textContent = text;
  box.hidden = false;
}

function send(frame) {
  if (ws && ws.readyState === WebSocket.OPEN) {
    ws.send(JSON.stringify(frame));
    return true;
  }
  return false;
}

function formatTime(at) {
  try {
    return new Date(at).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  } catch {
    return '';
  }
}

function messageElement(m, pendingState) {
  const li = document.createElement('li');
  if (m.kind === 'system') li.classList.add('system');
  else if (me && m.from && m.from.id === me.id) li.classList.add('mine');
  if (m.seq) li.dataset.seq = String(m.seq);
  if (m.client_id) li.dataset.clientId = m.client_id;
  if (pendingState) li.dataset.pending = 'true';
  const meta = document.createElement('span');
  meta.className = 'meta';
  meta.textContent = `${m.from ? m.from.name : ''}${m.at ? ' · ' + formatTime(m.at) : ' · sending…'}`;
  const text = document.createElement('span');
  text.className = 'text';
  text.textContent = m.text;
  li.append(meta, text);
  return li;
}

function scrollDown() {
  messagesEl.scrollTop = messagesEl.scrollHeight;
}

// Renders a stored message once, in seq order; replaces our own pending copy.
function renderMessage(m) {
  if (m.seq <= lastSeq) return;
  lastSeq = m.seq;
  const el = messageElement(m, false);
  if (m.client_id && me && m.from.id === me.id) {
    pending.delete(m.client_id);
    const mine = messagesEl.querySelector(`li[data-pending][data-client-id="${CSS.escape(m.client_id)}"]`);
    if (mine) mine.remove();
  }
  // Pending messages stay at the bottom, after every stored one.
  const firstPending = messagesEl.querySelector('li[data-pending]');
  messagesEl.insertBefore(el, firstPending);
  updateReadMarks();
  scrollDown();
  maybeSendRead();
}

function updateReadMarks() {
  if (!me) return;
  let maxOther = 0;
  for (const [user, seq] of readBy) if (user !== me.id) maxOther = Math.max(maxOther, seq);
  for (const li of messagesEl.querySelectorAll('li.mine[data-seq]')) {
    const read = Number(li.dataset.seq) <= maxOther;
    let mark = li.querySelector('.read');
    if (read && !mark) {
      mark = document.createElement('span');
      mark.className = 'read';
      mark.textContent = '✓ Read';
      li.querySelector('.meta').append(mark);
    }
  }
}

function maybeSendRead() {
  if (!joined || document.visibilityState !== 'visible') return;
  if (lastSeq > lastReadSent) {
    lastReadSent = lastSeq;
    send({ type: 'read', room, seq: lastSeq });
  }
}

function renderPeers() {
  const list = $('peers');
  list.replaceChildren();
  for (const user of peers.values()) {
    const li = document.createElement('li');
    li.textContent = `${user.name} (${user.role})`;
    list.append(li);
  }
  if (peers.size === 0) {
    const li = document.createElement('li');
    li.textContent = 'Nobody else yet';
    list.append(li);
  }
}

function renderTyping() {
  const names = [...typingUsers.values()].map((t) => t.name);
  $('typing').textContent = names.length ? `${names.join(', ')} ${names.length > 1 ? 'are' : 'is'} typing…` : '';
}

function markEnded(by) {
  ended = true;
  setState('ended');
  input.disabled = true;
  $('send').disabled = true;
  $('end').hidden = true;
  $('typing').textContent = '';
  const note = document.createElement('li');
  note.className = 'system';
  note.id = 'ended-note';
  note.textContent = `Consultation ended by ${by ? by.name : 'the clinic'}`;
  if (!$('ended-note')) messagesEl.append(note);
  scrollDown();
}

function resendPending() {
  for (const [clientId, p] of pending) {
    p.ref = `c${++nextRef}`;
    p.sentAt = Date.now();
    send({ type: 'chat', ref: p.ref, room, client_id: clientId, text: p.text });
  }
}

function onFrame(frame) {
  switch (frame.type) {
    case 'welcome':
      me = frame.user;
      session = frame.session;
      $('me').textContent = `You are ${me.name} (${me.role})`;
      if (me.role === 'doctor' || me.role === 'staff') $('end').hidden = ended;
      send(lastSeq > 0 ? { type: 'join', ref: 'j', room, since: lastSeq } : { type: 'join', ref: 'j', room });
      break;
    case 'joined':
      joined = true;
      backoff = 500;
      peers.clear();
      for (const p of frame.peers) peers.set(p.session, p.user);
      renderPeers();
      for (const item of frame.history) renderMessage(item);
      if (!frame.history_complete && !$('older-note')) {
        const note = document.createElement('li');
        note.className = 'system';
        note.id = 'older-note';
        note.textContent = 'Older messages are not shown.';
        messagesEl.prepend(note);
      }
      if (frame.status === 'ended' || frame.status === 'cancelled') markEnded(null);
      else {
        setState('online');
        resendPending();
      }
      maybeSendRead();
      break;
    case 'message':
      renderMessage(frame);
      break;
    case 'ack': {
      for (const [clientId, p] of pending) {
        if (p.ref === frame.ref) {
          const el = messagesEl.querySelector(`li[data-pending][data-client-id="${CSS.escape(clientId)}"]`);
          if (el) el.dataset.acked = String(frame.seq);
        }
      }
      break;
    }
    case 'presence':
      if (frame.event === 'join') peers.set(frame.peer.session, frame.peer.user);
      else peers.delete(frame.peer.session);
      renderPeers();
      break;
    case 'typing': {
      const old = typingUsers.get(frame.user.id);
      if (old) clearTimeout(old.timer);
      if (frame.active) {
        const timer = setTimeout(() => { typingUsers.delete(frame.user.id); renderTyping(); }, 6000);
        typingUsers.set(frame.user.id, { name: frame.user.name, timer });
      } else {
        typingUsers.delete(frame.user.id);
      }
      renderTyping();
      break;
    }
    case 'read':
      readBy.set(frame.user.id, Math.max(readBy.get(frame.user.id) || 0, frame.seq));
      updateReadMarks();
      break;
    case 'ended':
      markEnded(frame.by);
      break;
    case 'error':
      if (frame.code === 'rate_limited') {
        setTimeout(resendPending, frame.retry_ms || 1000);
      } else if (frame.code === 'unavailable') {
        setTimeout(resendPending, 2000);
        showAlert(`${frame.message}`);
      } else if (frame.code === 'unauthorized') {
        stopped = true;
        setState('expired');
        showAlert('Your session has expired. Ask the clinic for a new link.');
      } else {
        showAlert(`${frame.code}: ${frame.message}`);
      }
      break;
    case 'goaway':
      backoff = frame.retry_ms || 1000;
      break;
    default:
      break; // Frames this page does not use.
  }
}

function connect() {
  if (stopped) return;
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  ws = new WebSocket(`${scheme}://${location.host}/v1/ws?token=${encodeURIComponent(token)}`);
  ws.onmessage = (event) => {
    let frame;
    try { frame = JSON.parse(event.data); } catch { return; }
    onFrame(frame);
  };
  ws.onclose = (event) => {
    joined = false;
    if (event.code === 4001 || event.code === 1008) {
      stopped = true;
      setState('expired');
      showAlert('Your session has expired. Ask the clinic for a new link.');
      return;
    }
    if (stopped) return;
    if (!ended) setState('reconnecting');
    // Exponential backoff with full jitter, so a restarted node is not hit
    // by every client at once.
    const delay = Math.random() * backoff;
    backoff = Math.min(backoff * 2, 15000);
    setTimeout(connect, delay);
  };
}

form.addEventListener('submit', (event) => {
  event.preventDefault();
  const text = input.value.trim();
  if (!text || ended) return;
  const clientId = crypto.randomUUID();
  const p = { text, ref: `c${++nextRef}`, sentAt: Date.now() };
  pending.set(clientId, p);
  messagesEl.append(messageElement({ text, client_id: clientId, from: me, kind: 'text' }, true));
  scrollDown();
  input.value = '';
  send({ type: 'chat', ref: p.ref, room, client_id: clientId, text });
  if (typingSentAt) {
    typingSentAt = 0;
    send({ type: 'typing', room, active: false });
  }
});

input.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && !event.shiftKey) {
    event.preventDefault();
    form.requestSubmit();
  }
});

input.addEventListener('input', () => {
  if (!joined || ended) return;
  const now = Date.now();
  if (now - typingSentAt > 2000) {
    typingSentAt = now;
    send({ type: 'typing', room, active: true });
  }
  clearTimeout(typingTimer);
  typingTimer = setTimeout(() => {
    typingSentAt = 0;
    send({ type: 'typing', room, active: false });
  }, 3000);
});

$('end').addEventListener('click', () => {
  send({ type: 'end', ref: 'e', room });
});

document.addEventListener('visibilitychange', maybeSendRead);

// Messages not acknowledged in 5 s are sent again with the same client_id;
// the hub stores each client_id once.
setInterval(() => {
  const now = Date.now();
  for (const [clientId, p] of pending) {
    if (now - p.sentAt > 5000 && joined) {
      p.sentAt = now;
      send({ type: 'chat', ref: p.ref, room, client_id: clientId, text: p.text });
    }
  }
}, 1000);

if (!room || !token) {
  stopped = true;
  setState('error');
  showAlert('This page needs a room and a token: open it from the demo launcher.');
} else {
  $('title').textContent = `Consultation ${room}`;
  renderPeers();
  connect();
}
