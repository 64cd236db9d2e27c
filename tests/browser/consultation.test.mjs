// The pages in a real browser, end to end: a patient checks in, the clinic
// display shows the ticket without the name, the doctor lets the patient
// in, both pages reach a connected WebRTC call through the hub, chat flows
// both ways with typing and read receipts, the patient reloads and sees the
// whole history, and a forced ICE failure moves both pages to Jitsi with
// their own tokens.
//
// Needs TELEHUB_URL (a running hub in demo mode, with TELEHUB_JITSI_DOMAIN,
// _APP_ID=telehub-test and _APP_SECRET=jitsi-test-secret) and Chromium
// (CHROMIUM, default /usr/bin/chromium). scripts/test starts both.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { chromium } from 'playwright-core';

const base = process.env.TELEHUB_URL;
if (!base) throw new Error('TELEHUB_URL is not set: scripts/test starts a hub in demo mode and sets it');
const JITSI_SECRET = process.env.JITSI_SECRET ?? 'jitsi-test-secret';

let browser;
const problems = [];

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run', '--disable-quic',
      // A camera and microphone that exist, and no permission prompt.
      '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
      '--allow-loopback-in-peer-connection',
      // Host candidates as plain addresses: mDNS names do not resolve in
      // containers without multicast, and gathering can hang on them.
      '--disable-features=WebRtcHideLocalIpsWithMdns',
      '--autoplay-policy=no-user-gesture-required',
    ],
  });
});

after(async () => {
  await browser?.close();
});

/** A page in a browser context of its own, like a separate person. */
async function open(url, name) {
  const context = await browser.newContext({ permissions: ['camera', 'microphone'] });
  const page = await context.newPage();
  page.on('pageerror', (err) => problems.push(`${name}: ${err.message}`));
  page.on('console', (m) => m.type() === 'warning' && console.log(`${name}: ${m.text()}`));
  page.on('dialog', (dialog) => dialog.accept());
  await page.goto(new URL(url, base).toString());
  await page.locator('#connection[data-state="open"]').waitFor();
  return page;
}

/** The verified claims of a Jitsi token. */
function jitsiClaims(jwt) {
  const [header, payload, signature] = jwt.split('.');
  const expected = createHmac('sha256', JITSI_SECRET).update(`${header}.${payload}`).digest('base64url');
  assert.equal(signature, expected, 'the Jitsi token is signed with the app secret');
  return JSON.parse(Buffer.from(payload, 'base64url').toString());
}

async function say(page, text) {
  await page.locator('#chat-input').fill(text);
  await page.locator('#chat-input').press('Enter');
}

/** What each peer connection of a page is doing, for failure messages. */
function calls(page) {
  return page.evaluate(() => {
    const call = globalThis.telehub?.call;
    if (!call) return 'no call';
    return call.sessions.map((s) => {
      const pc = call.peerConnection(s);
      if (!pc) return `${s}: none`;
      const remote = (pc.remoteDescription?.sdp ?? '').split('\r\n').filter((l) => l.startsWith('a=candidate')).length;
      const local = (pc.localDescription?.sdp ?? '').split('\r\n').filter((l) => l.startsWith('a=candidate')).length;
      return `${s}: ${pc.signalingState}/${pc.iceConnectionState}/${pc.connectionState}/${pc.iceGatheringState} candidates in sdp local ${local} remote ${remote}`;
    }).join('; ');
  });
}

/** Waits until both pages report a connected call. */
async function callConnected(a, b) {
  try {
    for (const page of [a, b]) await page.locator('#call-state[data-state="connected"]').waitFor({ timeout: 45_000 });
  } catch (err) {
    throw new Error(`${err.message}\n  at ${new Error().stack.split('\n')[2]}\n  first page: ${await calls(a)}\n  second page: ${await calls(b)}`);
  }
}

function stored(page, text) {
  return page.locator('#messages li[data-seq]', { hasText: text });
}

