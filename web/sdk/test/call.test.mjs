// Tests of Call: perfect negotiation between two clients through a fake hub,
// and the single-peer behaviours (held candidates, ICE failure, Jitsi)
// against a fake socket where the test plays the other side.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { Call } from '../call.js';
import { TelehubClient, isPolite } from '../telehub.js';
import { FakeClock, FakeHub, connected, fakeStream, flush, joinRoom, peerConnectionClass, setup } from './fakes.mjs';

const ROOM = 'c-1001';
const DOCTOR = { id: 'u1', name: 'Ana', role: 'doctor' };
const PATIENT = { id: 'u7', name: 'Budi', role: 'patient' };
const PEER = { session: 's_9', user: PATIENT, state: 'online', since: '2026-11-24T10:00:00.000Z' };

// ------------------------------------------------------------------ two clients through a fake hub

async function hubClient(hub, clock, token) {
  const client = new TelehubClient({
    url: 'ws://hub.test/v1/ws',
    token,
    WebSocket: hub.WebSocket,
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
  });
  const welcome = client.connect();
  await hub.settle();
  await welcome;
  const joining = client.join(ROOM);
  await hub.settle();
  await joining;
  return client;
}

function newCall(client, RTCPeerConnection, clock, extra = {}) {
  const call = new Call({ client, room: ROOM, RTCPeerConnection, setTimeout: clock.setTimeout, clearTimeout: clock.clearTimeout, ...extra });
  const errors = [];
  call.on('error', (error) => errors.push(error));
  return { call, errors };
}

/** Offers sent to the hub, as (from session, to session). */
function offers(hub) {
  return hub.log
    .filter(({ frame }) => frame.type === 'signal' && frame.data.description?.type === 'offer')
    .map(({ session, frame }) => [session, frame.to]);
}

/** Two started calls, a polite doctor (s_1) and an impolite patient (s_2). */
async function twoCalls() {
  const hub = new FakeHub();
  hub.users.set('doc', DOCTOR);
  hub.users.set('pat', PATIENT);
  const clock = new FakeClock();
  const { FakePeerConnection } = peerConnectionClass();
  const doctor = await hubClient(hub, clock, 'doc'); // s_1
  const patient = await hubClient(hub, clock, 'pat'); // s_2
  assert.equal(isPolite(doctor.session, patient.session), true, 's_1 sorts first: the doctor is polite');
  const a = newCall(doctor, FakePeerConnection, clock, { localStream: fakeStream('doctor') });
  const b = newCall(patient, FakePeerConnection, clock, { localStream: fakeStream('patient') });
  a.call.start();
  b.call.start();
  await hub.settle();
  const polite = a.call.peerConnection(patient.session);
  const impolite = b.call.peerConnection(doctor.session);
  assert.ok(polite && impolite);
  return { hub, doctor, patient, a, b, polite, impolite };
}

function assertSettled({ polite, impolite, a, b }) {
  for (const pc of [polite, impolite]) assert.equal(pc.signalingState, 'stable');
  assert.deepEqual(polite.localDescription, impolite.remoteDescription);
  assert.deepEqual(polite.remoteDescription, impolite.localDescription);
  assert.equal(polite.unnegotiated.size, 0, 'the polite side\'s track was negotiated');
  assert.equal(impolite.unnegotiated.size, 0);
  assert.deepEqual(a.errors, []);
  assert.deepEqual(b.errors, []);
}

test('the impolite side makes the first offer and the polite side answers with its own tracks', async () => {
  const calls = await twoCalls();
  const { hub, doctor, patient, polite, impolite } = calls;
  // Only the impolite side offered first: no glare to settle.
  assert.deepEqual(offers(hub)[0], [patient.session, doctor.session]);
  assert.ok(!polite.states.includes('have-local-offer') || polite.states.indexOf('have-remote-offer') < polite.states.indexOf('have-local-offer'),
    `the polite side never offered before answering: ${polite.states.join(' → ')}`);
  assertSettled(calls);
  assert.ok(polite.tracks.length > 0, 'the polite side sends its camera');
  // Candidates crossed (held where they came early), without errors.
  assert.ok(polite.addedCandidates.length > 0);
  assert.ok(impolite.addedCandidates.length > 0);
  assert.deepEqual(polite.configuration, { iceServers: [{ urls: ['stun:stun.test:3478'] }] }, 'ICE servers from joined.media');
});

