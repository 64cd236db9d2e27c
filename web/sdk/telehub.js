// Telehub browser SDK: the hub client.
//
// One WebSocket to the hub, speaking protocol version 1 (docs/protocol.md).
// The client does what the protocol asks of every client, so that pages do
// not have to: it matches replies by `ref`, resumes rooms with `since` after
// a reconnect, emits every `seq` once and in order, resends unacknowledged
// chat messages with their original `client_id` (the hub stores each one
// once), and backs off with jitter.
//
// Plain ES module without dependencies. It runs in browsers and in Node 20,
// which has no global WebSocket: pass one in the options there. Types are in
// telehub.d.ts next to this file.

/** @typedef {import('./telehub.js').TelehubClientOptions} TelehubClientOptions */
/** @typedef {import('./telehub.js').ReconnectOptions} ReconnectOptions */
/** @typedef {import('./telehub.js').ConnectionState} ConnectionState */
/** @typedef {import('./telehub.js').ClientFrame} ClientFrame */
/** @typedef {import('./telehub.js').ServerFrame} ServerFrame */
/** @typedef {import('./telehub.js').WelcomeFrame} WelcomeFrame */
/** @typedef {import('./telehub.js').JoinedFrame} JoinedFrame */
/** @typedef {import('./telehub.js').MessageFrame} MessageFrame */
/** @typedef {import('./telehub.js').AckFrame} AckFrame */
/** @typedef {import('./telehub.js').ErrorFrame} ErrorFrame */
/** @typedef {import('./telehub.js').SignalData} SignalData */
/** @typedef {import('./telehub.js').WireCandidate} WireCandidate */
/** @typedef {import('./telehub.js').RoomInfo} RoomInfo */
/** @typedef {import('./telehub.js').MediaMode} MediaMode */
/** @typedef {import('./telehub.js').WebSocketLike} WebSocketLike */
/** @typedef {NonNullable<TelehubClientOptions['crypto']>} CryptoLike */
/** Whatever the injected setTimeout returns. @typedef {unknown} TimerId */

/** Frames that answer a request; they carry the request's `ref`. */
const REPLY_TYPES = new Set(['ok', 'joined', 'left', 'ack', 'queue', 'queue_state', 'pong']);

/** Server frames handed to listeners as they are, under their own type. */
const EVENT_TYPES = new Set([
  'presence', 'typing', 'read', 'signal', 'media_mode', 'ended',
  'queue', 'queue_state', 'called', 'admitted', 'payment',
]);

/** Refusals after which the hub wants the very same frame again. */
const RETRYABLE = new Set(['unavailable', 'rate_limited']);

const CLOSE_NORMAL = 1000;
const CLOSE_ABNORMAL = 1006;
const CLOSE_UNAUTHORIZED = 4001;
const CLOSE_ABUSE = 4008;
const CLOSE_TOO_SLOW = 4009;

/** @type {Required<ReconnectOptions>} */
const DEFAULT_RECONNECT = { minMs: 500, maxMs: 30000, factor: 2, jitter: 0.5 };

// ---------------------------------------------------------------- errors

/**
 * A refusal by the hub (`code` is the protocol's error code) or a failure of
 * the client itself. Client-side codes: `disconnected` (the connection was
 * lost before the reply), `not_connected`, `not_joined`, `closed` (`close()`
 * was called), `left` (the room was left with the request in flight),
 * `token_failed` (`getToken` threw) and `bad_url`.
 */
export class TelehubError extends Error {
  /**
   * @param {string} code the protocol's error code, or a client-side one
   * @param {string} message a short lowercase explanation
   * @param {{retryMs?: number, frame?: ErrorFrame, cause?: unknown}} [details]
   */
  constructor(code, message, details = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'TelehubError';
    /** @type {string} */
    this.code = code;
    /** Milliseconds to wait before trying again (`retry_ms` of `rate_limited`, or of `unavailable` from an overloaded node). @type {number | undefined} */
    this.retryMs = details.retryMs;
    /** The `error` frame, when the hub sent one. @type {ErrorFrame | undefined} */
    this.frame = details.frame;
    /** The renewed subscription (`checkin`, `watch`) it ended, for an `error` event. @type {ClientFrame | undefined} */
    this.request = undefined;
  }

  /**
   * The error an `error` frame stands for.
   * @param {ErrorFrame} frame
   * @returns {TelehubError}
   */
  static fromFrame(frame) {
    return new TelehubError(frame.code, frame.message ?? frame.code, { retryMs: frame.retry_ms, frame });
  }
}

// ---------------------------------------------------------------- events

/**
 * A minimal event emitter: `on` returns its own unsubscribe function. A
 * listener that throws does not stop the others, nor the client that emits:
 * its exception is rethrown on a fresh stack, where the page sees it.
 */
export class Emitter {
  /** @type {Map<string, Set<(event: any) => void>>} */
  #handlers = new Map();

  /**
   * Calls `handler` for every event of `type` until unsubscribed.
   * @param {string} type
   * @param {(event: any) => void} handler
   * @returns {() => void} unsubscribes the handler
   */
  on(type, handler) {
    let set = this.#handlers.get(type);
    if (!set) {
      set = new Set();
      this.#handlers.set(type, set);
    }
    set.add(handler);
    return () => this.off(type, handler);
  }

  /**
   * Removes a handler added with `on`.
   * @param {string} type
   * @param {(event: any) => void} handler
   */
  off(type, handler) {
    this.#handlers.get(type)?.delete(handler);
  }

