// Tests of TelehubClient against a fake WebSocket and a fake clock: the test
// plays the hub, frame by frame.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { TelehubClient, TelehubError } from '../telehub.js';
import { connected, flush, joinRoom, joined, message, setup } from './fakes.mjs';

const ROOM = 'c-1001';

/** Drops the current socket and lets the backoff run out, so that a new socket exists. */
async function reconnect(env, session, code = 1006) {
  const before = env.sockets.length;
  env.ws.drop(code);
  await env.clock.advance(60000);
  assert.equal(env.sockets.length, before + 1, 'a new socket after the backoff');
  env.ws.welcome(session);
  await flush();
}

// ------------------------------------------------------------------ connecting

test('connect resolves with welcome; the token is URL-encoded in ?token=', async () => {
  const env = setup({ token: 'a b+c/=' });
  const states = env.collect('state');
  const welcomes = env.collect('welcome');
  assert.equal(env.client.state, 'idle');

  const connecting = env.client.connect();
  assert.equal(env.client.state, 'connecting');
  assert.equal(env.ws.url, 'ws://hub.test/v1/ws?token=a%20b%2Bc%2F%3D');
  env.ws.welcome('s_42');
  const welcome = await connecting;

  assert.equal(welcome.session, 's_42');
  assert.equal(env.client.session, 's_42');
  assert.equal(env.client.user.role, 'doctor');
  assert.equal(env.client.state, 'open');
  assert.deepEqual(states, ['connecting', 'open']);
  assert.equal(welcomes.length, 1);
  assert.equal(await env.client.connect(), welcome, 'connect() when open gives the current welcome');
});

test('videoEnabled follows welcome.video: on unless the hub says it is off', async () => {
  const env = setup();
  assert.equal(env.client.videoEnabled, true, 'before any welcome');
  const connecting = env.client.connect();
  env.ws.readyState = 1;
  env.ws.receive({ type: 'welcome', session: 's_1', user: { id: 'u1', name: 'Ana', role: 'doctor' },
    heartbeat_ms: 25000, node: 'node-1', protocol: 1, video: false });
  await connecting;
  assert.equal(env.client.videoEnabled, false);
  await reconnect(env, 's_2');
  assert.equal(env.client.videoEnabled, true, 'a welcome without the field: on');
});

test('a relative url is resolved against the page, with a ws scheme', async (t) => {
  globalThis.location = new URL('https://clinic.test/room.html?x=1');
  t.after(() => delete globalThis.location);
  const env = setup({ url: '/v1/ws', token: 't' });
  env.client.connect();
  assert.equal(env.ws.url, 'wss://clinic.test/v1/ws?token=t');
});

test('the constructor refuses missing essentials', () => {
  assert.throws(() => new TelehubClient({ token: 't', WebSocket: class {} }), /url/);
  assert.throws(() => new TelehubClient({ url: 'ws://x/v1/ws', WebSocket: class {} }), /token/);
  if (typeof globalThis.WebSocket !== 'function') {
    assert.throws(() => new TelehubClient({ url: 'ws://x/v1/ws', token: 't' }), /WebSocket/);
  }
});

// ------------------------------------------------------------------ requests

test('replies are matched by ref, not by order', async () => {
  const env = setup();
  await connected(env);
  const first = env.client.admit(ROOM);
  const second = env.client.ping();
  const [admit, ping] = env.ws.sent;
  assert.equal(admit.type, 'admit');
  assert.equal(ping.type, 'ping');
  assert.notEqual(admit.ref, ping.ref);

  env.ws.receive({ type: 'pong', ref: ping.ref });
  env.ws.receive({ type: 'ok', ref: admit.ref });
  assert.deepEqual(await second, { type: 'pong', ref: ping.ref });
  assert.deepEqual(await first, { type: 'ok', ref: admit.ref });
});

test('an error with a request ref rejects it with code, message and retryMs', async () => {
  const env = setup();
  await connected(env);
  const errors = env.collect('error');
  const ending = env.client.end(ROOM);
  const limited = env.client.setMediaMode(ROOM, 'jitsi');
  const [end, media] = env.ws.sent;
  assert.deepEqual(media, { type: 'media', room: ROOM, mode: 'jitsi', ref: media.ref });

  env.ws.receive({ type: 'error', ref: end.ref, code: 'forbidden', message: 'a patient may not end the consultation in c-1001' });
  env.ws.receive({ type: 'error', ref: media.ref, code: 'rate_limited', message: 'rate limit exceeded', retry_ms: 18 });

  await assert.rejects(ending, (error) => {
    assert.ok(error instanceof TelehubError);
    assert.equal(error.code, 'forbidden');
    assert.equal(error.message, 'a patient may not end the consultation in c-1001');
    assert.equal(error.retryMs, undefined);
    return true;
  });
  await assert.rejects(limited, { code: 'rate_limited', retryMs: 18 });
  assert.equal(errors.length, 0, 'errors that answer a request are not also events');
});