test('glare: both sides renegotiate at once; the polite side rolls back and both end stable', async () => {
  const calls = await twoCalls();
  const { hub, doctor, patient, polite, impolite } = calls;
  const before = offers(hub).length;
  const politeFrom = polite.states.length;
  const impoliteFrom = impolite.states.length;
  // An ICE restart on both sides at the same moment: both offer.
  polite.restartIce();
  impolite.restartIce();
  await hub.settle();
  const crossing = offers(hub).slice(before, before + 2);
  assert.deepEqual(crossing.map(([from]) => from).sort(), [doctor.session, patient.session], 'both offered: glare');
  // The polite side went from its own offer straight to the other's: an implicit rollback.
  const states = polite.states.slice(politeFrom);
  const rolledBack = states.findIndex((state, i) => state === 'have-remote-offer' && states[i - 2] === 'have-local-offer');
  assert.ok(rolledBack > 0, `polite states: ${states.join(' → ')}`);
  // The impolite side ignored the colliding offer and kept its own.
  assert.deepEqual(impolite.states.slice(impoliteFrom, impoliteFrom + 2), ['have-local-offer', 'stable'], `impolite states: ${impolite.states.slice(impoliteFrom).join(' → ')}`);
  assertSettled(calls);
});

test('a newcomer is called from presence, and the call resolves the same way', async () => {
  const hub = new FakeHub();
  hub.users.set('doc', DOCTOR);
  hub.users.set('pat', PATIENT);
  const clock = new FakeClock();
  const { FakePeerConnection } = peerConnectionClass();
  const doctor = await hubClient(hub, clock, 'doc');
  const a = newCall(doctor, FakePeerConnection, clock, { localStream: fakeStream('doctor') });
  a.call.start();
  assert.deepEqual(a.call.sessions, []);

  const patient = await hubClient(hub, clock, 'pat');
  const b = newCall(patient, FakePeerConnection, clock, { localStream: fakeStream('patient') });
  b.call.start();
  await hub.settle();
  assert.deepEqual(a.call.sessions, [patient.session]);
  const pcA = a.call.peerConnection(patient.session);
  const pcB = b.call.peerConnection(doctor.session);
  assert.equal(pcA.signalingState, 'stable');
  assert.equal(pcB.signalingState, 'stable');
  assert.deepEqual(pcA.localDescription, pcB.remoteDescription);
  assert.deepEqual(pcA.remoteDescription, pcB.localDescription);
  assert.deepEqual([...a.errors, ...b.errors], []);

  // Hanging up says bye; the other side closes its connection.
  const states = [];
  a.call.on('peerstate', (event) => states.push(event));
  b.call.hangup();
  await hub.settle();
  assert.equal(pcB.closed, true);
  assert.equal(pcA.closed, true);
  assert.deepEqual(a.call.sessions, []);
  assert.deepEqual(states, [{ session: patient.session, state: 'closed' }]);
});

// ------------------------------------------------------------------ one call, the test plays the other side

/** A doctor's client joined with one patient peer, and a started call. */
async function oneCall(extra = {}) {
  const env = setup();
  // s_1 sorts before the peer's s_9: polite, it waits for the peer's offer.
  await connected(env, extra.me ?? 's_1', DOCTOR);
  await joinRoom(env, ROOM, { peers: [PEER], ...extra.joined });
  const { FakePeerConnection, instances } = peerConnectionClass();
  const { call, errors } = newCall(env.client, FakePeerConnection, env.clock, extra.options);
  const events = { mode: [], jitsi: [], peerstate: [], track: [] };
  for (const type of Object.keys(events)) call.on(type, (event) => events[type].push(event));
  call.start();
  await flush();
  return { env, call, errors, events, instances, pc: call.peerConnection(PEER.session) };
}

/** Delivers a signal from the fake peer. */
function signalFrom(env, data, from = PEER.session) {
  env.ws.receive({ type: 'signal', room: ROOM, from, user: PATIENT, data });
}

test('candidates that come before the remote description are held, then applied', async () => {
  const { env, pc, errors } = await oneCall(); // no local stream: it only answers
  assert.ok(pc);

  signalFrom(env, { candidate: { candidate: 'candidate:1 1 udp 1 10.0.0.9 5000 typ host', sdp_mid: '0', sdp_mline_index: 0 } });
  await flush();
  assert.deepEqual(pc.addedCandidates, [], 'no remote description yet: held');
  assert.deepEqual(errors, []);

  signalFrom(env, { description: { type: 'offer', sdp: 'v=0\r\no=- 9 1 IN IP4 127.0.0.1\r\n' } });
  await flush();
  assert.deepEqual(pc.addedCandidates, [{ candidate: 'candidate:1 1 udp 1 10.0.0.9 5000 typ host', sdpMid: '0', sdpMLineIndex: 0 }]);
  const answer = env.ws.frames('signal').find((frame) => frame.data.description?.type === 'answer');
  assert.equal(answer.to, PEER.session);
  assert.equal(answer.room, ROOM);
  assert.equal(pc.signalingState, 'stable');

  signalFrom(env, { candidate: { candidate: 'candidate:2 1 udp 1 10.0.0.9 5001 typ host', sdp_mid: '0', sdp_mline_index: 0 } });
  await flush();
  assert.equal(pc.addedCandidates.length, 2, 'later candidates go straight in');
  assert.deepEqual(errors, []);
});

