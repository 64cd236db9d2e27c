// Type declarations for the Telehub browser SDK: the client (telehub.js) and
// the types of the call helper (call.js, whose class is declared in call.d.ts
// from the types here). Frames are typed exactly as they travel: snake_case,
// as in docs/protocol.md.

// ------------------------------------------------------------------ values

export type Role = 'patient' | 'doctor' | 'staff' | 'display';
export type RoomStatus = 'scheduled' | 'waiting' | 'active' | 'ended' | 'cancelled';
export type MediaMode = 'p2p' | 'jitsi';
export type ErrorCode =
  | 'bad_request'
  | 'unauthorized'
  | 'forbidden'
  | 'not_found'
  | 'conflict'
  | 'too_large'
  | 'rate_limited'
  | 'unavailable'
  | 'internal';
/** Codes of failures found by the client itself rather than refused by the hub. */
export type ClientErrorCode = 'disconnected' | 'not_connected' | 'not_joined' | 'closed' | 'left' | 'token_failed' | 'bad_url';

export type ConnectionState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed';

/** A user as the hub shows them. */
export interface User {
  id: string;
  name: string;
  role: Role;
}

/** A user by id and name (typing, ended). */
export interface UserRef {
  id: string;
  name: string;
}

/** The author of a message: a user, or the hub for system messages. */
export interface Sender {
  id: string;
  name: string;
  role: Role | 'system';
}

/** One session in a room. A user with two tabs is two peers. */
export interface Peer {
  session: string;
  user: User;
  /** Present in `joined.peers` and presence joins. */
  state?: 'online';
  /** When the session joined the room (RFC 3339); like `state`. */
  since?: string;
}

/** Matches the browser's `RTCIceServer`. */
export interface IceServer {
  urls: string | string[];
  username?: string;
  credential?: string;
}

/** This session's own access to the room's Jitsi meeting. */
export interface JitsiInfo {
  domain: string;
  room: string;
  url: string;
  jwt: string;
}

export interface MediaInfo {
  mode: MediaMode;
  ice_servers: IceServer[];
  jitsi?: JitsiInfo;
  /** `false` on a hub with video calls off. */
  video?: boolean;
}

/** An ICE candidate as the protocol carries it (`RTCIceCandidateInit` in snake_case). */
export interface WireCandidate {
  /** An empty string marks the end of candidates. */
  candidate: string;
  sdp_mid?: string;
  sdp_mline_index?: number;
  username_fragment?: string;
}

export interface WireDescription {
  type: 'offer' | 'answer' | 'pranswer' | 'rollback';
  sdp?: string;
}

/** The `data` of a signal: exactly one of the three. */
export type SignalData =
  | { description: WireDescription; candidate?: never; bye?: never }
  | { candidate: WireCandidate; description?: never; bye?: never }
  | { bye: true; description?: never; candidate?: never };

export interface QueueEntry {
  ticket: string;
  since: string;
  /** Absent for displays, like the fields below. */
  room?: string;
  patient?: UserRef;
  online?: boolean;
  paid?: boolean;
}

// ------------------------------------------------------------------ client frames

export interface JoinRequest { type: 'join'; ref?: string; room: string; since?: number }
export interface LeaveRequest { type: 'leave'; ref?: string; room: string }
export interface ChatRequest { type: 'chat'; ref?: string; room: string; client_id: string; text: string }
export interface TypingRequest { type: 'typing'; ref?: string; room: string; active: boolean }
export interface ReadRequest { type: 'read'; ref?: string; room: string; seq: number }
export interface SignalRequest { type: 'signal'; ref?: string; room: string; to: string; data: SignalData }
export type MediaRequest =
  | { type: 'media'; ref?: string; room: string; event: 'ice_failed'; mode?: never }
  | { type: 'media'; ref?: string; room: string; mode: MediaMode; event?: never };
export interface CheckinRequest { type: 'checkin'; ref?: string; room: string }
export interface WatchRequest { type: 'watch'; ref?: string; queue: string }
export interface AdmitRequest { type: 'admit'; ref?: string; room: string }
export interface EndRequest { type: 'end'; ref?: string; room: string }
export interface PingRequest { type: 'ping'; ref?: string }

/** Every frame a client may send. */
export type ClientFrame =
  | JoinRequest
  | LeaveRequest
  | ChatRequest
  | TypingRequest
  | ReadRequest
  | SignalRequest
  | MediaRequest
  | CheckinRequest
  | WatchRequest
  | AdmitRequest
  | EndRequest
  | PingRequest;

// ------------------------------------------------------------------ server frames

export interface WelcomeFrame {
  type: 'welcome';
  session: string;
  user: User;
  heartbeat_ms: number;
  node: string;
  protocol: number;
}
/** The `welcome` frame, which `connect()` resolves with. */
export type Welcome = WelcomeFrame;

