// The demo pages in a real browser: create a consultation, open both sides,
// chat both ways, reload and see the history, end the consultation.
// Needs TELEHUB_URL (a hub in demo mode) and Debian's Chromium.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const base = process.env.TELEHUB_URL;
if (!base) throw new Error('TELEHUB_URL must point at a hub in demo mode');

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

async function openSide(url) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on('pageerror', (err) => pageErrors.push(err.message));
  await page.goto(new URL(url, base).toString());
  await page.locator('#status[data-state="online"]').waitFor();
  return page;
}

async function say(page, text) {
  await page.locator('#chat-input').fill(text);
  await page.locator('#chat-input').press('Enter');
}

async function seesStored(page, text) {
  // A stored message has a seq; a pending one does not.
  await page.locator('#messages li[data-seq]', { hasText: text }).first().waitFor();
}

test('a patient and a doctor chat through the demo pages', async () => {
  const launcher = await browser.newPage();
  await launcher.goto(base + '/');
  await launcher.locator('#patient-name').fill('Sari');
  await launcher.locator('#doctor-name').fill('Dr. Ana');
  await launcher.locator('#create').click();
  await launcher.locator('#links').waitFor();
  const patientUrl = await launcher.locator('#patient-link').getAttribute('href');
  const doctorUrl = await launcher.locator('#doctor-link').getAttribute('href');
  assert.match(patientUrl, /^\/demo\/room\?room=c-/);

  const patient = await openSide(patientUrl);
  const doctor = await openSide(doctorUrl);
  assert.match(await patient.locator('#me').textContent(), /Sari \(patient\)/);
  await patient.locator('#peers', { hasText: 'Dr. Ana (doctor)' }).waitFor();
  assert.equal(await patient.locator('#end').isVisible(), false, 'a patient cannot end');
  assert.equal(await doctor.locator('#end').isVisible(), true);

  await say(patient, 'Hello doctor');
  await seesStored(doctor, 'Hello doctor');
  await seesStored(patient, 'Hello doctor');
  await say(doctor, 'Hello Sari, how can I help?');
  await seesStored(patient, 'Hello Sari, how can I help?');
  // The patient read the reply and the doctor sees that.
  await doctor.locator('#messages li.mine .read').first().waitFor();

  // Typing shows on the other side.
  await doctor.locator('#chat-input').pressSequentially('Let me');
  await patient.locator('#typing', { hasText: 'Dr. Ana is typing' }).waitFor();

  // A reload resumes with the whole history, each message once.
  await patient.reload();
  await patient.locator('#status[data-state="online"]').waitFor();
  await seesStored(patient, 'Hello Sari, how can I help?');
  assert.equal(await patient.locator('#messages li[data-seq]').count(), 2);

  // The doctor ends; both sides show it and chat is closed.
  await doctor.locator('#end').click();
  for (const page of [doctor, patient]) {
    await page.locator('#status[data-state="ended"]').waitFor();
    await page.locator('#messages', { hasText: 'Consultation ended by Dr. Ana' }).waitFor();
    assert.equal(await page.locator('#chat-input').isDisabled(), true);
  }
  assert.deepEqual(pageErrors, [], 'no script errors on the pages');
});