  /**
   * Calls every handler of `type` with `event`.
   * @param {string} type
   * @param {unknown} event
   */
  emit(type, event) {
    const set = this.#handlers.get(type);
    if (!set) return;
    for (const handler of [...set]) {
      try {
        handler(event);
      } catch (error) {
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }
}

// ---------------------------------------------------------------- helpers

/**
 * Converts an `RTCIceCandidate` (or its init dictionary) to the protocol's
 * snake_case candidate. `null`, which a browser's `icecandidate` event gives
 * when gathering is over, becomes the end-of-candidates marker
 * `{candidate: ""}`.
 * @param {RTCIceCandidate | RTCIceCandidateInit | null | undefined} candidate
 * @returns {WireCandidate}
 */
export function toWireCandidate(candidate) {
  if (candidate == null) return { candidate: '' };
  /** @type {RTCIceCandidateInit} */
  const init = 'toJSON' in candidate && typeof candidate.toJSON === 'function' ? candidate.toJSON() : candidate;
  /** @type {WireCandidate} */
  const wire = { candidate: init.candidate ?? '' };
  if (init.sdpMid != null) wire.sdp_mid = init.sdpMid;
  if (init.sdpMLineIndex != null) wire.sdp_mline_index = init.sdpMLineIndex;
  if (init.usernameFragment != null) wire.username_fragment = init.usernameFragment;
  return wire;
}

/**
 * Converts a protocol candidate back to an `RTCIceCandidateInit` that
 * `RTCPeerConnection.addIceCandidate` takes.
 * @param {WireCandidate} wire
 * @returns {RTCIceCandidateInit}
 */
export function fromWireCandidate(wire) {
  /** @type {RTCIceCandidateInit} */
  const init = {
    candidate: wire.candidate ?? '',
    sdpMid: wire.sdp_mid ?? null,
    sdpMLineIndex: wire.sdp_mline_index ?? null,
  };
  if (wire.username_fragment != null) init.usernameFragment = wire.username_fragment;
  return init;
}

const utf8 = new TextEncoder();

/**
 * Whether `me` is the polite peer towards `other` in perfect negotiation:
 * the hub's rule is that the session id that sorts lower byte by byte is
 * polite. The ids are compared as UTF-8 bytes, as the hub does, rather
 * than with `<` on strings, which compares UTF-16 units.
 * @param {string} me
 * @param {string} other
 * @returns {boolean}
 */
export function isPolite(me, other) {
  const a = utf8.encode(me);
  const b = utf8.encode(other);
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i += 1) {
    if (a[i] !== b[i]) return a[i] < b[i];
  }
  return a.length < b.length;
}

/**
 * The socket URL with the token in `?token=`; a relative `url` is resolved
 * against the page, with its scheme turned into ws: or wss:.
 * @param {string} url
 * @param {string} token
 */
function socketUrl(url, token) {
  let absolute = url;
  if (!/^wss?:\/\//i.test(url) && globalThis.location) {
    const resolved = new URL(url, globalThis.location.href);
    resolved.protocol = resolved.protocol === 'https:' ? 'wss:' : 'ws:';
    absolute = resolved.href;
  }
  const separator = absolute.includes('?') ? '&' : '?';
  return `${absolute}${separator}token=${encodeURIComponent(token)}`;
}

/**
 * A fresh `client_id` for `send`, also where `crypto.randomUUID` is missing
 * (a page served over plain http).
 * @returns {string}
 */
export function newClientId() {
  return uuid(globalThis.crypto);
}

/**
 * A version 4 UUID. `crypto.randomUUID` exists only in secure contexts, so
 * a page served over plain http on a LAN falls back to `getRandomValues`.
 * @param {CryptoLike | undefined} crypto
 */
function uuid(crypto) {
  if (typeof crypto?.randomUUID === 'function') return crypto.randomUUID();
  const b = new Uint8Array(16);
  if (crypto?.getRandomValues) crypto.getRandomValues(b);
  else for (let i = 0; i < 16; i += 1) b[i] = Math.floor(Math.random() * 256);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/**
 * Marks a promise as handled, so that callers who fire and forget (typing
 * indicators, ICE candidates) get no unhandled-rejection report, while
 * callers who await it still see the rejection.
 * @template T
 * @param {Promise<T>} promise
 * @returns {Promise<T>}
 */
function quiet(promise) {
  promise.catch(() => {});
  return promise;
}

/**
 * The `seq` just before the first message of a first `joined` (sent without
 * `since`). That join brings the newest 50 messages, not the whole room, so
 * the first one it brings is where this client's story of the room starts.
 * @param {JoinedFrame} frame
 */
function startOfHistory(frame) {
  const first = frame.history?.[0];
  return first ? first.seq - 1 : frame.seq;
}

// ---------------------------------------------------------------- client state

/**
 * Handlers for the reply to one request, found by its `ref`.
 * @typedef {object} Pending
 * @property {(frame: any) => void} reply the reply frame arrived
 * @property {(error: TelehubError) => void} fail an `error` frame with this ref arrived
 * @property {(error: TelehubError) => void} drop the connection ended first
 */

/**
 * What the client keeps about a room it was asked to join.
 * @typedef {object} Room
 * @property {string} name
 * @property {number | null} lastSeq the highest seq emitted; null before the first `joined`
 * @property {Map<number, MessageFrame>} ahead messages received out of order, by seq
 * @property {boolean} inRoom joined on the current connection
 * @property {boolean} joining a `join` is in flight
 * @property {number} attempt retries of a refused join, for the backoff
 * @property {TimerId | null} retryTimer
 * @property {{resolve: (frame: JoinedFrame) => void, reject: (error: TelehubError) => void}[]} waiters callers of `join()`
 * @property {string | null} status
 * @property {Map<string, import('./telehub.js').Peer>} peers other sessions, by session id
 * @property {import('./telehub.js').MediaInfo | null} media
 */

/**
 * A chat message on its way: kept until acknowledged or refused for good.
 * @typedef {object} SendJob
 * @property {string} room
 * @property {string} text
 * @property {string} clientId
 * @property {string | null} ref the ref of the `chat` frame in flight, if any
 * @property {number} attempt retries so far, for the backoff
 * @property {TimerId | null} retryTimer
 * @property {Promise<AckFrame>} promise
 * @property {(ack: AckFrame) => void} resolve
 * @property {(error: TelehubError) => void} reject
 */

/**
 * @param {string} name
 * @returns {Room}
 */
function newRoom(name) {
  return {
    name,
    lastSeq: null,
    ahead: new Map(),
    inRoom: false,
    joining: false,
    attempt: 0,
    retryTimer: null,
    waiters: [],
    status: null,
    peers: new Map(),
    media: null,
  };
}

// ---------------------------------------------------------------- the client

/**
 * A connection to the Telehub hub that survives reconnects.
 *
 * ```js
 * const client = new TelehubClient({ url: 'wss://hub.example.org/v1/ws', token });
 * client.on('message', (m) => render(m));
 * await client.connect();
 * await client.join('c-1001');
 * await client.send('c-1001', 'Hello doctor');
 * ```
 */
export class TelehubClient {
  #url;
  /** @type {string | undefined} */
  #token;
  #getToken;
  /** @type {new (url: string) => WebSocketLike} */
  #WebSocket;
  /** @type {Required<ReconnectOptions>} */
  #reconnect;
  #pingMs;
  #random;
  #setTimeout;
  #clearTimeout;
  #crypto;
  #events = new Emitter();

  /** @type {ConnectionState} */
  #state = 'idle';
  /** @type {WebSocketLike | null} */
  #ws = null;
  /** @type {WelcomeFrame | null} */
  #welcome = null;
  /** Bumped when the client closes, so that a connect still waiting for `getToken` gives up. */
  #generation = 0;
  /** Bumped by every `welcome`, so that retries planned on an old connection do nothing. */
  #epoch = 0;
  #everOpen = false;
  /** Failed connects since the last `welcome`: the backoff step. */
  #step = 0;
  /** The backoff step the last `welcome` reset; see `#onSocketClosed`. */
  #stepBeforeWelcome = 0;
  /** @type {number | null} `retry_ms` of a `goaway` on this connection */
  #goawayMs = null;
  /** @type {string | null} the message of an `unauthorized` error before a 4001 close */
  #authMessage = null;
  /** @type {TimerId | null} */
  #reconnectTimer = null;
  /** @type {TimerId | null} */
  #pingTimer = null;
  #awaitingPong = false;
  #nextRef = 0;

  /** @type {Map<string, Pending>} requests in flight, by ref */
  #pending = new Map();
  /** @type {Map<string, Room>} rooms to be in, by name */
  #rooms = new Map();
  /** @type {Map<string, SendJob>} unacknowledged messages by client_id, in the order they were sent */
  #sends = new Map();
  /** @type {Set<string>} rooms whose waiting room this patient is checked in to */
  #checkins = new Set();
  /** @type {Set<string>} queues being watched */
  #watches = new Set();
  /** @type {{resolve: (frame: WelcomeFrame) => void, reject: (error: TelehubError) => void}[]} */
  #connectWaiters = [];

  /**
   * @param {TelehubClientOptions} options
   */
  constructor(options) {
    const { url, token, getToken, WebSocket, reconnect, pingMs, random, setTimeout, clearTimeout, crypto } = options ?? {};
    if (!url) throw new TypeError('TelehubClient needs a url');
    if (token === undefined && !getToken) throw new TypeError('TelehubClient needs a token or getToken');
    const Socket = WebSocket ?? globalThis.WebSocket;
    if (typeof Socket !== 'function') throw new TypeError('no WebSocket here: pass one as the WebSocket option');
    this.#url = url;
    this.#token = token;
    this.#getToken = getToken;
    this.#WebSocket = Socket;
    this.#reconnect = { ...DEFAULT_RECONNECT, ...reconnect };
    this.#pingMs = pingMs ?? 0;
    this.#random = random ?? Math.random;
    this.#setTimeout = setTimeout ?? ((fn, ms) => globalThis.setTimeout(fn, ms));
    this.#clearTimeout = clearTimeout ?? ((id) => globalThis.clearTimeout(id));
    this.#crypto = crypto ?? globalThis.crypto;
  }

  // -------------------------------------------------------------- properties

  /** The connection state. @returns {ConnectionState} */
  get state() {
    return this.#state;
  }

  /** This connection's session id, or null while not connected. @returns {string | null} */
  get session() {
    return this.#state === 'open' && this.#welcome ? this.#welcome.session : null;
  }

  /** The user the token names, from the last `welcome`. */
  get user() {
    return this.#welcome?.user ?? null;
  }

  /** Whether the hub has video calls on (`welcome.video`; true until told otherwise). */
  get videoEnabled() {
    return this.#welcome?.video !== false;
  }

  /** The token of the current (or next) connection; assign a new one before `connect()` after a 4001 close. */
  get token() {
    return this.#token;
  }

  set token(value) {
    this.#token = value;
  }

  /** The names of the rooms the client is in or is joining. @returns {string[]} */
  get rooms() {
    return [...this.#rooms.keys()];
  }

  /**
   * What the client knows about a room: whether it is joined on this
   * connection, the last seq emitted, status, other peers and media, as of
   * the last `joined` and the `presence`, `media_mode` and `ended` since.
   * @param {string} name
   * @returns {RoomInfo | undefined}
   */
  roomInfo(name) {
    const room = this.#rooms.get(name);
    if (!room) return undefined;
    return {
      room: name,
      joined: room.inRoom,
      lastSeq: room.lastSeq,
      status: /** @type {RoomInfo['status']} */ (room.status),
      peers: [...room.peers.values()],
      media: room.media,
    };
  }

  // -------------------------------------------------------------- events

  /**
   * Listens to an event (see `TelehubEventMap` in telehub.d.ts).
   * @param {string} type
   * @param {(event: any) => void} handler
   * @returns {() => void} unsubscribes
   */
  on(type, handler) {
    return this.#events.on(type, handler);
  }

  /**
   * Stops listening.
   * @param {string} type
   * @param {(event: any) => void} handler
   */
  off(type, handler) {
    this.#events.off(type, handler);
  }

  // -------------------------------------------------------------- connection

  /**
   * Opens the connection, or waits for the one being opened. Failed attempts
   * are retried with backoff; the promise settles on the next `welcome`, or
   * rejects if the client closes first. After `closed` it starts over and
   * rejoins the rooms it remembers.
   * @returns {Promise<WelcomeFrame>}
   */
  connect() {
    if (this.#state === 'open' && this.#welcome) return Promise.resolve(this.#welcome);
    const promise = new Promise((resolve, reject) => this.#connectWaiters.push({ resolve, reject }));
    if (this.#state === 'idle' || this.#state === 'closed') {
      this.#everOpen = false;
      this.#step = 0;
      this.#setState('connecting');
      this.#dial();
    }
    return /** @type {Promise<WelcomeFrame>} */ (promise);
  }

  /**
   * Closes the connection for good (code 1000): no reconnect. Requests and
   * messages still waiting are rejected with `closed`. Rooms stay
   * remembered, with their last seq, for a later `connect()`.
   */
  close() {
    this.#generation += 1;
    const ws = this.#ws;
    this.#ws = null;
    if (ws) {
      try {
        ws.close(CLOSE_NORMAL, 'bye');
      } catch {
        // A socket that is still connecting may refuse; it is dropped either way.
      }
    }
    this.#shutdown(new TelehubError('closed', 'the client was closed'));
  }

  // -------------------------------------------------------------- requests

  /**
   * Sends a frame with a fresh `ref` and settles with the reply that carries
   * the same `ref` (`ok`, `joined`, `left`, `ack`, `queue`, `queue_state` or
   * `pong`), or rejects with a `TelehubError` for an `error` with that ref,
   * or with `disconnected` if the connection ends first. This is the raw
   * path: it keeps no room state and retries nothing (use `join` and `send`
   * for that).
   * @param {ClientFrame} frame
   * @returns {Promise<any>}
   */
  request(frame) {
    if (this.#state !== 'open') {
      return Promise.reject(new TelehubError('not_connected', 'not connected to the hub'));
    }
    return new Promise((resolve, reject) => {
      this.#write(frame, { reply: resolve, fail: reject, drop: reject });
    });
  }

  /**
   * Joins a room, now or as soon as the client is connected, and keeps it
   * joined across reconnects. History and live messages come as `message`
   * events, each seq once and in order.
   * @param {string} name the consultation id
   * @param {{since?: number}} [options] `since`: the last seq this page already has (for example from storage)
   * @returns {Promise<JoinedFrame>}
   */
  join(name, { since } = {}) {
    if (this.#state === 'closed') return Promise.reject(new TelehubError('closed', 'the client is closed'));
    let room = this.#rooms.get(name);
    if (!room) {
      room = newRoom(name);
      this.#rooms.set(name, room);
    }
    if (since !== undefined && (room.lastSeq === null || since > room.lastSeq)) room.lastSeq = since;
    const target = room;
    const promise = new Promise((resolve, reject) => target.waiters.push({ resolve, reject }));
    this.#sendJoin(room);
    return /** @type {Promise<JoinedFrame>} */ (promise);
  }

  /**
   * Leaves a room and forgets it. Messages still unacknowledged in it and a
   * join in flight are rejected with `left`.
   * @param {string} name
   * @returns {Promise<import('./telehub.js').LeftFrame | null>} the `left` reply, or null when not connected
   */
  async leave(name) {
    const room = this.#rooms.get(name);
    if (room) {
      this.#rooms.delete(name);
      this.#clearTimer(room.retryTimer);
      const error = new TelehubError('left', `left ${name}`);
      for (const waiter of room.waiters.splice(0)) waiter.reject(error);
      this.#rejectSends(name, error);
    }
    if (this.#state !== 'open') return null;
    return this.request({ type: 'leave', room: name });
  }

  /**
   * Sends a chat message and resolves with its `ack` once it is stored.
   * Survives reconnects: the same frame, with the same `client_id`, is sent
   * again after the room is rejoined, and after `unavailable` or
   * `rate_limited`. The hub stores a `client_id` once, so the message is
   * never duplicated. Other refusals reject.
   * @param {string} room
   * @param {string} text
   * @param {{clientId?: string}} [options] `clientId`: defaults to a random UUID
   * @returns {Promise<AckFrame>}
   */
  send(room, text, { clientId } = {}) {
    if (this.#state === 'closed') return Promise.reject(new TelehubError('closed', 'the client is closed'));
    if (!this.#rooms.has(room)) return Promise.reject(new TelehubError('not_joined', `join ${room} first`));
    const id = clientId ?? uuid(this.#crypto);
    const existing = this.#sends.get(id);
    if (existing) return existing.promise;
    /** @type {Partial<SendJob>} */
    const job = { room, text, clientId: id, ref: null, attempt: 0, retryTimer: null };
    job.promise = new Promise((resolve, reject) => {
      job.resolve = resolve;
      job.reject = reject;
    });
    const ready = /** @type {SendJob} */ (job);
    this.#sends.set(id, ready);
    this.#transmit(ready);
    return ready.promise;
  }

  /**
   * Shows or hides this user's typing indicator. Fire and forget: the
   * promise may be ignored.
   * @param {string} room
   * @param {boolean} active
   */
  typing(room, active) {
    return quiet(this.request({ type: 'typing', room, active: Boolean(active) }));
  }

  /**
   * Moves this user's read marker (it never moves backwards). Fire and
   * forget.
   * @param {string} room
   * @param {number} seq
   */
  markRead(room, seq) {
    return quiet(this.request({ type: 'read', room, seq }));
  }

  /**
   * Relays WebRTC signaling to one session of the room. Fire and forget;
   * `not_found` means the target left.
   * @param {string} room
   * @param {string} to the target session id
   * @param {SignalData} data exactly one of `description`, `candidate`, `bye`
   */
  signal(room, to, data) {
    return quiet(this.request({ type: 'signal', room, to, data }));
  }

  /**
   * Reports that this peer's connection failed: the hub switches the room
   * to Jitsi. Fire and forget.
   * @param {string} room
   */
  reportIceFailed(room) {
    return quiet(this.request({ type: 'media', room, event: 'ice_failed' }));
  }

  /**
   * Doctor or staff: asks for a media mode.
   * @param {string} room
   * @param {MediaMode} mode
   */
  setMediaMode(room, mode) {
    return this.request({ type: 'media', room, mode });
  }

  /**
   * Doctor or staff: admits the patient. A consultation with a price is
   * refused (`conflict`) until it is paid, unless staff pass
   * `overridePayment`.
   * @param {string} room
   * @param {{ overridePayment?: boolean }} [options]
   */
  admit(room, options = {}) {
    const frame = { type: 'admit', room };
    if (options.overridePayment) frame.override_payment = true;
    return this.request(frame);
  }

  /**
   * Doctor or staff: ends the consultation.
   * @param {string} room
   */
  end(room) {
    return this.request({ type: 'end', room });
  }

  /**
   * Patient: enters the waiting room of a consultation. Renewed after each
   * reconnect until `admitted` or `ended`; every update comes as a `queue`
   * event.
   * @param {string} room
   * @returns {Promise<import('./telehub.js').QueueFrame>}
   */
  checkin(room) {
    const checkins = this.#checkins;
    return this.#subscribe({ type: 'checkin', room }, () => checkins.has(room), () => checkins.add(room), () => checkins.delete(room));
  }

  /**
   * Doctor, staff or display: follows a queue. Renewed after each
   * reconnect; every update comes as a `queue_state` event.
   * @param {string} queue
   * @returns {Promise<import('./telehub.js').QueueStateFrame>}
   */
  watch(queue) {
    const watches = this.#watches;
    return this.#subscribe({ type: 'watch', queue }, () => watches.has(queue), () => watches.add(queue), () => watches.delete(queue));
  }

  /**
   * An application-level round trip.
   * @returns {Promise<import('./telehub.js').PongFrame>}
   */
  ping() {
    return this.request({ type: 'ping' });
  }

  // -------------------------------------------------------------- internals: socket

  /** @param {ConnectionState} state */
  #setState(state) {
    if (state === this.#state) return;
    this.#state = state;
    this.#events.emit('state', state);
  }

  /** Opens one socket, after asking `getToken` for a fresh token. */
  async #dial() {
    this.#reconnectTimer = null;
    const generation = this.#generation;
    let token = this.#token;
    if (this.#getToken) {
      try {
        token = await this.#getToken();
      } catch (cause) {
        if (generation !== this.#generation) return;
        this.#events.emit('error', new TelehubError('token_failed', 'getToken failed', { cause }));
        this.#scheduleReconnect(this.#nextBackoff());
        return;
      }
      if (generation !== this.#generation) return;
      this.#token = token;
    }
    let ws;
    try {
      ws = new this.#WebSocket(socketUrl(this.#url, token ?? ''));
    } catch (cause) {
      this.#fail(new TelehubError('bad_url', `cannot open a WebSocket to ${this.#url}`, { cause }));
      return;
    }
    this.#ws = ws;
    // Events of a socket that is no longer the current one are stale.
    ws.onmessage = (event) => {
      if (this.#ws === ws) this.#onData(event.data);
    };
    ws.onclose = (event) => {
      if (this.#ws === ws) this.#onSocketClosed(event.code, event.reason);
    };
    // An error event is always followed by a close event, which says more.
    ws.onerror = null;
  }

  /** @param {unknown} data */
  #onData(data) {
    // The hub sends one JSON object per text message; anything else is
    // dropped here rather than allowed to break the session.
    if (typeof data !== 'string') return;
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    if (frame === null || typeof frame !== 'object' || typeof frame.type !== 'string') return;
    this.#onFrame(frame);
  }

  /** @param {ServerFrame} frame */
  #onFrame(frame) {
    switch (frame.type) {
      case 'welcome':
        this.#onWelcome(frame);
        return;
      case 'message':
        this.#onLiveMessage(frame);
        return;
      case 'error':
        this.#onErrorFrame(frame);
        return;
      case 'goaway':
        // The node is going down and closes with 1001 next; the close
        // handler waits `retry_ms` instead of the backoff.
        this.#goawayMs = frame.retry_ms ?? 0;
        this.#events.emit('goaway', frame);
        return;
      default:
        break;
    }
    if (REPLY_TYPES.has(frame.type) && 'ref' in frame && frame.ref !== undefined) this.#settle(frame);
    if (EVENT_TYPES.has(frame.type)) {
      this.#track(frame);
      this.#events.emit(frame.type, frame);
    }
  }

  /** @param {WelcomeFrame} frame */
  #onWelcome(frame) {
    this.#welcome = frame;
    this.#epoch += 1;
    this.#everOpen = true;
    this.#stepBeforeWelcome = this.#step;
    this.#step = 0;
    this.#goawayMs = null;
    this.#authMessage = null;
    this.#setState('open');
    for (const waiter of this.#connectWaiters.splice(0)) waiter.resolve(frame);
    this.#events.emit('welcome', frame);
    this.#startPing();
    this.#resume();
  }

  /**
   * Picks up where the last connection stopped: every room is joined again
   * with `since`, then the waiting-room subscriptions are renewed. Unacked
   * messages go out once their room is joined (see `#onJoined`).
   */
  #resume() {
    for (const room of this.#rooms.values()) this.#sendJoin(room);
    for (const room of this.#checkins) this.#renew({ type: 'checkin', room }, () => this.#checkins.has(room), () => this.#checkins.delete(room));
    for (const queue of this.#watches) this.#renew({ type: 'watch', queue }, () => this.#watches.has(queue), () => this.#watches.delete(queue));
  }

  /**
   * @param {number} code
   * @param {string} [reason]
   */
  #onSocketClosed(code, reason) {
    this.#ws = null;
    this.#stopPing();
    this.#dropConnection(new TelehubError('disconnected', `the connection was lost (${code}${reason ? ` ${reason}` : ''})`));
    if (code === CLOSE_UNAUTHORIZED) {
      if (!this.#getToken) {
        this.#fail(new TelehubError('unauthorized', this.#authMessage ?? 'the token expired or was refused'));
        return;
      }
      // A token that ran out is no fault of the network: get a fresh one now.
      this.#scheduleReconnect(0);
      return;
    }
    if (this.#goawayMs !== null) {
      const delay = this.#goawayDelay(this.#goawayMs);
      this.#goawayMs = null; // only for this close; failed attempts after it back off as usual
      this.#scheduleReconnect(delay);
      return;
    }
    if (code === CLOSE_ABUSE || code === CLOSE_TOO_SLOW) {
      // The connection had its welcome, which reset the backoff, yet the hub
      // threw it out: count it as a failure, so that a client that keeps
      // being thrown out keeps backing off.
      this.#step = Math.max(this.#step, this.#stepBeforeWelcome);
    }
    this.#scheduleReconnect(this.#nextBackoff());
  }

  /** @param {number} delay */
  #scheduleReconnect(delay) {
    this.#setState(this.#everOpen ? 'reconnecting' : 'connecting');
    this.#reconnectTimer = this.#setTimeout(() => this.#dial(), delay);
  }

  /** The delay before the next connect attempt; each call goes one step further. */
  #nextBackoff() {
    const delay = this.#backoff(this.#step);
    this.#step += 1;
    return delay;
  }

  /**
   * Exponential backoff with jitter: `base = min(maxMs, minMs * factor^attempt)`
   * and the delay is drawn from `[base * (1 - jitter), base]`. jitter 1 is
   * full jitter; 0.5 keeps half of the wait fixed.
   * @param {number} attempt
   */
  #backoff(attempt) {
    const { minMs, maxMs, factor, jitter } = this.#reconnect;
    const base = Math.min(maxMs, minMs * factor ** attempt);
    const spread = Math.min(1, Math.max(0, jitter));
    return base * (1 - spread) + base * spread * this.#random();
  }

  /**
   * `retry_ms` of a `goaway`, plus jitter so that a whole clinic does not
   * come back in the same millisecond.
   * @param {number} retryMs
   */
  #goawayDelay(retryMs) {
    const spread = Math.max(retryMs, this.#reconnect.minMs) * Math.min(1, Math.max(0, this.#reconnect.jitter));
    return retryMs + spread * this.#random();
  }

  /**
   * Forgets everything that belonged to the connection that ended: replies
   * still awaited, room membership, retries planned on it. What must
   * survive (rooms, unacked messages, waiting-room subscriptions) is kept
   * for `#resume`.
   * @param {TelehubError} error given to requests that cannot survive
   */
  #dropConnection(error) {
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const room of this.#rooms.values()) {
      room.inRoom = false;
      room.joining = false;
      room.retryTimer = this.#clearTimer(room.retryTimer);
    }
    for (const job of this.#sends.values()) {
      job.ref = null;
      job.retryTimer = this.#clearTimer(job.retryTimer);
    }
    for (const handlers of pending) handlers.drop(error);
  }

  /**
   * Ends the client: state `closed`, nothing left waiting.
   * @param {TelehubError} error the reason given to everything still waiting
   */
  #shutdown(error) {
    this.#reconnectTimer = this.#clearTimer(this.#reconnectTimer);
    this.#stopPing();
    this.#dropConnection(error);
    for (const room of this.#rooms.values()) {
      for (const waiter of room.waiters.splice(0)) waiter.reject(error);
    }
    for (const job of [...this.#sends.values()]) this.#finishSend(job, error);
    for (const waiter of this.#connectWaiters.splice(0)) waiter.reject(error);
    this.#setState('closed');
  }

  /**
   * A problem the client cannot get over by itself: it closes, then tells.
   * @param {TelehubError} error
   */
  #fail(error) {
    this.#generation += 1;
    this.#shutdown(error);
    this.#events.emit('error', error);
  }

  // -------------------------------------------------------------- internals: requests

  /**
   * Writes a frame with a fresh ref and registers what to do with its reply.
   * Only called while open.
   * @param {ClientFrame} frame
   * @param {Pending} handlers
   * @returns {string} the ref
   */
  #write(frame, handlers) {
    this.#nextRef += 1;
    const ref = `r${this.#nextRef}`;
    this.#pending.set(ref, handlers);
    /** @type {WebSocketLike} */ (this.#ws).send(JSON.stringify({ ...frame, ref }));
    return ref;
  }

  /** @param {ServerFrame & {ref?: string}} frame */
  #settle(frame) {
    const handlers = this.#pending.get(/** @type {string} */ (frame.ref));
    if (!handlers) return;
    this.#pending.delete(/** @type {string} */ (frame.ref));
    handlers.reply(frame);
  }

  /** @param {ErrorFrame} frame */
  #onErrorFrame(frame) {
    const error = TelehubError.fromFrame(frame);
    const handlers = frame.ref === undefined ? undefined : this.#pending.get(frame.ref);
    if (handlers) {
      this.#pending.delete(/** @type {string} */ (frame.ref));
      handlers.fail(error);
      return;
    }
    if (frame.code === 'unauthorized') {
      // The 4001 close that follows decides what happens (a new token, or
      // the end); remember why for the error reported then.
      this.#authMessage = frame.message;
      return;
    }
    if (frame.ref === undefined && frame.code === 'unavailable' && this.#followAgain(frame)) return;
    this.#events.emit('error', error);
  }

  /**
   * A notice that a room or queue this client follows stopped in the hub
   * (a fault there): the room is joined again with `since`, the checkin or
   * watch renewed, as after a reconnect. Whether it named one it follows.
   * @param {ErrorFrame} frame
   */
  #followAgain(frame) {
    let followed = false;
    const { room, queue } = frame;
    const joined = room === undefined ? undefined : this.#rooms.get(room);
    if (joined) {
      // A message in flight to the room that stopped may never be
      // answered: it goes again, with its client_id, once the room is
      // joined again (stored once whatever became of the first); should
      // the first be answered after all, the answer is let pass.
      joined.inRoom = false;
      const ignore = { reply: () => {}, fail: () => {}, drop: () => {} };
      for (const job of this.#sends.values()) {
        if (job.room === room && job.ref !== null) {
          this.#pending.set(job.ref, ignore);
          job.ref = null;
        }
      }
      this.#sendJoin(joined);
      followed = true;
    }
    if (room !== undefined && this.#checkins.has(room)) {
      this.#renew({ type: 'checkin', room }, () => this.#checkins.has(room), () => this.#checkins.delete(room));
      followed = true;
    }
    if (queue !== undefined && this.#watches.has(queue)) {
      this.#renew({ type: 'watch', queue }, () => this.#watches.has(queue), () => this.#watches.delete(queue));
      followed = true;
    }
    return followed;
  }

  /**
   * A subscription, renewed after every reconnect from the moment it is
   * asked for: one whose reply a dropped connection took away is sent again
   * with the rest (its updates then come as events; the promise rejects
   * with `disconnected`). Refusals go as in `#sendSubscription`.
   * @param {ClientFrame} frame
   * @param {() => boolean} wanted whether the subscription still stands
   * @param {() => void} remember
   * @param {() => void} forget
   */
  #subscribe(frame, wanted, remember, forget) {
    if (this.#state !== 'open') {
      return Promise.reject(new TelehubError('not_connected', 'not connected to the hub'));
    }
    remember();
    return new Promise((resolve, reject) => {
      const lost = (error) => reject(error ?? new TelehubError('disconnected', 'the connection was lost before the reply'));
      this.#sendSubscription(frame, { wanted, forget, reply: resolve, refused: reject, lost });
    });
  }

  /**
   * Sends a waiting-room subscription again after a reconnect. A refusal
   * that ends it is reported as an `error` event naming it, as nobody
   * awaits it.
   * @param {ClientFrame} frame
   * @param {() => boolean} wanted whether the subscription still stands
   * @param {() => void} forget
   */
  #renew(frame, wanted, forget) {
    const refused = (error) => {
      // Says which subscription ended, so that a page can act on it (a
      // patient admitted while offline: `conflict` on checkin).
      error.request = frame;
      this.#events.emit('error', error);
    };
    this.#sendSubscription(frame, { wanted, forget, reply: () => {}, refused, lost: () => {} });
  }

  /**
   * Sends a subscription (`checkin`, `watch`). `unavailable` and
   * `rate_limited` are tried again on the same connection while it is
   * wanted; any other refusal forgets it and goes to `refused`; a
   * connection that drops (or a subscription no longer wanted) goes to
   * `lost`, and the reconnect renews what is still wanted.
   * @param {ClientFrame} frame
   * @param {{wanted: () => boolean, forget: () => void, reply: (frame: ServerFrame) => void,
   *   refused: (error: TelehubError) => void, lost: (error?: TelehubError) => void}} how
   * @param {number} [attempt]
   */
  #sendSubscription(frame, how, attempt = 0) {
    const epoch = this.#epoch;
    this.#write(frame, {
      reply: how.reply,
      fail: (error) => {
        if (!how.wanted()) return how.lost(error);
        if (!RETRYABLE.has(error.code)) {
          how.forget();
          return how.refused(error);
        }
        this.#setTimeout(() => {
          if (this.#epoch === epoch && this.#state === 'open' && how.wanted()) this.#sendSubscription(frame, how, attempt + 1);
          else how.lost();
        }, error.retryMs ?? this.#backoff(attempt));
      },
      drop: how.lost,
    });
  }

  /**
   * Updates what the client knows of a room from a live event.
   * @param {ServerFrame} frame
   */
  #track(frame) {
    const room = 'room' in frame ? this.#rooms.get(frame.room) : undefined;
    switch (frame.type) {
      case 'presence':
        if (!room || !frame.peer) break;
        if (frame.event === 'join') room.peers.set(frame.peer.session, frame.peer);
        else room.peers.delete(frame.peer.session);
        break;
      case 'media_mode':
        if (room) room.media = { ice_servers: [], ...room.media, mode: frame.mode, jitsi: frame.jitsi };
        break;
      case 'ended':
        if (room) room.status = 'ended';
        this.#checkins.delete(frame.room);
        break;
      case 'admitted':
        // Admitted patients have left the queue: no more checkin renewals.
        if (room) room.status = 'active';
        this.#checkins.delete(frame.room);
        break;
      default:
        break;
    }
  }

