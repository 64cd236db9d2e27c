// Telehub browser SDK: a WebRTC call over a TelehubClient.
//
// One RTCPeerConnection per other session of the room that takes part in
// calls (patients and doctors; staff and displays never do). Offers and
// answers follow the W3C "perfect negotiation" example, with the hub's rule
// for who is polite: the session id that sorts lower, byte by byte. Both
// sides add their tracks as soon as they meet, so both make an offer at once
// ("glare"), and perfect negotiation settles it: the impolite side ignores
// the colliding offer, the polite side rolls its own back.
//
// When the room's media mode turns to `jitsi` (ICE failed, the doctor asked,
// or too many callers), the peer connections close and the call continues in
// the Jitsi meeting the hub names.

import { Emitter, TelehubError, fromWireCandidate, isPolite, toWireCandidate } from './telehub.js';

/** @typedef {import('./telehub.js').TelehubClient} TelehubClient */
/** @typedef {import('./telehub.js').CallOptions} CallOptions */
/** @typedef {import('./telehub.js').JitsiInfo} JitsiInfo */
/** @typedef {import('./telehub.js').MediaMode} MediaMode */
/** @typedef {import('./telehub.js').Peer} Peer */
/** @typedef {import('./telehub.js').User} User */
/** @typedef {import('./telehub.js').SignalData} SignalData */
/** @typedef {import('./telehub.js').SignalFrame} SignalFrame */
/** @typedef {import('./telehub.js').JoinedFrame} JoinedFrame */
/** Whatever the injected setTimeout returns. @typedef {unknown} TimerId */

/** Roles that take part in calls; staff and displays never do. */
const CALLING_ROLES = new Set(['patient', 'doctor']);

/** How long a connection may stay failed or disconnected before the hub hears of it. */
const DEFAULT_FAIL_TIMEOUT_MS = 10000;

/**
 * Errors of `signal` that only mean the peer, the connection or the
 * consultation went away (`conflict`: it ended, as a `bye` on hanging up
 * after `ended` hears).
 */
const GONE = new Set(['not_found', 'not_connected', 'disconnected', 'closed', 'left', 'conflict']);

/** Refusals worth sending the same frame again for (`retry_ms`, or a short backoff). */
const RETRY = new Set(['unavailable', 'rate_limited']);

/** How often a refused signal or ICE report is sent again before it is given up. */
const MAX_RETRIES = 4;

/**
 * One peer connection and its perfect-negotiation state.
 * @typedef {object} Link
 * @property {string} session the remote session id
 * @property {RTCPeerConnection} pc
 * @property {boolean} polite
 * @property {boolean} makingOffer
 * @property {boolean} ignoreOffer
 * @property {{candidate: RTCIceCandidateInit, ignoring: boolean}[]} held
 *   candidates that came before the remote description; `ignoring` tells
 *   whether an offer was being ignored when they came
 * @property {Promise<void>} queue incoming signals, handled one at a time
 * @property {boolean} restarted `restartIce()` was tried since the last `connected`
 * @property {TimerId | null} failTimer
 */

/**
 * A WebRTC call in one consultation room.
 *
 * ```js
 * const call = new Call({ client, room: 'c-1001', localStream });
 * call.on('track', ({ session, stream }) => show(session, stream));
 * call.start();
 * ```
 */
export class Call {
  /** @type {TelehubClient} */
  #client;
  #room;
  /** @type {MediaStream | undefined} */
  #localStream;
  #RTCPeerConnection;
  /** @type {RTCIceServer[] | undefined} */
  #iceServers;
  /** @type {HTMLElement | undefined} */
  #jitsiContainer;
  #loadJitsi;
  #failTimeoutMs;
  #setTimeout;
  #clearTimeout;
  #events = new Emitter();

  /** @type {Map<string, Link>} */
  #links = new Map();
  /** @type {(() => void)[]} */
  #unsubscribe = [];
  /** @type {MediaMode | null} */
  #mode = null;
  /** @type {string | null} our session id when the links were made */
  #session = null;
  /** Whether the hub was told of an ICE failure since the last switch to p2p. */
  #reported = false;
  /** @type {{dispose?: () => void} | null} what the Jitsi embedding returned */
  #jitsi = null;
  /** Bumped whenever Jitsi is left, so that an embedding still loading is thrown away. */
  #jitsiTurn = 0;