test('an error frame nobody waits for is an error event', async () => {
  const env = setup();
  await connected(env);
  const errors = env.collect('error');
  env.ws.receive({ type: 'error', code: 'rate_limited', message: 'rate limit exceeded', retry_ms: 5 });
  assert.equal(errors.length, 1);
  assert.equal(errors[0].code, 'rate_limited');
  assert.equal(errors[0].retryMs, 5);
});

test('requests in flight are rejected with disconnected when the connection drops', async () => {
  const env = setup();
  await connected(env);
  const ping = env.client.ping();
  env.ws.drop(1006);
  await assert.rejects(ping, { code: 'disconnected' });
  await assert.rejects(env.client.admit(ROOM), { code: 'not_connected' });
});

test('fire-and-forget requests never surface as unhandled rejections', async () => {
  const env = setup();
  // Not connected: each rejects, and nobody awaits them. An unhandled
  // rejection would fail this test file.
  env.client.typing(ROOM, true);
  env.client.markRead(ROOM, 3);
  env.client.signal(ROOM, 's_2', { bye: true });
  env.client.reportIceFailed(ROOM);
  await flush();
  await assert.rejects(env.client.typing(ROOM, false), { code: 'not_connected' });
});

test('the frames of the small requests are the protocol frames', async () => {
  const env = setup();
  await connected(env);
  env.client.typing(ROOM, true);
  env.client.markRead(ROOM, 58);
  env.client.reportIceFailed(ROOM);
  env.client.signal(ROOM, 's_b', { bye: true });
  const strip = ({ ref, ...frame }) => frame;
  assert.deepEqual(env.ws.sent.map(strip), [
    { type: 'typing', room: ROOM, active: true },
    { type: 'read', room: ROOM, seq: 58 },
    { type: 'media', room: ROOM, event: 'ice_failed' },
    { type: 'signal', room: ROOM, to: 's_b', data: { bye: true } },
  ]);
  assert.equal(new Set(env.ws.sent.map((frame) => frame.ref)).size, 4, 'every frame has its own ref');
});

test('on and off: the unsubscribe function and off both stop a handler', async () => {
  const env = setup();
  await connected(env);
  const seen = [];
  const handler = (frame) => seen.push(frame.active);
  const unsubscribe = env.client.on('typing', handler);
  env.ws.receive({ type: 'typing', room: ROOM, user: { id: 'u7', name: 'Budi' }, active: true });
  unsubscribe();
  env.ws.receive({ type: 'typing', room: ROOM, user: { id: 'u7', name: 'Budi' }, active: false });
  env.client.on('typing', handler);
  env.client.off('typing', handler);
  env.ws.receive({ type: 'typing', room: ROOM, user: { id: 'u7', name: 'Budi' }, active: false });
  assert.deepEqual(seen, [true]);
});

// ------------------------------------------------------------------ chat

test('send: a chat frame with a random client_id, resolved by its ack', async () => {
  const env = setup();
  await connected(env);
  await joinRoom(env, ROOM, { seq: 57 });
  const sending = env.client.send(ROOM, 'Hello doctor');
  const chat = env.ws.last('chat');
  assert.deepEqual(chat, { type: 'chat', room: ROOM, client_id: 'uuid-1', text: 'Hello doctor', ref: chat.ref });
  assert.equal(env.client.send(ROOM, 'Hello doctor', { clientId: 'uuid-1' }), sending, 'the same client_id is the same send');
  assert.equal(env.ws.frames('chat').length, 1);

  const ack = { type: 'ack', ref: chat.ref, room: ROOM, seq: 58, id: 'm_58', at: '2026-11-24T10:15:00.123Z' };
  env.ws.receive(ack);
  assert.deepEqual(await sending, ack);
});

test('send to a room that was never joined is refused locally', async () => {
  const env = setup();
  await connected(env);
  await assert.rejects(env.client.send('c-9', 'hi'), { code: 'not_joined' });
});

test('send survives a disconnect: the same client_id goes again after the rejoin, and the ack resolves once', async () => {
  const env = setup();
  await connected(env, 's_1');
  await joinRoom(env, ROOM, { seq: 3, history: [message(ROOM, 3)] });
  let resolved = 0;
  const sending = env.client.send(ROOM, 'still there?', { clientId: 'cid-1' }).then((ack) => {
    resolved += 1;
    return ack;
  });
  const firstChat = env.ws.last('chat');
  const oldSocket = env.ws;

  await reconnect(env, 's_2');
  const next = env.ws;
  assert.deepEqual(next.sent.map((frame) => frame.type), ['join'], 'the room is joined before anything is resent');
  assert.equal(next.last('join').since, 3);

  next.receive(joined(next.last('join'), { seq: 3 }));
  const resent = next.last('chat');
  assert.equal(resent.client_id, 'cid-1');
  assert.equal(resent.text, 'still there?');
  assert.notEqual(resent.ref, firstChat.ref);

  // A late ack on the dead socket is ignored; the new one settles the send.
  oldSocket.receive({ type: 'ack', ref: firstChat.ref, room: ROOM, seq: 4, id: 'm_4', at: 'x' });
  next.receive({ type: 'ack', ref: resent.ref, room: ROOM, seq: 4, id: 'm_4', at: 'x' });
  next.receive({ type: 'ack', ref: resent.ref, room: ROOM, seq: 4, id: 'm_4', at: 'x' });
  assert.equal((await sending).seq, 4);
  await flush();
  assert.equal(resolved, 1);
  assert.equal(next.frames('chat').length, 1, 'sent once on the new connection');
});