test('a whole consultation: waiting room, call, chat, reload, Jitsi fallback', { timeout: 120_000 }, async () => {
  const launcher = await browser.newPage();
  await launcher.goto(new URL('/', base).toString());
  await launcher.getByRole('heading', { name: 'Telehub demo' }).waitFor();
  await launcher.getByLabel('Patient name').fill('Sari Wulandari');
  await launcher.getByLabel('Doctor name').fill('Dr. Ana');
  await launcher.getByRole('button', { name: 'Create demo consultation' }).click();
  await launcher.locator('#links:not([hidden])').waitFor();
  const link = async (name) => launcher.getByRole('link', { name }).getAttribute('href');
  const patientUrl = await link('Open patient side');
  const doctorUrl = await link('Open doctor side');
  const displayUrl = await link('Open waiting-room display');
  const room = new URL(patientUrl, base).searchParams.get('room');
  assert.match(patientUrl, /^\/patient\?room=c-[0-9a-f]+#token=/);
  await launcher.close();

  // The display first, so it sees the patient arrive.
  const display = await open(displayUrl, 'display');
  await display.locator('#nobody').waitFor();

  const patient = await open(patientUrl, 'patient');
  // The first ticket of this queue today; its letter depends on how many
  // demo queues the clinic had today.
  await patient.locator('#ticket', { hasText: /^[A-Z]-001$/ }).waitFor();
  const ticket = await patient.locator('#ticket').textContent();
  assert.match(await patient.locator('#position').textContent(), /You are next/);
  await display.locator('#tickets li', { hasText: ticket }).waitFor();
  const board = await display.locator('body').innerText();
  assert.ok(!board.includes('Sari'), 'the display never shows a name');
  assert.ok(!board.includes(room), 'nor a consultation id');

  // The doctor lets the patient in from the waiting room.
  const doctor = await open(doctorUrl, 'doctor');
  const entry = doctor.locator('#queue li', { hasText: 'Sari Wulandari' });
  await entry.locator('.presence.online').waitFor();
  await entry.getByRole('button', { name: /Let in Sari Wulandari/ }).click();
  await display.locator('#now-serving', { hasText: ticket }).waitFor();
  await patient.locator('#consultation:not([hidden])').waitFor();

  // A real peer-to-peer call through the hub's signaling.
  await callConnected(patient, doctor);
  await doctor.waitForFunction(() => document.querySelector('#remote-video')?.srcObject?.getVideoTracks().length > 0);

  // Chat both ways, with typing and read receipts.
  await patient.locator('#chat-input').fill('I have had a fever');
  await doctor.locator('#typing', { hasText: 'Sari Wulandari is typing' }).waitFor();
  await patient.locator('#chat-input').press('Enter');
  await stored(doctor, 'I have had a fever').waitFor();
  await say(doctor, 'Since when?');
  await stored(patient, 'Since when?').waitFor();
  await stored(patient, 'I have had a fever').locator('.meta', { hasText: 'Seen' }).waitFor();
  await say(patient, 'Two days');
  await stored(doctor, 'Two days').waitFor();

  // A reload shows the whole history, once each.
  await patient.reload();
  await patient.locator('#connection[data-state="open"]').waitFor();
  for (const text of ['I have had a fever', 'Since when?', 'Two days']) {
    await stored(patient, text).waitFor();
    assert.equal(await stored(patient, text).count(), 1, text);
  }
  const seqs = await patient.locator('#messages li[data-seq]').evaluateAll((items) => items.map((i) => Number(i.dataset.seq)));
  assert.deepEqual(seqs, [1, 2, 3]);
  // The doctor's read marker comes back with the history: still "Seen".
  await stored(patient, 'I have had a fever').locator('.meta', { hasText: 'Seen' }).waitFor();
  await callConnected(patient, doctor);

  // A forced ICE failure moves both pages to Jitsi, each with its own token.
  await patient.evaluate((id) => globalThis.telehub.client.reportIceFailed(id), room);
  for (const [page, moderator] of [[patient, false], [doctor, true]]) {
    await page.locator('#media-mode[data-mode="jitsi"]').waitFor();
    const jwt = await page.locator('#jitsi-link').getAttribute('data-jwt');
    const claims = jitsiClaims(jwt);
    assert.equal(claims.iss, 'telehub-test');
    assert.equal(claims.room, room.toLowerCase());
    assert.equal(claims.context.user.moderator, moderator);
    assert.equal(typeof claims.context.user.name, 'string');
    const href = await page.locator('#jitsi-link').getAttribute('href');
    assert.equal(href, `https://${claims.sub}/${claims.room}?jwt=${jwt}`);
  }

  // The doctor ends it; the patient is told.
  await doctor.getByRole('button', { name: 'End consultation' }).click();
  await patient.locator('#ended:not([hidden])').waitFor();

  assert.deepEqual(problems, [], 'no script errors on any page');
});
