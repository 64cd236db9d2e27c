// The demo pages in a real browser: create a consultation on the launcher,
// open the patient and the doctor side, chat both ways, reload and see the
// history, end the consultation.
//
// Needs TELEHUB_URL (a running hub in demo mode) and a Chromium binary
// (CHROMIUM, default /usr/bin/chromium). Run: TELEHUB_URL=http://127.0.0.1:8080 node --test

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const base = process.env.TELEHUB_URL;
if (!base) {
  throw new Error('TELEHUB_URL is not set: point it at a running hub in demo mode, e.g. TELEHUB_URL=http://127.0.0.1:8080');
}

let browser;
const pageErrors = [];

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run', '--disable-quic'],
  });
});

after(async () => {
  await browser?.close();
});

function watchErrors(page, name) {
  page.on('pageerror', (err) => pageErrors.push(`${name}: ${err.message}`));
}

// Each side gets its own browser context, like two different people.
async function openSide(url, name) {
  const context = await browser.newContext();
  const page = await context.newPage();
  watchErrors(page, name);
  await page.goto(new URL(url, base).toString());
  await page.locator('#status[data-state="online"]').waitFor();
  return page;
}

async function say(page, text) {
  await page.locator('#chat-input').fill(text);
  await page.locator('#chat-input').press('Enter');
}

// A stored message carries its seq; a pending one does not yet.
function stored(page, text) {
  return page.locator('#messages li[data-seq]', { hasText: text });
}

test('a patient and a doctor chat through the demo pages', { timeout: 90_000 }, async () => {
  const launcher = await browser.newPage();
  watchErrors(launcher, 'launcher');
  await launcher.goto(new URL('/', base).toString());
  await launcher.getByRole('heading', { name: 'Telehub demo' }).waitFor();
  await launcher.getByLabel('Patient name').fill('Sari');
  await launcher.getByLabel('Doctor name').fill('Dr. Ana');
  await launcher.getByRole('button', { name: 'Create demo consultation' }).click();

  const patientLink = launcher.getByRole('link', { name: 'Open patient side' });
  const doctorLink = launcher.getByRole('link', { name: 'Open doctor side' });
  await patientLink.waitFor();
  const patientUrl = await patientLink.getAttribute('href');
  const doctorUrl = await doctorLink.getAttribute('href');
  assert.match(patientUrl, /^\/demo\/room\?room=c-[^&]+&token=/);
  assert.match(doctorUrl, /^\/demo\/room\?room=c-[^&]+&token=/);
  const roomId = new URL(patientUrl, base).searchParams.get('room');
  assert.equal(await launcher.locator('#room-id').textContent(), roomId);
  await launcher.close();

  const patient = await openSide(patientUrl, 'patient');
  const doctor = await openSide(doctorUrl, 'doctor');
  assert.match(await patient.locator('#me').textContent(), /You are Sari \(patient\)/);
  assert.match(await doctor.locator('#me').textContent(), /You are Dr\. Ana \(doctor\)/);

  // Presence, both ways; only the doctor may end.
  await patient.locator('#peers', { hasText: 'Dr. Ana (doctor)' }).waitFor();
  await doctor.locator('#peers', { hasText: 'Sari (patient)' }).waitFor();
  assert.equal(await patient.locator('#end').isVisible(), false, 'a patient has no end button');
  assert.equal(await doctor.locator('#end').isVisible(), true, 'a doctor has an end button');

  // Patient -> doctor.
  await say(patient, 'Hello doctor');
  await stored(doctor, 'Hello doctor').waitFor();
  await stored(patient, 'Hello doctor').waitFor();

  // Doctor -> patient.
  await say(doctor, 'Hello Sari, how can I help?');
  await stored(patient, 'Hello Sari, how can I help?').waitFor();
  await stored(doctor, 'Hello Sari, how can I help?').waitFor();

  // The sender's own message is shown once (the live echo replaced the draft).
  await patient.waitForFunction(() => document.querySelectorAll('#messages li').length === 2);
  assert.equal(await patient.locator('#messages li', { hasText: 'Hello doctor' }).count(), 1);
  assert.equal(await patient.locator('#messages li[data-pending]').count(), 0);

  // The patient has read the reply; the doctor sees it.
  await doctor.locator('#messages li.mine[data-read]', { hasText: 'Hello Sari' }).waitFor();

  // Typing shows on the other side.
  await doctor.locator('#chat-input').pressSequentially('Let me');
  await patient.locator('#typing', { hasText: 'Dr. Ana is typing' }).waitFor();

  // A reload resumes with the history, each message once.
  await patient.reload();
  await patient.locator('#status[data-state="online"]').waitFor();
  await stored(patient, 'Hello doctor').waitFor();
  await stored(patient, 'Hello Sari, how can I help?').waitFor();
  assert.equal(await patient.locator('#messages li[data-seq]').count(), 2);
  // The seqs are in order.
  const seqs = await patient.locator('#messages li[data-seq]').evaluateAll((els) => els.map((e) => Number(e.dataset.seq)));
  assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b));

  // The doctor ends; both sides show it and chat is closed, history stays.
  await doctor.locator('#end').click();
  for (const page of [doctor, patient]) {
    await page.locator('#status[data-state="ended"]').waitFor();
    await page.getByText('Consultation ended by Dr. Ana').waitFor();
    await page.waitForFunction(() => document.getElementById('chat-input').disabled);
    assert.equal(await page.locator('#chat-input').isDisabled(), true);
    assert.equal(await page.locator('#messages li[data-seq]').count(), 2);
  }

  assert.deepEqual(pageErrors, [], 'no script errors on the pages');
});