test('a send while disconnected waits for the rejoin', async () => {
  const env = setup();
  await connected(env);
  await joinRoom(env, ROOM, { seq: 0 });
  env.ws.drop(1006);
  const sending = env.client.send(ROOM, 'queued');
  await env.clock.advance(60000);
  env.ws.welcome('s_2');
  assert.equal(env.ws.frames('chat').length, 0);
  env.ws.receive(joined(env.ws.last('join'), { seq: 0 }));
  const chat = env.ws.last('chat');
  assert.equal(chat.text, 'queued');
  env.ws.receive({ type: 'ack', ref: chat.ref, room: ROOM, seq: 1, id: 'm_1', at: 'x' });
  assert.equal((await sending).seq, 1);
});

test('rate_limited: the same frame goes again after retry_ms, not before', async () => {
  const env = setup();
  await connected(env);
  await joinRoom(env, ROOM);
  const sending = env.client.send(ROOM, 'hi');
  const first = env.ws.last('chat');
  env.ws.receive({ type: 'error', ref: first.ref, code: 'rate_limited', message: 'rate limit exceeded', retry_ms: 250 });

  await env.clock.advance(249);
  assert.equal(env.ws.frames('chat').length, 1);
  await env.clock.advance(1);
  const second = env.ws.last('chat');
  assert.equal(env.ws.frames('chat').length, 2);
  assert.equal(second.client_id, first.client_id);
  assert.notEqual(second.ref, first.ref);

  env.ws.receive({ type: 'ack', ref: second.ref, room: ROOM, seq: 1, id: 'm_1', at: 'x' });
  assert.equal((await sending).id, 'm_1');
});

test('unavailable: the room is joined again and the frame resent after a backoff', async () => {
  const env = setup({ random: () => 0 }); // jitter 0.5 and random 0: exactly half the base
  await connected(env);
  await joinRoom(env, ROOM, { seq: 5, history: [message(ROOM, 5)] });
  const sending = env.client.send(ROOM, 'hi');
  const first = env.ws.last('chat');
  env.ws.receive({ type: 'error', ref: first.ref, code: 'unavailable', message: 'c-1001 restarted: join again' });

  const rejoin = env.ws.last('join');
  assert.equal(env.ws.frames('join').length, 2);
  assert.equal(rejoin.since, 5);
  env.ws.receive(joined(rejoin, { seq: 5 }));

  await env.clock.advance(249);
  assert.equal(env.ws.frames('chat').length, 1, 'waits for the backoff (minMs 500, half of it fixed)');
  await env.clock.advance(1);
  const second = env.ws.last('chat');
  assert.equal(second.client_id, first.client_id);
  env.ws.receive({ type: 'ack', ref: second.ref, room: ROOM, seq: 6, id: 'm_6', at: 'x' });
  assert.equal((await sending).seq, 6);
});

test('a notice that a joined room restarted joins it again with since, and is no error event', async () => {
  const env = setup();
  const errors = [];
  env.client.on('error', (e) => errors.push(e));
  await connected(env);
  await joinRoom(env, ROOM, { seq: 5, history: [message(ROOM, 5)] });
  env.ws.receive({ type: 'error', code: 'unavailable', message: 'c-1001 restarted: join again', room: ROOM });
  const rejoin = env.ws.last('join');
  assert.equal(env.ws.frames('join').length, 2);
  assert.deepEqual([rejoin.room, rejoin.since], [ROOM, 5]);
  assert.equal(errors.length, 0);

  // A message in flight when the notice came goes again after the rejoin,
  // with its client_id; a late answer to the first try changes nothing.
  const sending = env.client.send(ROOM, 'hi');
  assert.equal(env.ws.frames('chat').length, 0, 'not joined again yet: the send waits');
  env.ws.receive(joined(rejoin, { seq: 5 }));
  const first = env.ws.last('chat');
  env.ws.receive({ type: 'error', code: 'unavailable', message: 'c-1001 restarted: join again', room: ROOM });
  const again = env.ws.last('join');
  assert.equal(env.ws.frames('join').length, 3);
  env.ws.receive({ type: 'error', ref: first.ref, code: 'unavailable', message: 'c-1001 restarted: join again' });
  env.ws.receive(joined(again, { seq: 5 }));
  const second = env.ws.last('chat');
  assert.equal(env.ws.frames('chat').length, 2);
  assert.notEqual(second.ref, first.ref);
  assert.equal(second.client_id, first.client_id);
  env.ws.receive({ type: 'ack', ref: second.ref, room: ROOM, seq: 6, id: 'm_6', at: 'x' });
  assert.equal((await sending).seq, 6);
  assert.equal(errors.length, 0);

  // One about a room this client is not in is reported.
  env.ws.receive({ type: 'error', code: 'unavailable', message: 'c-9 restarted: join again', room: 'c-9' });
  assert.equal(env.ws.frames('join').length, 3);
  assert.deepEqual(errors.map((e) => e.code), ['unavailable']);
});

