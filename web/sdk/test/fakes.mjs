// Test doubles for the SDK tests: a fake clock, a fake WebSocket, a small
// fake hub that relays between clients, and a fake RTCPeerConnection that
// models signaling states closely enough for perfect negotiation.
//
// (node --test lists this file too, as a file without tests.)

import { TelehubClient } from '../telehub.js';

/**
 * Lets every pending promise callback run. One macrotask turn drains the
 * whole microtask queue; no real time passes.
 */
export function flush() {
  return new Promise((resolve) => setImmediate(resolve));
}

// ------------------------------------------------------------------ clock

/** Timers that only fire when the test advances the clock. */
export class FakeClock {
  now = 0;
  /** The delay of every timer ever set, in order. */
  delays = [];
  #timers = new Map();
  #nextId = 1;

  setTimeout = (fn, ms = 0) => {
    const id = this.#nextId;
    this.#nextId += 1;
    this.#timers.set(id, { at: this.now + Math.max(0, ms), fn });
    this.delays.push(ms);
    return id;
  };

  clearTimeout = (id) => {
    this.#timers.delete(id);
  };

  /** The number of timers waiting. */
  get pending() {
    return this.#timers.size;
  }

  /** Moves time forward by `ms`, firing due timers in order, each followed by a flush. */
  async advance(ms) {
    const end = this.now + ms;
    await flush();
    for (;;) {
      let nextId = null;
      let next = null;
      for (const [id, timer] of this.#timers) {
        if (timer.at <= end && (next === null || timer.at < next.at)) {
          nextId = id;
          next = timer;
        }
      }
      if (next === null) break;
      this.#timers.delete(nextId);
      this.now = next.at;
      next.fn();
      await flush();
    }
    this.now = end;
  }
}

// ------------------------------------------------------------------ WebSocket

/**
 * A WebSocket class with its own list of instances. The test plays the hub:
 * `welcome`, `receive` and `drop` deliver what a hub would send.
 */
export function socketClass() {
  const sockets = [];
  class FakeWebSocket {
    static CONNECTING = 0;
    static OPEN = 1;
    static CLOSED = 3;

    constructor(url) {
      this.url = url;
      this.readyState = FakeWebSocket.CONNECTING;
      /** Frames the client sent, parsed. */
      this.sent = [];
      /** The client's own close call, if any. */
      this.closedWith = null;
      this.onmessage = null;
      this.onclose = null;
      this.onerror = null;
      sockets.push(this);
    }

    send(data) {
      // Browsers throw when sending on a socket that is still connecting.
      if (this.readyState !== FakeWebSocket.OPEN) throw new Error(`send on a socket in state ${this.readyState}`);
      this.sent.push(JSON.parse(data));
    }

    close(code, reason) {
      this.closedWith = { code, reason };
      this.readyState = FakeWebSocket.CLOSED;
      // A browser reports its own close later; the client must ignore it.
      queueMicrotask(() => this.onclose?.({ code: code ?? 1005, reason: reason ?? '' }));
    }

    // -- the hub's side

    get token() {
      return new URL(this.url).searchParams.get('token');
    }

    welcome(session = 's_1', user = { id: 'u1', name: 'Ana', role: 'doctor' }) {
      this.readyState = FakeWebSocket.OPEN;
      this.receive({ type: 'welcome', session, user, heartbeat_ms: 25000, node: 'node-1', protocol: 1 });
    }

    receive(frame) {
      this.onmessage?.({ data: JSON.stringify(frame) });
    }

    drop(code = 1006, reason = '') {
      this.readyState = FakeWebSocket.CLOSED;
      this.onclose?.({ code, reason });
    }

    /** Frames of one type the client sent. */
    frames(type) {
      return this.sent.filter((frame) => frame.type === type);
    }

    last(type) {
      return this.frames(type).at(-1);
    }
  }
  return { FakeWebSocket, sockets };
}

// ------------------------------------------------------------------ client setup

/**
 * A client on fake sockets and a fake clock. `random` returns 0.5 unless
 * the options say otherwise; client ids are `uuid-1`, `uuid-2`, …
 */