test('local candidates are sent in the protocol\'s snake_case; the end of gathering is not sent', async () => {
  // s_z sorts after s_9: the impolite side, which makes the first offer.
  const { env, pc } = await oneCall({ me: 's_z', options: { localStream: fakeStream('doctor') } });
  await flush();
  assert.equal(pc.signalingState, 'have-local-offer', 'the track made it offer');
  const candidates = env.ws.frames('signal').filter((frame) => frame.data.candidate);
  assert.equal(candidates.length, 1);
  assert.deepEqual(candidates[0].data.candidate, {
    candidate: 'candidate:1 1 udp 2122260223 10.0.0.1 50000 typ host',
    sdp_mid: '0',
    sdp_mline_index: 0,
    username_fragment: 'uf1g0',
  });
});

test('failed: restartIce first, then report ice_failed when it fails again', async () => {
  const { env, pc, events } = await oneCall();
  pc.setConnectionState('failed');
  assert.equal(pc.restartIceCalls, 1);
  assert.equal(env.ws.frames('media').length, 0);

  pc.setConnectionState('checking');
  pc.setConnectionState('failed');
  assert.equal(pc.restartIceCalls, 1, 'one restart only');
  const reports = env.ws.frames('media');
  assert.equal(reports.length, 1);
  assert.deepEqual({ ...reports[0], ref: undefined }, { type: 'media', room: ROOM, event: 'ice_failed', ref: undefined });
  assert.deepEqual(events.peerstate.map((e) => e.state), ['failed', 'checking', 'failed']);
});

test('failed or disconnected for the timeout: report ice_failed', async () => {
  const { env, pc } = await oneCall();
  pc.setConnectionState('disconnected');
  await env.clock.advance(9999);
  assert.equal(env.ws.frames('media').length, 0);
  await env.clock.advance(1);
  assert.equal(env.ws.frames('media').length, 1);
});

test('a signal refused unavailable is sent again after retry_ms; other refusals are reported', async () => {
  const { env, errors } = await oneCall();
  const before = env.ws.frames('signal').length;
  // The peer offers; the call's answer is the signal the hub refuses.
  signalFrom(env, { description: { type: 'offer', sdp: 'v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n' } });
  await flush();
  const sent = env.ws.frames('signal').slice(before);
  assert.ok(sent.length >= 1, 'the answer went out');
  const answer = sent.at(-1);
  env.ws.receive({ type: 'error', ref: answer.ref, code: 'unavailable', message: 'the other node cannot be reached', retry_ms: 300 });
  await flush();
  const count = env.ws.frames('signal').length;
  await env.clock.advance(299);
  assert.equal(env.ws.frames('signal').length, count);
  await env.clock.advance(1);
  assert.equal(env.ws.frames('signal').length, count + 1, 'the same signal again');
  assert.deepEqual(env.ws.frames('signal').at(-1).data, answer.data);
  env.ws.receive({ type: 'error', ref: env.ws.frames('signal').at(-1).ref, code: 'forbidden', message: 'no' });
  await flush();
  assert.deepEqual(errors.map((e) => e.code), ['forbidden']);
});

test('an ice_failed report refused unavailable is sent again', async () => {
  const { env, pc } = await oneCall();
  pc.setConnectionState('failed');
  pc.setConnectionState('checking');
  pc.setConnectionState('failed');
  const report = env.ws.frames('media').at(-1);
  env.ws.receive({ type: 'error', ref: report.ref, code: 'unavailable', message: 'storage is away' });
  await flush();
  await env.clock.advance(250);
  assert.equal(env.ws.frames('media').length, 2, 'reported again');
});

test('a connection that recovers is not reported', async () => {
  const { env, pc } = await oneCall();
  pc.setConnectionState('failed');
  pc.setConnectionState('connected');
  await env.clock.advance(60000);
  assert.equal(env.ws.frames('media').length, 0);
  // A later failure gets its own restart again.
  pc.setConnectionState('failed');
  assert.equal(pc.restartIceCalls, 2);
});