test('other refusals reject the send and are not retried', async () => {
  const env = setup();
  await connected(env);
  await joinRoom(env, ROOM);
  const sending = env.client.send(ROOM, 'x'.repeat(5000));
  env.ws.receive({ type: 'error', ref: env.ws.last('chat').ref, code: 'too_large', message: 'text over 4000 characters' });
  await assert.rejects(sending, { code: 'too_large' });
  await env.clock.advance(60000);
  assert.equal(env.ws.frames('chat').length, 1);
});

// ------------------------------------------------------------------ messages

test('history and live messages are emitted once each, in seq order', async () => {
  const env = setup();
  const messages = env.collect('message');
  await connected(env);
  await joinRoom(env, ROOM, { seq: 3, history: [message(ROOM, 1), message(ROOM, 2), message(ROOM, 3)] });
  env.ws.receive(message(ROOM, 3)); // a repeat
  env.ws.receive(message(ROOM, 4));
  env.ws.receive(message(ROOM, 4));
  assert.equal(env.ws.frames('join').length, 1, 'repeats are no gap: no fill-in join');

  await reconnect(env, 's_2');
  // The rejoin's history overlaps what was seen (a repeated join may).
  env.ws.receive(joined(env.ws.last('join'), { seq: 6, history: [3, 4, 5, 6].map((seq) => message(ROOM, seq)) }));
  env.ws.receive(message(ROOM, 6));
  env.ws.receive(message(ROOM, 7));

  assert.deepEqual(messages.map((m) => m.seq), [1, 2, 3, 4, 5, 6, 7]);
  assert.equal(env.ws.frames('join').length, 1, 'no fill-in join on the new connection either');
  assert.equal(messages[0].text, 'text 1');
  assert.equal(env.client.roomInfo(ROOM).lastSeq, 7);
});

test('a first join without since starts from its history; the room state is kept', async () => {
  const env = setup();
  const messages = env.collect('message');
  const joinedEvents = env.collect('joined');
  await connected(env);
  const peer = { session: 's_b', user: { id: 'u7', name: 'Budi', role: 'patient' }, state: 'online', since: 'x' };
  const frame = await joinRoom(env, ROOM, { seq: 57, complete: false, history: [56, 57].map((seq) => message(ROOM, seq)), peers: [peer] });
  assert.equal(env.ws.last('join').since, undefined, 'no since on a first join');
  assert.deepEqual(messages.map((m) => m.seq), [56, 57]);
  assert.equal(joinedEvents[0], frame);
  assert.equal(env.ws.frames('join').length, 1, 'no paging backwards: older history is for the page to fetch');

  const info = env.client.roomInfo(ROOM);
  assert.equal(info.joined, true);
  assert.equal(info.status, 'active');
  assert.deepEqual(info.peers, [peer]);
  env.ws.receive({ type: 'presence', room: ROOM, event: 'leave', peer: { session: 's_b', user: peer.user } });
  env.ws.receive({ type: 'media_mode', room: ROOM, mode: 'jitsi', reason: 'requested' });
  assert.deepEqual(env.client.roomInfo(ROOM).peers, []);
  assert.equal(env.client.roomInfo(ROOM).media.mode, 'jitsi');
});

test('a gap in live messages triggers a join with since, and the gap is filled in order', async () => {
  const env = setup();
  const messages = env.collect('message');
  await connected(env);
  await joinRoom(env, ROOM, { seq: 3, history: [1, 2, 3].map((seq) => message(ROOM, seq)) });

  env.ws.receive(message(ROOM, 5));
  env.ws.receive(message(ROOM, 6));
  assert.deepEqual(messages.map((m) => m.seq), [1, 2, 3], '5 and 6 wait for 4');
  assert.equal(env.ws.frames('join').length, 2, 'one fill-in join, not one per message');
  const fill = env.ws.last('join');
  assert.equal(fill.since, 3);

  env.ws.receive(joined(fill, { seq: 6, history: [4, 5, 6].map((seq) => message(ROOM, seq)) }));
  env.ws.receive(message(ROOM, 7));
  assert.deepEqual(messages.map((m) => m.seq), [1, 2, 3, 4, 5, 6, 7]);
});

