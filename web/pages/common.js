// Shared by the patient, doctor and display pages: the token from the URL,
// the hub's socket URL, small DOM helpers, the connection badge, and the
// chat panel (messages, typing, read receipts).
//
// Pages take their token from the URL fragment (`#token=…`), which browsers
// never send to a server, so it stays out of access logs and referrers.

import { TelehubClient, newClientId } from '/sdk/telehub.js';

/** The page's parameters: `?room=…&queue=…` and `#token=…`. */
export function params() {
  const query = new URLSearchParams(location.search);
  const fragment = new URLSearchParams(location.hash.slice(1));
  return {
    // Only from the fragment: a token in the query would reach access logs.
    token: fragment.get('token'),
    room: query.get('room'),
    queue: query.get('queue'),
  };
}

/** The claims of a JWT, unverified: only to greet the user by name. */
export function claims(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = new TextDecoder().decode(Uint8Array.from(atob(part), (c) => c.charCodeAt(0)));
    return JSON.parse(json);
  } catch {
    return {};
  }
}

/** How often a board asks again for a queue the hub does not know yet. */
const UNKNOWN_QUEUE_RETRY_MS = 30000;

/**
 * Follows `queue` for a board: `show` gets every `queue_state`. A queue no
 * consultation is in yet (`not_found`: the first patient of a fresh
 * clinic, or a board switched on early) shows as empty and is asked for
 * again every half minute or so; a watch the hub ends for good after a
 * reconnect is taken up again the same way. Other refusals go to `failed`.
 */
export function watchQueue(client, queue, show, failed) {
  const again = () => setTimeout(attempt, UNKNOWN_QUEUE_RETRY_MS * (0.75 + Math.random() / 2));
  const attempt = () =>
    client.watch(queue).then(show, (err) => {
      if (err.code === 'not_found') {
        show({ type: 'queue_state', queue, entries: [] });
        again();
      } else if (err.code === 'disconnected') {
        // Sent again with the reconnect; its updates come as events.
      } else {
        failed(err);
      }
    });
  client.on('error', (e) => {
    if (e.request?.type === 'watch' && e.request.queue === queue && e.code === 'not_found') again();
  });
  attempt();
}

/** How long the chat waits to send one `read` for a burst of messages. */
const READ_DELAY_MS = 200;

/** Whether the token's `exp` has passed: such a link can never connect. */
export function expired(token) {
  const exp = claims(token).exp;
  return typeof exp === 'number' && exp * 1000 < Date.now();
}

/** A client of this hub's socket. */
export function connectClient(token) {
  const url = new URL('/v1/ws', location.href);
  url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const client = new TelehubClient({ url: url.toString(), token, pingMs: 20000 });
  // For people (and tests) who want to look inside from the console.
  globalThis.telehub = { client };
  return client;
}

/**
 * Calls the hub's HTTP API with the page's token; resolves with the JSON
 * answer, or rejects with the API's error message.
 */