  // -------------------------------------------------------------- internals: rooms and messages

  /**
   * Sends a `join` for the room unless one is in flight, with `since` set to
   * the last seq emitted.
   * @param {Room} room
   */
  #sendJoin(room) {
    if (room.joining || this.#state !== 'open') return;
    room.retryTimer = this.#clearTimer(room.retryTimer);
    room.joining = true;
    /** @type {ClientFrame} */
    const frame = { type: 'join', room: room.name };
    if (room.lastSeq !== null) frame.since = room.lastSeq;
    this.#write(frame, {
      reply: (joined) => this.#onJoined(room, joined),
      fail: (error) => this.#onJoinRefused(room, error),
      drop: () => {
        room.joining = false;
      },
    });
  }

  /**
   * @param {Room} room
   * @param {JoinedFrame} frame
   */
  #onJoined(room, frame) {
    room.joining = false;
    if (this.#rooms.get(room.name) !== room) return; // left while joining
    room.inRoom = true;
    room.attempt = 0;
    room.status = frame.status;
    room.media = frame.media;
    room.peers = new Map((frame.peers ?? []).map((peer) => [peer.session, peer]));
    if (room.lastSeq === null) room.lastSeq = startOfHistory(frame);
    const before = room.lastSeq;
    this.#events.emit('joined', frame);
    for (const item of frame.history ?? []) {
      if (item.type === 'message') this.#accept(room, item);
    }
    // Read markers as they stand, after the messages they refer to, so
    // that a page shows its receipts again after a reload.
    for (const mark of frame.read ?? []) {
      this.#events.emit('read', { type: 'read', room: room.name, user: mark.user, seq: mark.seq });
    }
    if (room.lastSeq < frame.seq) {
      if (frame.history_complete === false && room.lastSeq > before) {
        // More than one page was missed: ask for the next page. Live
        // messages wait in `ahead` until it is there.
        this.#sendJoin(room);
      } else {
        // The hub says everything up to frame.seq was sent, yet something
        // is missing: believe it rather than hold live messages back forever.
        this.#skipTo(room, frame.seq);
      }
    }
    for (const waiter of room.waiters.splice(0)) waiter.resolve(frame);
    this.#flushSends(room);
  }

  /**
   * @param {Room} room
   * @param {TelehubError} error
   */
  #onJoinRefused(room, error) {
    room.joining = false;
    if (this.#rooms.get(room.name) !== room) return;
    if (RETRYABLE.has(error.code)) {
      const delay = error.retryMs ?? this.#backoff(room.attempt);
      room.attempt += 1;
      room.retryTimer = this.#setTimeout(() => {
        room.retryTimer = null;
        this.#sendJoin(room);
      }, delay);
      return;
    }
    // Refused for good (no such room, no access): forget the room.
    this.#rooms.delete(room.name);
    const awaited = room.waiters.length > 0;
    for (const waiter of room.waiters.splice(0)) waiter.reject(error);
    this.#rejectSends(room.name, error);
    // A rejoin after a reconnect has nobody awaiting it: report it.
    if (!awaited) this.#events.emit('error', error);
  }

  /** @param {MessageFrame} frame */
  #onLiveMessage(frame) {
    const room = this.#rooms.get(frame.room);
    if (!room || room.lastSeq === null || !Number.isInteger(frame.seq)) return;
    this.#accept(room, frame);
    // Live messages come in order with no gap while connected; a gap means
    // something was missed, and a join with `since` brings it.
    if (room.ahead.size > 0) this.#sendJoin(room);
  }

  /**
   * Takes a message from history or live. Each seq is emitted once, in
   * order: older ones than the last emitted are repeats, later ones wait in
   * `ahead` until the ones before them are there. Seqs are unique and
   * gapless per room, so the seq alone identifies a message here.
   * @param {Room} room
   * @param {MessageFrame} message
   */
  #accept(room, message) {
    const last = /** @type {number} */ (room.lastSeq);
    if (message.seq <= last || room.ahead.has(message.seq)) return;
    room.ahead.set(message.seq, message);
    this.#drain(room);
  }

  /**
   * Emits the messages in `ahead` that now follow on from the last one.
   * @param {Room} room
   */
  #drain(room) {
    let next = /** @type {number} */ (room.lastSeq) + 1;
    while (room.ahead.has(next)) {
      const message = /** @type {MessageFrame} */ (room.ahead.get(next));
      room.ahead.delete(next);
      room.lastSeq = next;
      this.#events.emit('message', message);
      next += 1;
    }
  }

  /**
   * @param {Room} room
   * @param {number} seq
   */
  #skipTo(room, seq) {
    room.lastSeq = seq;
    for (const key of room.ahead.keys()) if (key <= seq) room.ahead.delete(key);
    this.#drain(room);
  }

  // -------------------------------------------------------------- internals: sending chat

  /**
   * Sends a message's `chat` frame if its room is joined on this connection;
   * otherwise `#flushSends` sends it once the room is.
   * @param {SendJob} job
   */
  #transmit(job) {
    const room = this.#rooms.get(job.room);
    if (this.#state !== 'open' || !room?.inRoom) return;
    job.ref = this.#write(
      { type: 'chat', room: job.room, client_id: job.clientId, text: job.text },
      {
        reply: (ack) => {
          if (this.#sends.get(job.clientId) === job) this.#finishSend(job, null, ack);
        },
        fail: (error) => this.#onSendRefused(job, error),
        drop: () => {
          job.ref = null;
        },
      },
    );
  }

  /**
   * @param {SendJob} job
   * @param {TelehubError} error
   */
  #onSendRefused(job, error) {
    job.ref = null;
    if (this.#sends.get(job.clientId) !== job) return;
    if (!RETRYABLE.has(error.code)) {
      this.#finishSend(job, error);
      return;
    }
    if (error.code === 'unavailable') {
      // Either storage failed or the room restarted; after a restart the hub
      // wants a join again before it takes messages, and a repeated join is
      // harmless otherwise.
      const room = this.#rooms.get(job.room);
      if (room) this.#sendJoin(room);
    }
    const delay = error.retryMs ?? this.#backoff(job.attempt);
    job.attempt += 1;
    job.retryTimer = this.#setTimeout(() => {
      job.retryTimer = null;
      this.#transmit(job);
    }, delay);
  }

  /**
   * Sends the room's unacknowledged messages that are not in flight and not
   * waiting for a retry, in the order they were first sent.
   * @param {Room} room
   */
  #flushSends(room) {
    for (const job of this.#sends.values()) {
      if (job.room === room.name && job.ref === null && job.retryTimer === null) this.#transmit(job);
    }
  }

  /**
   * Settles a message for good, exactly once.
   * @param {SendJob} job
   * @param {TelehubError | null} error
   * @param {AckFrame} [ack]
   */
  #finishSend(job, error, ack) {
    this.#sends.delete(job.clientId);
    job.retryTimer = this.#clearTimer(job.retryTimer);
    if (error) job.reject(error);
    else job.resolve(/** @type {AckFrame} */ (ack));
  }

  /**
   * @param {string} room
   * @param {TelehubError} error
   */
  #rejectSends(room, error) {
    for (const job of [...this.#sends.values()]) if (job.room === room) this.#finishSend(job, error);
  }

  // -------------------------------------------------------------- internals: timers

  /**
   * With `pingMs`, a `ping` goes out every pingMs; a ping still unanswered
   * at the next tick means the connection is dead even if the socket has not
   * noticed (a laptop waking up, a NAT that forgot us).
   */
  #startPing() {
    this.#stopPing();
    if (!this.#pingMs) return;
    this.#awaitingPong = false;
    this.#pingTimer = this.#setTimeout(() => this.#pingTick(), this.#pingMs);
  }

  #pingTick() {
    this.#pingTimer = null;
    if (this.#state !== 'open' || !this.#ws) return;
    if (this.#awaitingPong) {
      this.#abandonSocket('no pong');
      return;
    }
    this.#awaitingPong = true;
    const ws = this.#ws;
    // Any answer, even a refusal such as rate_limited, shows the link is alive.
    const alive = () => {
      if (this.#ws === ws) this.#awaitingPong = false;
    };
    this.#write({ type: 'ping' }, { reply: alive, fail: alive, drop: () => {} });
    this.#pingTimer = this.#setTimeout(() => this.#pingTick(), this.#pingMs);
  }

  #stopPing() {
    this.#pingTimer = this.#clearTimer(this.#pingTimer);
  }

  /**
   * Gives up on a socket that stopped answering: close it and go on as if it
   * had dropped, without waiting for a close handshake that may never come.
   * @param {string} reason
   */
  #abandonSocket(reason) {
    const ws = this.#ws;
    this.#ws = null;
    try {
      ws?.close(CLOSE_NORMAL, reason);
    } catch {
      // Closing a broken socket may throw; it is abandoned either way.
    }
    this.#onSocketClosed(CLOSE_ABNORMAL, reason);
  }

  /**
   * @param {TimerId | null} timer
   * @returns {null}
   */
  #clearTimer(timer) {
    if (timer !== null) this.#clearTimeout(timer);
    return null;
  }
}