test('a long absence is paged in: join again with since until the history is complete', async () => {
  const env = setup();
  const messages = env.collect('message');
  await connected(env);
  await joinRoom(env, ROOM, { seq: 2, history: [1, 2].map((seq) => message(ROOM, seq)) });
  await reconnect(env, 's_2');

  env.ws.receive(joined(env.ws.last('join'), { seq: 6, complete: false, history: [3, 4].map((seq) => message(ROOM, seq)) }));
  env.ws.receive(message(ROOM, 7)); // live, after joined.seq: must wait for 5 and 6
  const page = env.ws.last('join');
  assert.equal(page.since, 4);
  assert.deepEqual(messages.map((m) => m.seq), [1, 2, 3, 4]);

  env.ws.receive(joined(page, { seq: 7, history: [5, 6, 7].map((seq) => message(ROOM, seq)) }));
  assert.deepEqual(messages.map((m) => m.seq), [1, 2, 3, 4, 5, 6, 7]);
});

test('join with since resumes from stored state', async () => {
  const env = setup();
  const messages = env.collect('message');
  await connected(env);
  const joining = env.client.join(ROOM, { since: 41 });
  assert.equal(env.ws.last('join').since, 41);
  env.ws.receive(joined(env.ws.last('join'), { seq: 42, history: [message(ROOM, 42)] }));
  await joining;
  assert.deepEqual(messages.map((m) => m.seq), [42]);
});

test('a join refused for good rejects and forgets the room; a refused rejoin is an error event', async () => {
  const env = setup();
  await connected(env);
  const joining = env.client.join('c-404');
  env.ws.receive({ type: 'error', ref: env.ws.last('join').ref, code: 'not_found', message: 'no consultation c-404' });
  await assert.rejects(joining, { code: 'not_found' });
  assert.deepEqual(env.client.rooms, []);

  await joinRoom(env, ROOM);
  const errors = env.collect('error');
  await reconnect(env, 's_2');
  env.ws.receive({ type: 'error', ref: env.ws.last('join').ref, code: 'forbidden', message: 'not a member of c-1001' });
  assert.equal(errors.length, 1);
  assert.equal(errors[0].code, 'forbidden');
  assert.deepEqual(env.client.rooms, []);
});

test('leave forgets the room: no rejoin after a reconnect', async () => {
  const env = setup();
  await connected(env);
  await joinRoom(env, ROOM);
  const leaving = env.client.leave(ROOM);
  await flush();
  env.ws.receive({ type: 'left', ref: env.ws.last('leave').ref, room: ROOM });
  assert.equal((await leaving).type, 'left');
  await reconnect(env, 's_2');
  assert.equal(env.ws.frames('join').length, 0);
});

// ------------------------------------------------------------------ reconnecting

test('reconnect: every room is joined again with since = the last seq seen', async () => {
  const env = setup();
  await connected(env, 's_1');
  await joinRoom(env, 'c-1', { seq: 9, history: [message('c-1', 9)] });
  await joinRoom(env, 'c-2', { seq: 0 });
  const joinedEvents = env.collect('joined');

  await reconnect(env, 's_2');
  const joins = env.ws.frames('join');
  assert.deepEqual(joins.map(({ room, since }) => ({ room, since })), [
    { room: 'c-1', since: 9 },
    { room: 'c-2', since: 0 },
  ]);
  env.ws.receive(joined(joins[0], { seq: 9 }));
  assert.equal(joinedEvents.length, 1);
  assert.equal(env.client.roomInfo('c-1').joined, true);
  assert.equal(env.client.roomInfo('c-2').joined, false, 'until its own joined arrives');
});

test('backoff grows by factor, is jittered within bounds, is capped, and resets after a welcome', async () => {
  let r = 0;
  const env = setup({ reconnect: { minMs: 100, maxMs: 1000, factor: 2, jitter: 0.5 }, random: () => r });
  await connected(env);
  const randoms = [0, 0.999, 0.5, 0, 0.999, 0.25];
  const delays = [];
  for (const value of randoms) {
    r = value;
    const timers = env.clock.delays.length;
    env.ws.drop(1006);
    await flush();
    delays.push(env.clock.delays.slice(timers)[0]);
    await env.clock.advance(1000);
  }
  // base = min(1000, 100 * 2^n); delay = base/2 + base/2 * random
  const bases = [100, 200, 400, 800, 1000, 1000];
  bases.forEach((base, i) => {
    assert.ok(delays[i] >= base / 2 && delays[i] <= base, `delay ${delays[i]} within [${base / 2}, ${base}]`);
    assert.equal(delays[i], base / 2 + (base / 2) * randoms[i]);
  });

  env.ws.welcome('s_9');
  await flush();
  r = 0;
  const timers = env.clock.delays.length;
  env.ws.drop(1006);
  await flush();
  assert.equal(env.clock.delays[timers], 50, 'back to minMs after a successful connect');
});

test('state: connecting, open, reconnecting, open', async () => {
  const env = setup();
  const states = env.collect('state');
  await connected(env);
  await reconnect(env, 's_2');
  assert.deepEqual(states, ['connecting', 'open', 'reconnecting', 'open']);
});