export function setup(options = {}) {
  const clock = new FakeClock();
  const { FakeWebSocket, sockets } = socketClass();
  let ids = 0;
  const client = new TelehubClient({
    url: 'ws://hub.test/v1/ws',
    token: 'tok',
    WebSocket: FakeWebSocket,
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    random: () => 0.5,
    crypto: {
      randomUUID: () => {
        ids += 1;
        return `uuid-${ids}`;
      },
    },
    ...options,
  });
  const env = {
    client,
    clock,
    sockets,
    /** The newest socket. */
    get ws() {
      return sockets.at(-1);
    },
    /** Every event of a type, collected from now on. */
    collect(type) {
      const seen = [];
      client.on(type, (event) => seen.push(event));
      return seen;
    },
  };
  return env;
}

/** Connects and answers with `welcome`. */
export async function connected(env, session = 's_1', user) {
  const welcome = env.client.connect();
  await flush();
  env.ws.welcome(session, user);
  return welcome;
}

/** A `message` frame. */
export function message(room, seq, extra = {}) {
  return {
    type: 'message',
    room,
    seq,
    id: `m_${seq}`,
    client_id: `c_${seq}`,
    from: { id: 'u7', name: 'Budi', role: 'patient' },
    kind: 'text',
    text: `text ${seq}`,
    at: '2026-11-24T10:15:00.123Z',
    ...extra,
  };
}

/** A `joined` reply to a join frame the client sent. */
export function joined(join, { seq = 0, history = [], complete = true, peers = [], media, read } = {}) {
  return {
    ...(read ? { read } : {}),
    type: 'joined',
    ref: join.ref,
    room: join.room,
    status: 'active',
    seq,
    peers,
    history,
    history_complete: complete,
    media: media ?? { mode: 'p2p', ice_servers: [{ urls: ['stun:stun.test:3478'] }] },
  };
}

/** Sends `join` from the client and answers it; returns the joined frame. */
export async function joinRoom(env, room, answer = {}) {
  const joining = env.client.join(room);
  await flush();
  const join = env.ws.last('join');
  env.ws.receive(joined(join, answer));
  return joining;
}

// ------------------------------------------------------------------ fake hub

/**
 * Just enough of the hub to connect two clients in one room: welcome,
 * join/presence, signal relay, media mode. Frames are queued, not delivered
 * at once, so that both sides can act before hearing from each other (this
 * is what makes glare happen); `settle()` delivers until nothing moves.
 */
export class FakeHub {
  /** token -> user */
  users = new Map();
  /** Every frame clients sent: {session, frame}. */
  log = [];
  #sessions = new Map();
  #rooms = new Map();
  #queue = [];
  #count = 0;

  constructor() {
    const hub = this;
    const { FakeWebSocket } = socketClass();
    this.WebSocket = class extends FakeWebSocket {
      constructor(url) {
        super(url);
        hub.#accept(this);
      }

      send(data) {
        super.send(data);
        hub.#onFrame(this.session, this.sent.at(-1));
      }
    };
  }

  /** Delivers queued frames until none are left, letting promises run in between. */
  async settle() {
    for (let turns = 0; turns < 10000; turns += 1) {
      await flush();
      const next = this.#queue.shift();
      if (!next) return;
      if (next.ws.readyState === 1 || next.frame.type === 'welcome') {
        if (next.frame.type === 'welcome') next.ws.readyState = 1;
        next.ws.receive(next.frame);
      }
    }
    throw new Error('the hub never settled');
  }

  /** Frames one session sent, of one type. */
  sentBy(session, type) {
    return this.log.filter((entry) => entry.session === session && entry.frame.type === type).map((entry) => entry.frame);
  }