export interface MessageFrame {
  type: 'message';
  room: string;
  seq: number;
  id: string;
  /** Absent for system messages. */
  client_id?: string;
  from: Sender;
  kind: 'text' | 'system';
  text: string;
  at: string;
}

export interface JoinedFrame {
  type: 'joined';
  ref?: string;
  room: string;
  status: RoomStatus;
  /** The newest seq the room had delivered; everything after it comes live. */
  seq: number;
  /** The other sessions in the room. */
  peers: Peer[];
  /** Oldest first, each exactly a `message` frame. */
  history: MessageFrame[];
  history_complete: boolean;
  media: MediaInfo;
  /** Every user's read marker (a hub extension); each is also emitted as a `read` event. */
  read?: { user: { id: string }; seq: number }[];
}

export interface PresenceFrame { type: 'presence'; room: string; event: 'join' | 'leave'; peer: Peer }
export interface LeftFrame { type: 'left'; ref?: string; room: string }
export interface AckFrame { type: 'ack'; ref?: string; room: string; seq: number; id: string; at: string }
export interface TypingFrame { type: 'typing'; room: string; user: UserRef; active: boolean }
export interface ReadFrame { type: 'read'; room: string; user: { id: string }; seq: number }
export interface SignalFrame { type: 'signal'; room: string; from: string; user: User; data: SignalData }
export interface MediaModeFrame {
  type: 'media_mode';
  room: string;
  mode: MediaMode;
  reason: 'ice_failed' | 'requested' | 'mesh_limit' | (string & {});
  jitsi?: JitsiInfo;
}
export interface EndedFrame { type: 'ended'; room: string; by: UserRef; at: string }
export interface QueueFrame {
  type: 'queue';
  ref?: string;
  queue: string;
  room: string;
  ticket: string;
  position: number;
  ahead: number;
  eta_s: number;
}
export interface QueueStateFrame { type: 'queue_state'; ref?: string; queue: string; entries: QueueEntry[] }
export interface CalledFrame { type: 'called'; queue: string; ticket: string; at: string }
export interface AdmittedFrame { type: 'admitted'; room: string }
/** The consultation was paid (or refunded). */
export interface PaymentFrame { type: 'payment'; room: string; status: 'paid' | 'refunded' }
export interface OkFrame { type: 'ok'; ref?: string }
export interface PongFrame { type: 'pong'; ref?: string }
export interface ErrorFrame {
  type: 'error';
  ref?: string;
  code: ErrorCode;
  message: string;
  /** Only with `rate_limited`, or `unavailable` from an overloaded node. */
  retry_ms?: number;
  /** On a notice without `ref`: the room it is about (joined, or checked in for). */
  room?: string;
  /** On a notice without `ref`: the queue it is about (watched). */
  queue?: string;
}
export interface GoawayFrame { type: 'goaway'; retry_ms: number }

/** Every frame the hub may send. */
export type ServerFrame =
  | WelcomeFrame
  | JoinedFrame
  | PresenceFrame
  | LeftFrame
  | AckFrame
  | MessageFrame
  | TypingFrame
  | ReadFrame
  | SignalFrame
  | MediaModeFrame
  | EndedFrame
  | QueueFrame
  | QueueStateFrame
  | CalledFrame
  | AdmittedFrame
  | PaymentFrame
  | OkFrame
  | PongFrame
  | ErrorFrame
  | GoawayFrame;

/** The reply each request type settles with. */
export interface ReplyMap {
  join: JoinedFrame;
  leave: LeftFrame;
  chat: AckFrame;
  ping: PongFrame;
  checkin: QueueFrame;
  watch: QueueStateFrame;
  typing: OkFrame;
  read: OkFrame;
  signal: OkFrame;
  media: OkFrame;
  admit: OkFrame;
  end: OkFrame;
}

// ------------------------------------------------------------------ errors

/** A refusal by the hub, or a failure found by the client. */
export class TelehubError extends Error {
  constructor(code: ErrorCode | ClientErrorCode | string, message: string, details?: { retryMs?: number; frame?: ErrorFrame; cause?: unknown });
  readonly name: 'TelehubError';
  /** The protocol's error code, or a `ClientErrorCode`. */
  code: ErrorCode | ClientErrorCode | (string & {});
  /** `retry_ms` of `rate_limited`, or of `unavailable` from an overloaded node. */
  retryMs: number | undefined;
  /** The `error` frame, when the hub sent one. */
  frame: ErrorFrame | undefined;
  /** On an `error` event: the renewed `checkin` or `watch` this refusal ended. */
  request: ClientFrame | undefined;
  static fromFrame(frame: ErrorFrame): TelehubError;
}

// ------------------------------------------------------------------ the client