test('full jitter (jitter 1) draws from [0, base]', async () => {
  const env = setup({ reconnect: { minMs: 400, jitter: 1 }, random: () => 0 });
  await connected(env);
  const timers = env.clock.delays.length;
  env.ws.drop(1006);
  await flush();
  assert.equal(env.clock.delays[timers], 0);
});

test('goaway: reconnect after retry_ms plus jitter, not before', async () => {
  const env = setup({ random: () => 0.999 });
  await connected(env);
  const goaways = env.collect('goaway');
  env.ws.receive({ type: 'goaway', retry_ms: 1000 });
  env.ws.drop(1001, 'server shutting down');
  assert.equal(goaways.length, 1);

  await env.clock.advance(999);
  assert.equal(env.sockets.length, 1);
  await env.clock.advance(600); // retry_ms 1000 + up to half of it as jitter
  assert.equal(env.sockets.length, 2);
  // The next failure backs off normally again.
  const timers = env.clock.delays.length;
  env.ws.drop(1006);
  await flush();
  assert.ok(env.clock.delays[timers] <= 500);
});

test('4001 without getToken: closed, an unauthorized error, no reconnect', async () => {
  const env = setup();
  await connected(env);
  await joinRoom(env, ROOM);
  const sending = env.client.send(ROOM, 'hi');
  const errors = env.collect('error');
  env.ws.receive({ type: 'error', code: 'unauthorized', message: 'token expired' });
  env.ws.drop(4001, 'token expired');

  assert.equal(env.client.state, 'closed');
  assert.equal(errors.length, 1, 'one error, not one for the frame and one for the close');
  assert.equal(errors[0].code, 'unauthorized');
  assert.equal(errors[0].message, 'token expired');
  await assert.rejects(sending, { code: 'unauthorized' });
  await env.clock.advance(120000);
  assert.equal(env.sockets.length, 1);

  // With a new token the page can start again; the room is rejoined.
  env.client.token = 'fresh';
  const again = env.client.connect();
  assert.equal(env.ws.token, 'fresh');
  env.ws.welcome('s_2');
  await again;
  assert.equal(env.ws.last('join').room, ROOM);
});

test('4001 with getToken: a fresh token and a reconnect', async () => {
  const tokens = ['first', 'second'];
  const env = setup({ token: undefined, getToken: async () => tokens.shift() });
  const welcome = env.client.connect();
  await flush();
  assert.equal(env.ws.token, 'first');
  env.ws.welcome('s_1');
  await welcome;
  await joinRoom(env, ROOM);

  env.ws.receive({ type: 'error', code: 'unauthorized', message: 'token expired' });
  env.ws.drop(4001, 'token expired');
  assert.equal(env.client.state, 'reconnecting');
  await env.clock.advance(0);
  assert.equal(env.sockets.length, 2);
  assert.equal(env.ws.token, 'second');
  env.ws.welcome('s_2');
  assert.equal(env.ws.last('join').room, ROOM);
});

test('a failing getToken is reported and retried with backoff', async () => {
  let calls = 0;
  const env = setup({
    token: undefined,
    getToken: async () => {
      calls += 1;
      if (calls === 1) throw new Error('backend down');
      return 'ok-token';
    },
  });
  const errors = env.collect('error');
  const connecting = env.client.connect();
  await flush();
  assert.equal(errors[0].code, 'token_failed');
  assert.equal(env.sockets.length, 0);
  await env.clock.advance(500);
  assert.equal(env.ws.token, 'ok-token');
  env.ws.welcome('s_1');
  await connecting;
});

test('4008 and 4009 reconnect, backing off further each time although each connection had its welcome', async () => {
  const env = setup({ random: () => 1 - Number.EPSILON, reconnect: { jitter: 0 } });
  await connected(env);
  const delays = [];
  for (const code of [4008, 4009, 4008]) {
    const timers = env.clock.delays.length;
    env.ws.drop(code);
    await flush();
    delays.push(env.clock.delays[timers]);
    await env.clock.advance(60000);
    env.ws.welcome('s_x');
    await flush();
  }
  assert.deepEqual(delays, [500, 1000, 2000]);
});

test('close() closes with 1000, rejects what waits, and never reconnects', async () => {
  const env = setup();
  await connected(env);
  await joinRoom(env, ROOM);
  const ping = env.client.ping();
  const sending = env.client.send(ROOM, 'bye');
  const ws = env.ws;
  env.client.close();
  assert.deepEqual(ws.closedWith, { code: 1000, reason: 'bye' });
  assert.equal(env.client.state, 'closed');
  await assert.rejects(ping, { code: 'closed' });
  await assert.rejects(sending, { code: 'closed' });
  await flush(); // the socket's own close event arrives late and is ignored
  await env.clock.advance(120000);
  assert.equal(env.sockets.length, 1);
  assert.equal(env.client.state, 'closed');
});