  /**
   * @param {CallOptions} options
   */
  constructor(options) {
    const { client, room, localStream, RTCPeerConnection, iceServers, jitsiContainer, loadJitsi, failTimeoutMs, setTimeout, clearTimeout } = options ?? {};
    if (!client || !room) throw new TypeError('Call needs a client and a room');
    const PeerConnection = RTCPeerConnection ?? globalThis.RTCPeerConnection;
    if (typeof PeerConnection !== 'function') throw new TypeError('no RTCPeerConnection here: pass one as the RTCPeerConnection option');
    this.#client = client;
    this.#room = room;
    this.#localStream = localStream;
    this.#RTCPeerConnection = PeerConnection;
    this.#iceServers = iceServers;
    this.#jitsiContainer = jitsiContainer;
    this.#loadJitsi = loadJitsi;
    this.#failTimeoutMs = failTimeoutMs ?? DEFAULT_FAIL_TIMEOUT_MS;
    this.#setTimeout = setTimeout ?? ((fn, ms) => globalThis.setTimeout(fn, ms));
    this.#clearTimeout = clearTimeout ?? ((id) => globalThis.clearTimeout(id));
  }

  /** The current media mode, or null before `start()` and after `hangup()`. @returns {MediaMode | null} */
  get mode() {
    return this.#mode;
  }