  #accept(ws) {
    this.#count += 1;
    ws.session = `s_${this.#count}`;
    const user = this.users.get(ws.token);
    this.#sessions.set(ws.session, { ws, user });
    this.#send(ws.session, { type: 'welcome', session: ws.session, user, heartbeat_ms: 25000, node: 'fake', protocol: 1 });
  }

  #send(session, frame) {
    const entry = this.#sessions.get(session);
    if (entry) this.#queue.push({ ws: entry.ws, frame });
  }

  #reply(session, frame, reply) {
    this.#send(session, frame.ref === undefined ? reply : { ...reply, ref: frame.ref });
  }

  #room(name) {
    let room = this.#rooms.get(name);
    if (!room) {
      room = { members: new Set(), mode: 'p2p' };
      this.#rooms.set(name, room);
    }
    return room;
  }

  #peer(session) {
    return { session, user: this.#sessions.get(session).user, state: 'online', since: '2026-11-24T10:00:00.000Z' };
  }

  #onFrame(session, frame) {
    this.log.push({ session, frame });
    switch (frame.type) {
      case 'join': {
        const room = this.#room(frame.room);
        const peers = [...room.members].map((other) => this.#peer(other));
        for (const other of room.members) this.#send(other, { type: 'presence', room: frame.room, event: 'join', peer: this.#peer(session) });
        room.members.add(session);
        this.#reply(session, frame, {
          type: 'joined',
          room: frame.room,
          status: 'active',
          seq: 0,
          peers,
          history: [],
          history_complete: true,
          media: { mode: room.mode, ice_servers: [{ urls: ['stun:stun.test:3478'] }] },
        });
        return;
      }
      case 'signal': {
        const room = this.#room(frame.room);
        if (!room.members.has(frame.to)) {
          this.#reply(session, frame, { type: 'error', code: 'not_found', message: `no session ${frame.to}` });
          return;
        }
        const user = this.#sessions.get(session).user;
        this.#send(frame.to, { type: 'signal', room: frame.room, from: session, user, data: frame.data });
        this.#reply(session, frame, { type: 'ok' });
        return;
      }
      default:
        this.#reply(session, frame, { type: 'ok' });
    }
  }
}

// ------------------------------------------------------------------ fake RTCPeerConnection

/**
 * An RTCPeerConnection class with its own list of instances. It models what
 * perfect negotiation depends on: signaling states with pending and current
 * descriptions, implicit rollback of a local offer by a remote offer,
 * `negotiationneeded` only when stable with no operation running and fired
 * as a task (so after the code that awaited the operation), async
 * operations, `addIceCandidate` refusing without a remote description, one
 * gathered candidate (then null) per ICE generation, and restartIce.
 */