test('close() during the backoff cancels the reconnect', async () => {
  const env = setup();
  const welcome = env.client.connect();
  env.ws.drop(1006); // never got a welcome
  env.client.close();
  await assert.rejects(welcome, { code: 'closed' });
  await env.clock.advance(120000);
  assert.equal(env.sockets.length, 1);
});

test('close() while getToken is pending opens no socket', async () => {
  let release;
  const env = setup({ token: undefined, getToken: () => new Promise((resolve) => { release = resolve; }) });
  const welcome = env.client.connect();
  await flush();
  env.client.close();
  release('late');
  await assert.rejects(welcome, { code: 'closed' });
  await flush();
  assert.equal(env.sockets.length, 0);
});

test('join and send before connect are carried out once connected', async () => {
  const env = setup();
  const joining = env.client.join(ROOM);
  const sending = env.client.send(ROOM, 'early');
  await connected(env);
  assert.deepEqual(env.ws.sent.map((frame) => frame.type), ['join']);
  env.ws.receive(joined(env.ws.last('join'), { seq: 0 }));
  await joining;
  const chat = env.ws.last('chat');
  env.ws.receive({ type: 'ack', ref: chat.ref, room: ROOM, seq: 1, id: 'm_1', at: 'x' });
  assert.equal((await sending).seq, 1);
});

test('ping: a missing pong within pingMs drops the connection and reconnects', async () => {
  const env = setup({ pingMs: 1000 });
  await connected(env);
  await env.clock.advance(1000);
  const ping = env.ws.last('ping');
  assert.ok(ping, 'a ping after pingMs');
  env.ws.receive({ type: 'pong', ref: ping.ref });

  await env.clock.advance(1000);
  assert.equal(env.ws.frames('ping').length, 2);
  const states = env.collect('state');
  await env.clock.advance(1000); // no pong for the second ping
  assert.deepEqual(env.sockets[0].closedWith, { code: 1000, reason: 'no pong' });
  assert.deepEqual(states, ['reconnecting']);
  await env.clock.advance(1000);
  assert.equal(env.sockets.length, 2);
});

// ------------------------------------------------------------------ waiting room

test('checkin and watch are renewed after a reconnect; admitted ends the checkin', async () => {
  const env = setup();
  const queues = env.collect('queue');
  const states = env.collect('queue_state');
  await connected(env);

  const checkin = env.client.checkin(ROOM);
  const queueFrame = { type: 'queue', ref: env.ws.last('checkin').ref, queue: 'q-ana', room: ROOM, ticket: 'A-012', position: 3, ahead: 2, eta_s: 600 };
  env.ws.receive(queueFrame);
  assert.deepEqual(await checkin, queueFrame);
  const watch = env.client.watch('q-ana');
  env.ws.receive({ type: 'queue_state', ref: env.ws.last('watch').ref, queue: 'q-ana', entries: [] });
  await watch;
  env.ws.receive({ type: 'queue', queue: 'q-ana', room: ROOM, ticket: 'A-012', position: 2, ahead: 1, eta_s: 300 });
  assert.deepEqual(queues.map((q) => q.position), [3, 2], 'the reply and the updates are events');

  await reconnect(env, 's_2');
  assert.equal(env.ws.last('checkin').room, ROOM);
  assert.equal(env.ws.last('watch').queue, 'q-ana');
  env.ws.receive({ type: 'queue', ref: env.ws.last('checkin').ref, queue: 'q-ana', room: ROOM, ticket: 'A-012', position: 1, ahead: 0, eta_s: 60 });
  env.ws.receive({ type: 'queue_state', ref: env.ws.last('watch').ref, queue: 'q-ana', entries: [] });
  assert.deepEqual(queues.map((q) => q.position), [3, 2, 1]);
  assert.equal(states.length, 2);

  env.ws.receive({ type: 'admitted', room: ROOM });
  await reconnect(env, 's_3');
  assert.equal(env.ws.frames('checkin').length, 0, 'admitted: out of the queue');
  assert.equal(env.ws.frames('watch').length, 1);
});