export interface ReconnectOptions {
  /** First delay, in ms. Default 500. */
  minMs?: number;
  /** Largest delay, in ms. Default 30000. */
  maxMs?: number;
  /** Growth per failed attempt. Default 2. */
  factor?: number;
  /**
   * Share of each delay that is random, 0 to 1: the delay is drawn from
   * `[base * (1 - jitter), base]`. 1 is full jitter. Default 0.5.
   */
  jitter?: number;
}

/**
 * The part of the WebSocket API the client uses; the browser's WebSocket
 * fits, and so does the `ws` package's. The handlers receive a `data` (a
 * message event) and a `code` and `reason` (a close event); their event
 * types are loose so that every implementation's own event types fit.
 */
export interface WebSocketLike {
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onmessage: ((event: any) => void) | null;
  onclose: ((event: any) => void) | null;
  onerror: ((event: any) => void) | null;
}

export interface TelehubClientOptions {
  /** The hub's socket URL, like `wss://hub.example.org/v1/ws`; a relative URL is resolved against the page. */
  url: string;
  /** The client token (JWT); sent as `?token=`. Needed unless `getToken` is given. */
  token?: string;
  /** Called before every connect (the first included) for a fresh token; makes 4001 recoverable. */
  getToken?: () => string | Promise<string>;
  /** The WebSocket class; defaults to the global one (Node 20 has none). */
  WebSocket?: new (url: string) => WebSocketLike;
  reconnect?: ReconnectOptions;
  /** When set, a `ping` goes out every pingMs and a missing `pong` by the next one drops the connection. */
  pingMs?: number;
  /** Random numbers in [0, 1) for the jitter; defaults to Math.random. */
  random?: () => number;
  /** Timers, injectable for tests. */
  setTimeout?: (fn: () => void, ms: number) => unknown;
  clearTimeout?: (id: any) => void;
  /** For `randomUUID` (client ids); defaults to the global crypto. */
  crypto?: Pick<Crypto, 'getRandomValues'> & { randomUUID?: () => string };
}

/** What the client knows about a room it is in. */
export interface RoomInfo {
  room: string;
  /** Joined on the current connection. */
  joined: boolean;
  /** The highest seq emitted as a `message` event, or null before the first `joined`. */
  lastSeq: number | null;
  status: RoomStatus | null;
  /** The other sessions, kept up to date by presence. */
  peers: Peer[];
  /** Kept up to date by media_mode. */
  media: MediaInfo | null;
}

/** The events of a TelehubClient and what their handlers receive. */
export interface TelehubEventMap {
  /** Each new connection's first frame. */
  welcome: WelcomeFrame;
  /** Each change of `client.state`. */
  state: ConnectionState;
  /** Every joined (or rejoined, or paged) room's `joined` frame, before its history's messages. */
  joined: JoinedFrame;
  /** Every chat message, from history or live, once per seq and in seq order per room. */
  message: MessageFrame;
  presence: PresenceFrame;
  typing: TypingFrame;
  read: ReadFrame;
  signal: SignalFrame;
  media_mode: MediaModeFrame;
  ended: EndedFrame;
  /** Every `queue` frame, the reply to `checkin` included. */
  queue: QueueFrame;
  /** Every `queue_state` frame, the reply to `watch` included. */
  queue_state: QueueStateFrame;
  called: CalledFrame;
  admitted: AdmittedFrame;
  payment: PaymentFrame;
  goaway: GoawayFrame;
  /**
   * An `error` frame no request was waiting for, a refused rejoin or
   * renewal after a reconnect, a failing `getToken`, or a fatal problem
   * (then `state` is `closed` already).
   */
  error: TelehubError;
}

export class TelehubClient {
  constructor(options: TelehubClientOptions);

  readonly state: ConnectionState;
  /** This connection's session id; null while not open. */
  readonly session: string | null;
  /** The token's user, from the last `welcome`. */
  readonly user: User | null;
  /** Whether the hub has video calls on (`welcome.video`); true until a `welcome` says otherwise. */
  readonly videoEnabled: boolean;
  /** The token for the next connect; assign a new one before `connect()` after a 4001 close. */
  token: string | undefined;
  /** Rooms the client is in or joining. */
  readonly rooms: string[];
  roomInfo(room: string): RoomInfo | undefined;

  on<K extends keyof TelehubEventMap>(type: K, handler: (event: TelehubEventMap[K]) => void): () => void;
  off<K extends keyof TelehubEventMap>(type: K, handler: (event: TelehubEventMap[K]) => void): void;

  /** Resolves on the next `welcome`; retries with backoff meanwhile; rejects if the client closes first. */
  connect(): Promise<Welcome>;
  /** Closes for good (1000): no reconnect; waiting requests reject with `closed`. */
  close(): void;