  /** The remote sessions with a peer connection. @returns {string[]} */
  get sessions() {
    return [...this.#links.keys()];
  }

  /**
   * The peer connection to one remote session, for stats or extra tracks.
   * @param {string} session
   * @returns {RTCPeerConnection | undefined}
   */
  peerConnection(session) {
    return this.#links.get(session)?.pc;
  }

  /**
   * Listens to an event: `track`, `peerstate`, `jitsi`, `mode` or `error`.
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

  /**
   * Starts calling everyone in the room who takes part in calls, and
   * answers whoever calls. The client must have joined the room.
   */
  start() {
    if (this.#mode !== null) return;
    const info = this.#client.roomInfo(this.#room);
    if (!info?.joined) throw new TelehubError('not_joined', `join ${this.#room} before starting a call`);
    const role = this.#client.user?.role;
    if (!role || !CALLING_ROLES.has(role)) throw new TelehubError('forbidden', `a ${role ?? 'guest'} takes no part in calls`);
    const client = this.#client;
    this.#unsubscribe = [
      client.on('signal', (frame) => this.#onSignal(frame)),
      client.on('presence', (frame) => this.#onPresence(frame)),
      client.on('media_mode', (frame) => {
        if (frame.room === this.#room) this.#switchTo(frame.mode, frame.jitsi);
      }),
      client.on('joined', (frame) => this.#onJoined(frame)),
      client.on('ended', (frame) => {
        if (frame.room === this.#room) this.#stop(false);
      }),
    ];
    this.#session = client.session;
    this.#switchTo(info.media?.mode ?? 'p2p', info.media?.jitsi, info.peers);
  }

  /**
   * Hangs up: says `bye` to every peer, closes the peer connections and
   * leaves Jitsi. The local stream is the page's: its tracks keep running.
   */
  hangup() {
    this.#stop(true);
  }

  // -------------------------------------------------------------- modes

  /**
   * @param {MediaMode} mode
   * @param {JitsiInfo | undefined} jitsi
   * @param {Peer[]} [peers] who to call in p2p; by default the client's current view of the room
   */
  #switchTo(mode, jitsi, peers) {
    if (mode === this.#mode) return;
    if (mode === 'jitsi') this.#enterJitsi(jitsi);
    else this.#enterP2p(peers ?? this.#client.roomInfo(this.#room)?.peers ?? []);
  }

  /** @param {Peer[]} peers */
  #enterP2p(peers) {
    this.#leaveJitsi();
    this.#mode = 'p2p';
    this.#reported = false;
    this.#events.emit('mode', 'p2p');
    for (const peer of peers) this.#link(peer.session, peer.user);
  }

  /** @param {JitsiInfo | undefined} info */
  #enterJitsi(info) {
    // No bye: every session gets the same media_mode and closes its side.
    for (const session of [...this.#links.keys()]) this.#unlink(session);
    this.#mode = 'jitsi';
    this.#events.emit('mode', 'jitsi');
    if (!info) {
      this.#events.emit('error', new TelehubError('unavailable', 'the room switched to jitsi but the hub sent no jitsi access'));
      return;
    }
    this.#events.emit('jitsi', info);
    this.#embedJitsi(info);
  }

  /** @param {JitsiInfo} info */
  async #embedJitsi(info) {
    const turn = this.#jitsiTurn;
    try {
      let handle;
      if (this.#loadJitsi) handle = await this.#loadJitsi(info, this.#jitsiContainer);
      else if (this.#jitsiContainer) handle = await embedJitsi(info, this.#jitsiContainer);
      else return; // the page handles the `jitsi` event itself
      if (turn !== this.#jitsiTurn) {
        handle?.dispose?.(); // left Jitsi while it was loading
        return;
      }
      this.#jitsi = handle ?? null;
    } catch (error) {
      if (turn === this.#jitsiTurn) this.#events.emit('error', error);
    }
  }

  #leaveJitsi() {
    this.#jitsiTurn += 1;
    this.#jitsi?.dispose?.();
    this.#jitsi = null;
  }

  /**
   * Ends the call on this side.
   * @param {boolean} bye whether to tell the peers
   */
  #stop(bye) {
    for (const off of this.#unsubscribe.splice(0)) off();
    for (const session of [...this.#links.keys()]) {
      if (bye) this.#signal(session, { bye: true });
      this.#unlink(session);
    }
    this.#leaveJitsi();
    this.#mode = null;
  }

  // -------------------------------------------------------------- who is in the call

  /** @param {import('./telehub.js').PresenceFrame} frame */
  #onPresence(frame) {
    if (frame.room !== this.#room || this.#mode !== 'p2p') return;
    if (frame.event === 'join') this.#link(frame.peer.session, frame.peer.user);
    else this.#unlink(frame.peer.session);
  }

  /**
   * A (re)join of the room, after a reconnect for instance: our session id
   * may have changed, and with it every pairing, so the links follow the
   * joined frame's view of the room.
   * @param {JoinedFrame} frame
   */
  #onJoined(frame) {
    if (frame.room !== this.#room) return;
    const session = this.#client.session;
    if (session !== this.#session) {
      // The others closed their side when our old session left.
      for (const peer of [...this.#links.keys()]) this.#unlink(peer);
      this.#session = session;
    }
    if (frame.media.mode !== this.#mode) {
      this.#switchTo(frame.media.mode, frame.media.jitsi, frame.peers);
      return;
    }
    if (this.#mode !== 'p2p') return;
    const present = new Set(frame.peers.map((peer) => peer.session));
    for (const peer of [...this.#links.keys()]) if (!present.has(peer)) this.#unlink(peer);
    for (const peer of frame.peers) this.#link(peer.session, peer.user);
  }

  /**
   * Opens a peer connection to a session, if it takes part in calls and has
   * none yet. Sessions of our own user (another tab) are not called.
   * @param {string} session
   * @param {User | undefined} user
   * @returns {Link | undefined}
   */
  #link(session, user) {
    const me = this.#client.session;
    if (this.#mode !== 'p2p' || !me || session === me || this.#links.has(session)) return this.#links.get(session);
    if (!user || !CALLING_ROLES.has(user.role) || user.id === this.#client.user?.id) return undefined;
    const pc = new this.#RTCPeerConnection({ iceServers: this.#currentIceServers() });
    /** @type {Link} */
    const link = {
      session,
      pc,
      polite: isPolite(me, session),
      makingOffer: false,
      ignoreOffer: false,
      held: [],
      queue: Promise.resolve(),
      restarted: false,
      failTimer: null,
      sending: false,
    };
    this.#links.set(session, link);
    pc.onnegotiationneeded = () => this.#makeOffer(link);
    pc.onicecandidate = ({ candidate }) => {
      // null only says gathering is over; nothing to relay.
      if (candidate) this.#signal(session, { candidate: toWireCandidate(candidate) });
    };
    pc.ontrack = ({ track, streams }) => {
      this.#events.emit('track', { session, stream: streams?.[0] ?? null, track });
    };
    pc.onconnectionstatechange = () => this.#onConnectionState(link);
    // The impolite side makes the first offer; the polite side adds its
    // tracks when that offer comes and answers with them. Glare is still
    // settled by perfect negotiation when it happens (renegotiations, ICE
    // restarts), but a first offer from both sides at once is avoidable,
    // and Chromium sometimes stops gathering candidates after rolling its
    // own first offer back.
    if (!link.polite) this.#startSending(link, false);
    return link;
  }

  /**
   * Adds the local tracks to a link, once. The side that offers first and
   * has no camera asks to receive audio and video, so that its offer is
   * not empty.
   * @param {Link} link
   * @param {boolean} answering a remote offer is being answered
   */
  #startSending(link, answering) {
    if (link.sending) return;
    link.sending = true;
    const stream = this.#localStream;
    const tracks = stream?.getTracks() ?? [];
    for (const track of tracks) link.pc.addTrack(track, /** @type {MediaStream} */ (stream));
    if (!answering && tracks.length === 0) {
      link.pc.addTransceiver('audio', { direction: 'recvonly' });
      link.pc.addTransceiver('video', { direction: 'recvonly' });
    }
  }

  /** @param {string} session */
  #unlink(session) {
    const link = this.#links.get(session);
    if (!link) return;
    this.#links.delete(session);
    link.failTimer = this.#clearTimer(link.failTimer);
    const { pc } = link;
    pc.onnegotiationneeded = null;
    pc.onicecandidate = null;
    pc.ontrack = null;
    pc.onconnectionstatechange = null;
    pc.close();
    this.#events.emit('peerstate', { session, state: 'closed' });
  }

  /** @returns {RTCIceServer[]} */
  #currentIceServers() {
    if (this.#iceServers) return this.#iceServers;
    // The protocol's {urls, username?, credential?} is the browser's RTCIceServer.
    return /** @type {RTCIceServer[]} */ (this.#client.roomInfo(this.#room)?.media?.ice_servers ?? []);
  }

  // -------------------------------------------------------------- perfect negotiation

  /** @param {Link} link */
  async #makeOffer(link) {
    try {
      link.makingOffer = true;
      // Without an argument, setLocalDescription makes the offer (or the
      // answer) that fits the signaling state: no createOffer race.
      await link.pc.setLocalDescription();
      if (this.#links.get(link.session) !== link) return;
      this.#signal(link.session, { description: describe(link.pc.localDescription) });
    } catch (error) {
      if (this.#links.get(link.session) === link) this.#events.emit('error', error);
    } finally {
      link.makingOffer = false;
    }
  }

  /** @param {SignalFrame} frame */
  #onSignal(frame) {
    if (frame.room !== this.#room || this.#mode !== 'p2p') return;
    const data = frame.data ?? {};
    if (data.bye) {
      this.#unlink(frame.from);
      return;
    }
    // Someone we have no link with calls us (their presence came before we
    // started, or they hung up and call again): answer if they may call.
    const link = this.#links.get(frame.from) ?? (data.description ? this.#link(frame.from, frame.user) : undefined);
    if (!link) return;
    // One signal at a time per peer: a candidate must not overtake the
    // description it belongs to while that description is being applied.
    link.queue = link.queue
      .then(() => this.#applySignal(link, data))
      .catch((error) => {
        if (this.#links.get(link.session) === link) this.#events.emit('error', error);
      });
  }

  /**
   * The receiving half of the W3C perfect-negotiation example.
   * @param {Link} link
   * @param {SignalData} data
   */
  async #applySignal(link, data) {
    if (this.#links.get(link.session) !== link) return;
    const { pc } = link;
    if (data.description) {
      const description = /** @type {RTCSessionDescriptionInit} */ (data.description);
      const offerCollision = description.type === 'offer' && (link.makingOffer || pc.signalingState !== 'stable');
      link.ignoreOffer = !link.polite && offerCollision;
      if (link.ignoreOffer) return;
      // On a collision the polite side's own offer is rolled back implicitly.
      await pc.setRemoteDescription(description);
      await this.#applyHeldCandidates(link);
      if (description.type === 'offer') {
        // Tracks added now ride on the offered transceivers: the answer
        // carries them without another round.
        this.#startSending(link, true);
        await pc.setLocalDescription();
        this.#signal(link.session, { description: describe(pc.localDescription) });
      }
    } else if (data.candidate) {
      const candidate = fromWireCandidate(data.candidate);
      if (!pc.remoteDescription) {
        // Trickled ahead of the description: hold it until there is one.
        link.held.push({ candidate, ignoring: link.ignoreOffer });
        return;
      }
      await addCandidate(pc, candidate, link.ignoreOffer);
    }
  }

  /** @param {Link} link */
  async #applyHeldCandidates(link) {
    for (const { candidate, ignoring } of link.held.splice(0)) await addCandidate(link.pc, candidate, ignoring);
  }

  /**
   * @param {string} session
   * @param {SignalData} data
   */
  #signal(session, data, attempt = 0) {
    const link = this.#links.get(session);
    this.#client.signal(this.#room, session, data).catch((error) => {
      // A node that cannot reach the peer's node now, or the rate limit:
      // the same signal again shortly, while this link still stands (a
      // lost offer or answer would leave the negotiation stuck).
      if (RETRY.has(error?.code) && attempt < MAX_RETRIES) {
        this.#setTimeout(() => {
          if (this.#mode === 'p2p' && this.#links.get(session) === link) this.#signal(session, data, attempt + 1);
        }, error.retryMs ?? 250 * 2 ** attempt);
        return;
      }
      // A peer that left or a connection that dropped is handled by presence
      // and by the rejoin; anything else is worth telling.
      if (!GONE.has(error?.code)) this.#events.emit('error', error);
    });
  }

  // -------------------------------------------------------------- failures

  /**
   * `failed` gets one ICE restart; failing again, or staying failed or
   * disconnected for `failTimeoutMs`, tells the hub, which moves the room
   * to Jitsi.
   * @param {Link} link
   */
  #onConnectionState(link) {
    if (this.#links.get(link.session) !== link) return;
    const state = link.pc.connectionState;
    this.#events.emit('peerstate', { session: link.session, state });
    switch (state) {
      case 'connected':
        link.failTimer = this.#clearTimer(link.failTimer);
        link.restarted = false;
        break;
      case 'disconnected':
        // Often recovers by itself within seconds; give it the timeout.
        if (link.failTimer === null) this.#armFailTimer(link);
        break;
      case 'failed':
        if (link.restarted) {
          this.#reportIceFailed();
          break;
        }
        link.restarted = true;
        link.pc.restartIce();
        link.failTimer = this.#clearTimer(link.failTimer);
        this.#armFailTimer(link);
        break;
      default:
        break;
    }
  }

  /** @param {Link} link */
  #armFailTimer(link) {
    link.failTimer = this.#setTimeout(() => {
      link.failTimer = null;
      if (this.#links.get(link.session) === link && link.pc.connectionState !== 'connected') this.#reportIceFailed();
    }, this.#failTimeoutMs);
  }

  #reportIceFailed(attempt = 0) {
    if (this.#reported) return;
    this.#reported = true;
    this.#client.reportIceFailed(this.#room).catch((error) => {
      this.#reported = false; // not heard: the next failure tries again
      // A link that is failed already changes no more: try again now.
      if (RETRY.has(error?.code) && attempt < MAX_RETRIES) {
        this.#setTimeout(() => {
          if (this.#mode === 'p2p') this.#reportIceFailed(attempt + 1);
        }, error.retryMs ?? 250 * 2 ** attempt);
        return;
      }
      if (!GONE.has(error?.code)) this.#events.emit('error', error);
    });
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

// ---------------------------------------------------------------- helpers

/**
 * The plain `{type, sdp}` of a session description, for the wire.
 * @param {RTCSessionDescription | null} description
 * @returns {{type: RTCSdpType, sdp?: string}}
 */
function describe(description) {
  if (!description) throw new TelehubError('internal', 'no local description to send');
  return { type: description.type, sdp: description.sdp };
}

/**
 * Adds a remote candidate. While an offer is being ignored its candidates
 * may not fit anything: their errors are expected and dropped.
 * @param {RTCPeerConnection} pc
 * @param {RTCIceCandidateInit} candidate
 * @param {boolean} ignoring
 */
async function addCandidate(pc, candidate, ignoring) {
  try {
    await pc.addIceCandidate(candidate);
  } catch (error) {
    if (!ignoring) throw error;
  }
}

/** @type {Map<string, Promise<void>>} script URL -> its loading, so each script is added once */
const scripts = new Map();

/**
 * Adds a script tag once per URL and waits for it to load.
 * @param {string} src
 * @returns {Promise<void>}
 */
function loadScript(src) {
  let loading = scripts.get(src);
  if (!loading) {
    loading = new Promise((resolve, reject) => {
      const script = document.createElement('script');
      script.src = src;
      script.async = true;
      script.onload = () => resolve();
      script.onerror = () => {
        scripts.delete(src); // let a later switch try again
        reject(new TelehubError('unavailable', `cannot load ${src}`));
      };
      document.head.append(script);
    });
    scripts.set(src, loading);
  }
  return loading;
}

/**
 * Embeds the Jitsi meeting with the IFrame API of the hub's Jitsi domain.
 * @param {JitsiInfo} info
 * @param {HTMLElement} container
 * @returns {Promise<{dispose(): void}>}
 */
async function embedJitsi(info, container) {
  const global = /** @type {any} */ (globalThis);
  if (typeof global.JitsiMeetExternalAPI !== 'function') await loadScript(`https://${info.domain}/external_api.js`);
  return new global.JitsiMeetExternalAPI(info.domain, { roomName: info.room, jwt: info.jwt, parentNode: container });
}