test('media_mode jitsi: peer connections close and loadJitsi gets the info; p2p comes back', async () => {
  const container = { id: 'jitsi-box' };
  const loads = [];
  let disposed = 0;
  const loadJitsi = async (info, where) => {
    loads.push({ info, where });
    return { dispose: () => { disposed += 1; } };
  };
  const { env, call, pc, events, instances } = await oneCall({ options: { jitsiContainer: container, loadJitsi } });
  assert.deepEqual(events.mode, ['p2p']);

  const jitsi = { domain: 'meet.example.org', room: 'c-1001', url: 'https://meet.example.org/c-1001?jwt=j', jwt: 'j' };
  env.ws.receive({ type: 'media_mode', room: ROOM, mode: 'jitsi', reason: 'ice_failed', jitsi });
  await flush();
  assert.equal(pc.closed, true);
  assert.deepEqual(call.sessions, []);
  assert.equal(call.mode, 'jitsi');
  assert.deepEqual(events.mode, ['p2p', 'jitsi']);
  assert.deepEqual(events.jitsi, [jitsi]);
  assert.deepEqual(loads, [{ info: jitsi, where: container }]);
  assert.deepEqual(env.ws.frames('signal'), [], 'no bye: the peer switches too');

  // While in Jitsi, signals and presence are not for us.
  signalFrom(env, { description: { type: 'offer', sdp: 'v=0\r\n' } });
  await flush();
  assert.equal(instances.length, 1);

  env.ws.receive({ type: 'media_mode', room: ROOM, mode: 'p2p', reason: 'requested' });
  await flush();
  assert.equal(disposed, 1);
  assert.deepEqual(events.mode, ['p2p', 'jitsi', 'p2p']);
  assert.equal(instances.length, 2, 'a new peer connection for the peer still in the room');
  assert.deepEqual(call.sessions, [PEER.session]);
});

test('a room already in jitsi mode starts in Jitsi', async () => {
  const jitsi = { domain: 'meet.example.org', room: 'c-1001', url: 'u', jwt: 'j' };
  const loads = [];
  const { call, instances } = await oneCall({
    joined: { media: { mode: 'jitsi', ice_servers: [], jitsi } },
    options: { loadJitsi: (info) => loads.push(info) },
  });
  assert.equal(call.mode, 'jitsi');
  assert.deepEqual(loads, [jitsi]);
  assert.equal(instances.length, 0);
});

test('who is called: patients and doctors, never staff, displays or our own other tab', async () => {
  const staff = { session: 's_5', user: { id: 'u5', name: 'Sam', role: 'staff' } };
  const ownTab = { session: 's_6', user: DOCTOR };
  const { env, call } = await oneCall({ joined: { peers: [PEER, staff, ownTab] } });
  assert.deepEqual(call.sessions, [PEER.session]);

  const other = { session: 's_7', user: { id: 'u8', name: 'Cici', role: 'patient' } };
  env.ws.receive({ type: 'presence', room: ROOM, event: 'join', peer: other });
  assert.deepEqual(call.sessions, [PEER.session, 's_7']);
  env.ws.receive({ type: 'presence', room: ROOM, event: 'leave', peer: { session: PEER.session, user: PATIENT } });
  assert.deepEqual(call.sessions, ['s_7']);
});

test('a bye closes that peer only; a track is reported with its session', async () => {
  const { env, call, pc, events } = await oneCall();
  const stream = { id: 'remote' };
  pc.fireTrack({ kind: 'video' }, stream);
  assert.deepEqual(events.track, [{ session: PEER.session, stream, track: { kind: 'video' } }]);
  signalFrom(env, { bye: true });
  assert.equal(pc.closed, true);
  assert.deepEqual(call.sessions, []);
});

test('after a reconnect the links follow the new session id', async () => {
  const { env, call, pc, instances } = await oneCall();
  env.ws.drop(1006);
  await env.clock.advance(60000);
  env.ws.welcome('s_99', DOCTOR);
  env.ws.receive({ ...(await import('./fakes.mjs')).joined(env.ws.last('join'), { peers: [PEER] }) });
  await flush();
  assert.equal(pc.closed, true, 'the old pairing is gone: the peer saw our old session leave');
  assert.equal(instances.length, 2);
  assert.deepEqual(call.sessions, [PEER.session]);
});

test('start needs a joined room and a role that calls', async () => {
  const env = setup();
  await connected(env, 's_1', DOCTOR);
  const { FakePeerConnection } = peerConnectionClass();
  const call = new Call({ client: env.client, room: ROOM, RTCPeerConnection: FakePeerConnection });
  assert.throws(() => call.start(), { code: 'not_joined' });

  const staffEnv = setup();
  await connected(staffEnv, 's_2', { id: 'u5', name: 'Sam', role: 'staff' });
  await joinRoom(staffEnv, ROOM);
  const staffCall = new Call({ client: staffEnv.client, room: ROOM, RTCPeerConnection: FakePeerConnection });
  assert.throws(() => staffCall.start(), { code: 'forbidden' });
});

test('the side that offers first without a camera still offers, to receive audio and video', async () => {
  const { env, pc } = await oneCall({ me: 's_z' });
  await flush();
  assert.deepEqual(pc.transceivers, [{ kind: 'audio', direction: 'recvonly' }, { kind: 'video', direction: 'recvonly' }]);
  assert.equal(pc.signalingState, 'have-local-offer');
  assert.equal(env.ws.frames('signal').filter((frame) => frame.data.description?.type === 'offer').length, 1);
});