  /** Sends a frame with a fresh ref; settles with the reply of the same ref. No retries, no room state. */
  request<F extends ClientFrame>(frame: F): Promise<ReplyMap[F['type']]>;

  join(room: string, options?: { since?: number }): Promise<JoinedFrame>;
  /** Resolves with `left`, or null when not connected (the hub drops membership with the connection). */
  leave(room: string): Promise<LeftFrame | null>;
  /** Resolves once stored; resent with the same client id across reconnects and retryable refusals. */
  send(room: string, text: string, options?: { clientId?: string }): Promise<AckFrame>;
  /** Fire and forget: the promise never reports an unhandled rejection. */
  typing(room: string, active: boolean): Promise<OkFrame>;
  /** Fire and forget. */
  markRead(room: string, seq: number): Promise<OkFrame>;
  /** Fire and forget. */
  signal(room: string, to: string, data: SignalData): Promise<OkFrame>;
  /** Fire and forget. */
  reportIceFailed(room: string): Promise<OkFrame>;
  setMediaMode(room: string, mode: MediaMode): Promise<OkFrame>;
  admit(room: string, options?: { overridePayment?: boolean }): Promise<OkFrame>;
  end(room: string): Promise<OkFrame>;
  /** Renewed after reconnects until admitted or ended. */
  checkin(room: string): Promise<QueueFrame>;
  /** Renewed after reconnects. */
  watch(queue: string): Promise<QueueStateFrame>;
  ping(): Promise<PongFrame>;
}

/** A tiny event emitter (shared by the client and the call helper). */
export class Emitter {
  on(type: string, handler: (event: any) => void): () => void;
  off(type: string, handler: (event: any) => void): void;
  emit(type: string, event: unknown): void;
}

/** `RTCIceCandidate` or its init to the wire; null becomes the end-of-candidates marker. */
export function toWireCandidate(candidate: RTCIceCandidate | RTCIceCandidateInit | null | undefined): WireCandidate;
/** The wire candidate to an `RTCIceCandidateInit`. */
export function fromWireCandidate(wire: WireCandidate): RTCIceCandidateInit & { candidate: string; sdpMid: string | null; sdpMLineIndex: number | null };
/** Whether `me` is the polite side towards `other`: the lower session id, compared as UTF-8 bytes. */
export function isPolite(me: string, other: string): boolean;

// ------------------------------------------------------------------ the call helper (call.js)

/** What an embedding of Jitsi returns; `dispose` is called when the call leaves Jitsi. */
export interface JitsiHandle {
  dispose?(): void;
}

export interface CallOptions {
  client: TelehubClient;
  room: string;
  /** Tracks sent to every peer; the page keeps ownership of the stream. */
  localStream?: MediaStream;
  /** The RTCPeerConnection class; defaults to the global one. */
  RTCPeerConnection?: new (configuration?: RTCConfiguration) => RTCPeerConnection;
  /** Overrides `joined.media.ice_servers`. */
  iceServers?: RTCIceServer[];
  /** Where to embed the Jitsi meeting when the room switches to Jitsi. */
  jitsiContainer?: HTMLElement;
  /** Replaces the default embedding (IFrame API script + JitsiMeetExternalAPI). */
  loadJitsi?: (info: JitsiInfo, container: HTMLElement | undefined) => JitsiHandle | void | Promise<JitsiHandle | void>;
  /** How long a connection may stay failed or disconnected before the hub is told (default 10000 ms). */
  failTimeoutMs?: number;
  setTimeout?: (fn: () => void, ms: number) => unknown;
  clearTimeout?: (id: any) => void;
}

export type PeerState = RTCPeerConnectionState | 'closed';

/** The events of a Call and what their handlers receive. */
export interface CallEventMap {
  /** A remote track arrived. `stream` is null when the sender sent the track without a stream. */
  track: { session: string; stream: MediaStream | null; track: MediaStreamTrack };
  /** A peer connection's state changed; `closed` when it was removed. */
  peerstate: { session: string; state: PeerState };
  /** This session's Jitsi access, when the room switched to Jitsi. */
  jitsi: JitsiInfo;
  /** The media mode, on start and on each switch. */
  mode: MediaMode;
  error: Error;
}

/** The shape of the `Call` class exported by call.js (declared in call.d.ts). */
export interface CallApi {
  readonly mode: MediaMode | null;
  readonly sessions: string[];
  peerConnection(session: string): RTCPeerConnection | undefined;
  on<K extends keyof CallEventMap>(type: K, handler: (event: CallEventMap[K]) => void): () => void;
  off<K extends keyof CallEventMap>(type: K, handler: (event: CallEventMap[K]) => void): void;
  /** After the client joined the room; throws for roles that take no part in calls. */
  start(): void;
  /** Sends `bye` to every peer, closes them and leaves Jitsi. */
  hangup(): void;
}