export function peerConnectionClass() {
  const instances = [];
  let count = 0;

  class FakePeerConnection {
    constructor(configuration) {
      count += 1;
      this.id = count;
      this.configuration = configuration;
      this.signalingState = 'stable';
      this.connectionState = 'new';
      /** Every signaling state it went through. */
      this.states = ['stable'];
      /** Remote candidates that were added. */
      this.addedCandidates = [];
      this.restartIceCalls = 0;
      this.closed = false;
      this.onnegotiationneeded = null;
      this.onicecandidate = null;
      this.ontrack = null;
      this.onconnectionstatechange = null;
      this.pendingLocal = null;
      this.currentLocal = null;
      this.pendingRemote = null;
      this.currentRemote = null;
      this.tracks = [];
      this.unnegotiated = new Set();
      this.offered = [];
      this.restartWanted = false;
      this.restartOffered = false;
      this.busy = 0;
      this.negotiationQueued = false;
      this.generation = 0;
      this.gatheredGeneration = -1;
      this.sdpCount = 0;
      instances.push(this);
    }

    get localDescription() {
      return this.pendingLocal ?? this.currentLocal;
    }

    get remoteDescription() {
      return this.pendingRemote ?? this.currentRemote;
    }

    addTrack(track, ...streams) {
      this.tracks.push({ track, streams });
      this.unnegotiated.add(track);
      this.#negotiationMaybeNeeded();
      return { track };
    }

    /** A receive-only transceiver needs negotiating like a track. */
    addTransceiver(kind, init = {}) {
      const transceiver = { kind, direction: init.direction ?? 'sendrecv' };
      this.transceivers = [...(this.transceivers ?? []), transceiver];
      this.unnegotiated.add(transceiver);
      this.#negotiationMaybeNeeded();
      return transceiver;
    }

    restartIce() {
      this.restartIceCalls += 1;
      this.restartWanted = true;
      this.generation += 1;
      this.#negotiationMaybeNeeded();
    }

    async setLocalDescription(description) {
      await this.#operation(() => {
        const type = description?.type ?? (this.signalingState === 'have-remote-offer' ? 'answer' : 'offer');
        if (type === 'rollback') return this.#rollback();
        if (type === 'offer') {
          if (this.signalingState !== 'stable' && this.signalingState !== 'have-local-offer') throw invalidState(`offer in ${this.signalingState}`);
          this.offered = [...this.unnegotiated];
          this.restartOffered = this.restartWanted;
          this.restartWanted = false;
          this.pendingLocal = this.#sdp('offer');
          this.#setState('have-local-offer');
        } else {
          if (this.signalingState !== 'have-remote-offer') throw invalidState(`answer in ${this.signalingState}`);
          this.currentLocal = this.#sdp('answer');
          this.currentRemote = this.pendingRemote;
          this.pendingLocal = null;
          this.pendingRemote = null;
          this.#setState('stable');
        }
        this.#gather();
      });
    }

    async setRemoteDescription(description) {
      await this.#operation(() => {
        const { type } = description;
        if (type === 'rollback') return this.#rollback();
        if (type === 'offer') {
          // A remote offer on top of our own rolls ours back (implicit rollback).
          if (this.signalingState === 'have-local-offer') this.#rollback();
          if (this.signalingState !== 'stable') throw invalidState(`remote offer in ${this.signalingState}`);
          this.pendingRemote = { type, sdp: description.sdp };
          this.#setState('have-remote-offer');
        } else {
          if (this.signalingState !== 'have-local-offer') throw invalidState(`remote answer in ${this.signalingState}`);
          this.currentRemote = { type, sdp: description.sdp };
          this.currentLocal = this.pendingLocal;
          this.pendingLocal = null;
          this.pendingRemote = null;
          for (const track of this.offered) this.unnegotiated.delete(track);
          this.offered = [];
          this.restartOffered = false;
          this.#setState('stable');
        }
      });
    }

    async addIceCandidate(candidate) {
      await this.#operation(() => {
        if (!this.remoteDescription) throw invalidState('no remote description');
        this.addedCandidates.push(candidate);
      });
    }

    close() {
      this.closed = true;
      this.signalingState = 'closed';
      this.connectionState = 'closed';
    }

    // -- the test's side

    /** Changes the connection state and fires the event, as ICE would. */
    setConnectionState(state) {
      this.connectionState = state;
      this.onconnectionstatechange?.({});
    }

    /** A remote track arrives. */
    fireTrack(track, stream) {
      this.ontrack?.({ track, streams: stream ? [stream] : [] });
    }

    // -- internals

    async #operation(body) {
      this.busy += 1;
      try {
        await Promise.resolve(); // operations complete asynchronously
        if (this.closed) throw invalidState('closed');
        body();
      } finally {
        this.busy -= 1;
        this.#negotiationMaybeNeeded();
      }
    }

    #rollback() {
      this.pendingLocal = null;
      this.pendingRemote = null;
      this.offered = [];
      if (this.restartOffered) this.restartWanted = true;
      this.restartOffered = false;
      this.#setState('stable');
    }

    #setState(state) {
      this.signalingState = state;
      this.states.push(state);
    }

    #sdp(type) {
      this.sdpCount += 1;
      return { type, sdp: `v=0\r\no=- ${this.id} ${this.sdpCount} IN IP4 127.0.0.1\r\n` };
    }

    #negotiationMaybeNeeded() {
      if (this.negotiationQueued || this.closed) return;
      this.negotiationQueued = true;
      // A task, as in the spec: code that awaited an operation runs first.
      setImmediate(() => {
        this.negotiationQueued = false;
        const needed = this.unnegotiated.size > 0 || this.restartWanted;
        if (needed && !this.closed && this.busy === 0 && this.signalingState === 'stable') this.onnegotiationneeded?.({});
      });
    }

    #gather() {
      if (this.gatheredGeneration === this.generation) return;
      this.gatheredGeneration = this.generation;
      const init = { candidate: `candidate:${this.id} 1 udp 2122260223 10.0.0.${this.id} 5000${this.generation} typ host`, sdpMid: '0', sdpMLineIndex: 0, usernameFragment: `uf${this.id}g${this.generation}` };
      setImmediate(() => {
        if (this.closed) return;
        this.onicecandidate?.({ candidate: { ...init, toJSON: () => ({ ...init }) } });
        this.onicecandidate?.({ candidate: null });
      });
    }
  }

  return { FakePeerConnection, instances };
}

function invalidState(message) {
  return new DOMException(message, 'InvalidStateError');
}

/** A stand-in for a MediaStream with one audio track. */
export function fakeStream(name) {
  const track = { kind: 'audio', id: `${name}-audio` };
  return { id: name, getTracks: () => [track] };
}