test('a notice that a followed queue restarted renews the watch or the checkin it names', async () => {
  const env = setup();
  const errors = [];
  env.client.on('error', (e) => errors.push(e));
  await connected(env);
  const checkin = env.client.checkin(ROOM);
  env.ws.receive({ type: 'queue', ref: env.ws.last('checkin').ref, queue: 'q-ana', room: ROOM, ticket: 'A-001', position: 1, ahead: 0, eta_s: 0 });
  await checkin;
  const watch = env.client.watch('q-ana');
  env.ws.receive({ type: 'queue_state', ref: env.ws.last('watch').ref, queue: 'q-ana', entries: [] });
  await watch;

  env.ws.receive({ type: 'error', code: 'unavailable', message: 'queue q-ana restarted: watch again', queue: 'q-ana' });
  assert.deepEqual([env.ws.frames('watch').length, env.ws.frames('checkin').length], [2, 1]);
  env.ws.receive({ type: 'error', code: 'unavailable', message: 'the queue of c-1001 restarted: check in again', room: ROOM });
  assert.deepEqual([env.ws.frames('watch').length, env.ws.frames('checkin').length], [2, 2]);
  assert.equal(env.ws.last('checkin').room, ROOM);
  assert.equal(errors.length, 0);
  // The renewals settle like any other.
  env.ws.receive({ type: 'queue_state', ref: env.ws.last('watch').ref, queue: 'q-ana', entries: [] });
  env.ws.receive({ type: 'queue', ref: env.ws.last('checkin').ref, queue: 'q-ana', room: ROOM, ticket: 'A-001', position: 1, ahead: 0, eta_s: 0 });
  assert.equal(errors.length, 0);
  // A queue it does not watch is reported.
  env.ws.receive({ type: 'error', code: 'unavailable', message: 'queue q-bo restarted: watch again', queue: 'q-bo' });
  assert.deepEqual([env.ws.frames('watch').length, errors.length], [2, 1]);
});

test('payment events reach listeners; staff may admit with an override', async () => {
  const env = setup();
  const payments = env.collect('payment');
  await connected(env);
  env.ws.receive({ type: 'payment', room: ROOM, status: 'paid' });
  assert.deepEqual(payments, [{ type: 'payment', room: ROOM, status: 'paid' }]);
  const plain = env.client.admit(ROOM);
  assert.equal(env.ws.last('admit').override_payment, undefined, 'no override unless asked');
  env.ws.receive({ type: 'ok', ref: env.ws.last('admit').ref });
  await plain;
  const forced = env.client.admit(ROOM, { overridePayment: true });
  assert.equal(env.ws.last('admit').override_payment, true);
  env.ws.receive({ type: 'ok', ref: env.ws.last('admit').ref });
  await forced;
});

test('a refused checkin is not renewed', async () => {
  const env = setup();
  await connected(env);
  const checkin = env.client.checkin(ROOM);
  env.ws.receive({ type: 'error', ref: env.ws.last('checkin').ref, code: 'forbidden', message: 'not a member of c-1001' });
  await assert.rejects(checkin, { code: 'forbidden' });
  await reconnect(env, 's_2');
  assert.equal(env.ws.frames('checkin').length, 0);
});

test('a first checkin answered unavailable is tried again, and resolves then', async () => {
  const env = setup();
  await connected(env);
  const checkin = env.client.checkin(ROOM);
  env.ws.receive({ type: 'error', ref: env.ws.last('checkin').ref, code: 'unavailable', message: 'queue is restarting, retry', retry_ms: 200 });
  await env.clock.advance(199);
  assert.equal(env.ws.frames('checkin').length, 1);
  await env.clock.advance(1);
  assert.equal(env.ws.frames('checkin').length, 2);
  const queue = { type: 'queue', ref: env.ws.last('checkin').ref, queue: 'q', room: ROOM, ticket: 'A-001', position: 1, ahead: 0, eta_s: 0 };
  env.ws.receive(queue);
  assert.equal((await checkin).ticket, 'A-001');
});

test('a checkin whose reply the connection took is renewed after the reconnect', async () => {
  const env = setup();
  await connected(env);
  const checkin = env.client.checkin(ROOM);
  const lost = assert.rejects(checkin, { code: 'disconnected' });
  await reconnect(env, 's_2');
  await lost;
  assert.equal(env.ws.frames('checkin').length, 1, 'sent again on the new connection');
});

test('a renewal refused for good says which subscription it ended', async () => {
  const env = setup();
  const errors = [];
  env.client.on('error', (e) => errors.push(e));
  await connected(env);
  const checkin = env.client.checkin(ROOM);
  env.ws.receive({ type: 'queue', ref: env.ws.last('checkin').ref, queue: 'q', room: ROOM, ticket: 'A-001', position: 1, ahead: 0, eta_s: 0 });
  await checkin;
  await reconnect(env, 's_2');
  env.ws.receive({ type: 'error', ref: env.ws.last('checkin').ref, code: 'conflict', message: 'c-1001 was admitted already: join the consultation' });
  assert.equal(errors.length, 1);
  assert.deepEqual([errors[0].code, errors[0].request.type, errors[0].request.room], ['conflict', 'checkin', ROOM]);
});

test('read markers in joined are emitted as read events, after the history', async () => {
  const env = setup();
  const events = [];
  env.client.on('message', (m) => events.push(`message ${m.seq}`));
  env.client.on('read', (r) => events.push(`read ${r.user.id} ${r.seq} ${r.room}`));
  await connected(env);
  await joinRoom(env, ROOM, { seq: 2, history: [message(ROOM, 1), message(ROOM, 2)], read: [{ user: { id: 'u7' }, seq: 2 }] });
  assert.deepEqual(events, ['message 1', 'message 2', `read u7 2 ${ROOM}`]);
});