export async function apiRequest(path, token, method = 'GET') {
  const response = await fetch(path, { method, headers: { Authorization: `Bearer ${token}` } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error?.message ?? `HTTP ${response.status}`);
  return body;
}

/** Currencies Stripe counts in whole units; the others in hundredths. */
const WHOLE_UNITS = new Set(['bif', 'clp', 'djf', 'gnf', 'jpy', 'kmf', 'krw', 'mga', 'pyg', 'rwf', 'ugx', 'vnd', 'vuv', 'xaf', 'xof', 'xpf']);

/** An amount in a currency's smallest unit, as people read it. */
export function money(amount, currency) {
  const units = WHOLE_UNITS.has(currency) ? amount : amount / 100;
  try {
    return new Intl.NumberFormat(undefined, { style: 'currency', currency: currency.toUpperCase() }).format(units);
  } catch {
    return `${units} ${currency.toUpperCase()}`;
  }
}

/** `document.querySelector`, which must find something. */
export function $(selector, root = document) {
  const found = root.querySelector(selector);
  if (!found) throw new Error(`page is missing ${selector}`);
  return found;
}

/** Makes an element with text and attributes; never parses HTML. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null) continue;
    if (key === 'class') node.className = value;
    else if (key.startsWith('data-')) node.setAttribute(key, String(value));
    else if (key in node) node[key] = value;
    else node.setAttribute(key, String(value));
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

/** Shows a page-level problem in the alert region. */
export function alertUser(message) {
  const region = document.querySelector('#alert');
  if (!region) return;
  region.textContent = message;
  region.hidden = !message;
}

const STATE_WORDS = {
  idle: 'Not connected',
  connecting: 'Connecting…',
  open: 'Connected',
  reconnecting: 'Reconnecting…',
  closed: 'Disconnected',
};

/** Keeps `#connection` in step with the client's state. */
export function showConnection(client) {
  const badge = $('#connection');
  const update = (state) => {
    badge.dataset.state = state;
    badge.textContent = STATE_WORDS[state] ?? state;
  };
  update(client.state);
  client.on('state', update);
  client.on('error', (err) => {
    if (err.code === 'unauthorized' || err.code === 'token_failed') {
      alertUser('Your link has expired or is not valid. Ask the clinic for a new one.');
    }
  });
}

/** Minutes, in words, for an ETA. */
export function minutes(seconds) {
  if (seconds <= 0) return 'any moment now';
  const m = Math.max(1, Math.round(seconds / 60));
  return m === 1 ? 'about 1 minute' : `about ${m} minutes`;
}

/** A clock time from an RFC 3339 string. */
export function clock(at) {
  const date = new Date(at);
  return Number.isNaN(date.getTime()) ? '' : date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

/**
 * The chat of one room: a list of messages, a form to send, who is typing,
 * and "Seen" under one's own messages once the other side has read them.
 */
export class ChatPanel {
  #client;
  #room;
  #me;
  #list;
  #input;
  #typingLine;
  /** client_id → the list item of a message sent from here, until stored */
  #pending = new Map();
  /** seq → list item */
  #bySeq = new Map();
  #typingTimer = null;
  #typingSent = 0;
  #othersTyping = new Map();
  #lastReadSent = 0;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #readTimer = undefined;
  /** Ends every listener this panel added, for `dispose`. */
  #abort = new AbortController();
  #unsubscribe = [];

  /**
   * @param {import('/sdk/telehub.js').TelehubClient} client
   * @param {string} room
   * @param {HTMLElement} root holds `#messages`, `#chat-form`, `#chat-input`, `#typing`
   */
  constructor(client, room, root) {
    this.#client = client;
    this.#room = room;
    this.#me = () => client.user?.id;
    this.#list = $('#messages', root);
    this.#input = $('#chat-input', root);
    this.#typingLine = $('#typing', root);
    const signal = this.#abort.signal;
    this.#list.replaceChildren();
    this.#typingLine.textContent = '';
    // Enabled once the room is joined: the hub takes chat from members only.
    this.setEnabled(false, 'Joining the consultation…');
    $('#chat-form', root).addEventListener(
      'submit',
      (event) => {
        event.preventDefault();
        this.#send();
      },
      { signal },
    );
    this.#input.addEventListener('input', () => this.#typing(), { signal });
    document.addEventListener('visibilitychange', () => this.#markRead(), { signal });
    this.#unsubscribe = [
      client.on('message', (m) => m.room === room && this.#show(m)),
      client.on('typing', (t) => t.room === room && this.#someoneTyping(t)),
      client.on('read', (r) => r.room === room && this.#seen(r)),
    ];
  }

  /** Stops listening; the panel's elements can serve another room. */
  dispose() {
    this.#abort.abort();
    this.#unsubscribe.forEach((off) => off());
    clearTimeout(this.#typingTimer);
    clearTimeout(this.#readTimer);
    for (const typing of this.#othersTyping.values()) clearTimeout(typing.timer);
  }

  /** Allows or stops sending, e.g. when the consultation ends. */
  setEnabled(enabled, why = '') {
    this.#input.disabled = !enabled;
    $('button[type="submit"]', this.#input.form).disabled = !enabled;
    this.#input.placeholder = enabled ? 'Write a message' : why;
  }

  #send() {
    const text = this.#input.value.trim();
    if (!text) return;
    this.#input.value = '';
    const clientId = newClientId();
    const item = this.#item({ text, from: { id: this.#me(), name: 'You' }, kind: 'text' });
    item.dataset.clientId = clientId;
    item.classList.add('pending');
    this.#pending.set(clientId, item);
    this.#list.append(item);
    this.#scroll();
    this.#client.typing(this.#room, false);
    this.#typingSent = 0;
    this.#client.send(this.#room, text, { clientId }).catch((err) => {
      item.classList.add('failed');
      $('.meta', item).textContent = `Not sent: ${err.message}`;
    });
  }

  #item(message) {
    const mine = message.from?.id === this.#me();
    const who = message.kind === 'system' ? message.from?.name ?? 'Clinic' : mine ? 'You' : message.from?.name;
    return el(
      'li',
      { class: `message ${message.kind === 'system' ? 'system' : mine ? 'mine' : 'theirs'}` },
      el('span', { class: 'who' }, who ?? ''),
      el('p', { class: 'text' }, message.text),
      el('span', { class: 'meta' }, message.at ? clock(message.at) : 'Sending…'),
    );
  }

  #show(message) {
    let item = message.client_id ? this.#pending.get(message.client_id) : undefined;
    if (item) {
      this.#pending.delete(message.client_id);
      item.classList.remove('pending');
      $('.meta', item).textContent = clock(message.at);
    } else {
      item = this.#item(message);
      this.#list.append(item);
    }
    item.dataset.seq = String(message.seq);
    item.dataset.from = message.from?.id ?? '';
    this.#bySeq.set(message.seq, item);
    this.#scroll();
    this.#markRead();
  }

  /**
   * Tells the others how far this user has read, while the page is
   * visible: once for a burst of messages (a history of hundreds comes in
   * one turn), not once each, which would be as many writes and could run
   * into the rate limit.
   */
  #markRead() {
    if (this.#readTimer !== undefined) return;
    this.#readTimer = setTimeout(() => {
      this.#readTimer = undefined;
      if (document.visibilityState !== 'visible') return;
      const last = this.#client.roomInfo(this.#room)?.lastSeq ?? 0;
      if (last > this.#lastReadSent) {
        this.#lastReadSent = last;
        this.#client.markRead(this.#room, last);
      }
    }, READ_DELAY_MS);
  }

  #seen(read) {
    if (read.user.id === this.#me()) return;
    for (const [seq, item] of this.#bySeq) {
      if (seq <= read.seq && item.dataset.from === this.#me() && !item.classList.contains('seen')) {
        item.classList.add('seen');
        $('.meta', item).textContent = `${$('.meta', item).textContent} · Seen`;
      }
    }
  }

  /** Sends `typing` at most every 3 s while typing, and `false` after 4 s idle. */
  #typing() {
    const now = Date.now();
    if (now - this.#typingSent > 3000) {
      this.#typingSent = now;
      this.#client.typing(this.#room, true);
    }
    clearTimeout(this.#typingTimer);
    this.#typingTimer = setTimeout(() => {
      this.#typingSent = 0;
      this.#client.typing(this.#room, false);
    }, 4000);
  }

  #someoneTyping(frame) {
    if (frame.user.id === this.#me()) return;
    clearTimeout(this.#othersTyping.get(frame.user.id)?.timer);
    if (frame.active) {
      // A lost `typing: false` must not leave the line up for ever.
      const timer = setTimeout(() => this.#someoneTyping({ ...frame, active: false }), 6000);
      this.#othersTyping.set(frame.user.id, { name: frame.user.name, timer });
    } else {
      this.#othersTyping.delete(frame.user.id);
    }
    const names = [...this.#othersTyping.values()].map((t) => t.name);
    this.#typingLine.textContent = names.length ? `${names.join(', ')} ${names.length > 1 ? 'are' : 'is'} typing…` : '';
  }

  #scroll() {
    this.#list.scrollTop = this.#list.scrollHeight;
  }
}

/**
 * Joins a consultation for its chat panel and call, in the order the call
 * needs: camera first, then `join`, then the call in the same turn. Chat
 * opens once joined; an ended consultation stays read-only and has no call.
 * Returns the `joined` frame, the call (null when ended) and the camera's
 * stream, which the page stops (`stopMedia`) when it is done.
 */
export async function joinConsultation(client, room, chat, Call) {
  // A hub with video off says so in `welcome`: no camera, no call. Staff
  // run a consultation without being in its call.
  const video = client.videoEnabled && ['patient', 'doctor'].includes(client.user?.role);
  $('#video').hidden = !video;
  // Only the doctor's page has the switch.
  const switcher = document.querySelector('#switch-media');
  if (switcher) switcher.hidden = !video;
  const stream = video ? await localMedia() : undefined;
  let joined;
  try {
    // From the first message: a join without `since` brings only the
    // newest 50, and the SDK pages forward from wherever it starts.
    joined = await client.join(room, { since: 0 });
  } catch (err) {
    stopMedia(stream);
    throw err;
  }
  if (joined.status === 'ended' || joined.status === 'cancelled') {
    chat.setEnabled(false, 'The consultation has ended');
    stopMedia(stream);
    return { joined, call: null, stream: undefined };
  }
  chat.setEnabled(true);
  const call = video ? startCall(client, room, Call, stream) : null;
  $('#chat-input').focus();
  return { joined, call, stream };
}

/** Turns the camera and microphone off (the light goes out). */
export function stopMedia(stream) {
  stream?.getTracks().forEach((track) => track.stop());
  const local = document.querySelector('#local-video');
  if (local && local.srcObject === stream) local.srcObject = null;
}

/**
 * The camera and microphone, asked for before joining: a call must be
 * listening from the moment the room knows this session, or the other
 * side's first offer would find nobody to answer it.
 */
async function localMedia() {
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
    $('#local-video').srcObject = stream;
    return stream;
  } catch (err) {
    const state = $('#call-state');
    state.textContent = 'Camera or microphone unavailable: chat still works';
    state.dataset.state = 'no-media';
    console.warn('no local media', err);
    return undefined;
  }
}

/**
 * The video part of a consultation: the other side's video, the call
 * state, and the Jitsi fallback. Call it right after `join` resolves, in
 * the same turn, so that no signal arrives before the call listens.
 */
function startCall(client, room, Call, localStream) {
  const stage = $('#video');
  const state = $('#call-state');
  const mode = $('#media-mode');
  const setState = (text, key) => {
    state.textContent = text;
    state.dataset.state = key;
  };
  const call = new Call({ client, room, localStream, jitsiContainer: $('#jitsi') });
  globalThis.telehub.call = call;
  call.on('track', ({ stream, track }) => {
    const video = $('#remote-video');
    video.srcObject = stream ?? new MediaStream([track]);
  });
  // One state per peer: an old link closing after a reconnect, or the
  // links closed on the move to Jitsi, must not say "Call ended" over a
  // call that goes on. The page shows the best of them.
  const peers = new Map();
  const rank = ['closed', 'failed', 'new', 'disconnected', 'connecting', 'connected'];
  call.on('peerstate', ({ session, state: peerState }) => {
    if (peerState === 'closed') peers.delete(session);
    else peers.set(session, peerState);
    if (mode.dataset.mode === 'jitsi') return;
    const peer = [...peers.values()].sort((a, b) => rank.indexOf(b) - rank.indexOf(a))[0] ?? peerState;
    const words = {
      new: 'Calling…',
      connecting: 'Connecting the call…',
      connected: 'Call connected',
      disconnected: 'Call interrupted, reconnecting…',
      failed: 'Call failed',
      closed: 'Call ended',
    };
    setState(words[peer] ?? peer, peer);
  });
  call.on('mode', (m) => {
    mode.dataset.mode = m;
    stage.dataset.mode = m;
    mode.textContent = m === 'jitsi' ? 'Video continues in Jitsi' : 'Direct video';
    // The meeting link belongs to Jitsi mode only.
    if (m === 'p2p') $('#jitsi-link').hidden = true;
  });
  call.on('jitsi', (info) => {
    const link = $('#jitsi-link');
    link.href = info.url;
    link.hidden = false;
    link.dataset.jwt = info.jwt;
  });
  call.on('error', (err) => {
    console.warn('call', err);
    if (mode.dataset.mode === 'jitsi') {
      setState('The video meeting cannot open inside this page: use the link', 'jitsi-unavailable');
    }
  });
  call.start();
  return call;
}
