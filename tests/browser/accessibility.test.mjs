// Accessibility of every page, checked with axe-core (WCAG 2 A and AA:
// labels, names, roles, contrast, landmarks) in Chromium: the launcher, the
// patient page while waiting and during the consultation (phone size), the
// doctor's waiting room and consultation, and the display.
//
// Needs TELEHUB_URL (a hub in demo mode) like consultation.test.mjs.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const base = process.env.TELEHUB_URL;
if (!base) throw new Error('TELEHUB_URL is not set: scripts/test starts a hub in demo mode and sets it');
const axePath = createRequire(import.meta.url).resolve('axe-core/axe.min.js');

let browser;

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
      '--allow-loopback-in-peer-connection', '--disable-features=WebRtcHideLocalIpsWithMdns'],
  });
});

after(async () => {
  await browser?.close();
});

async function open(url, viewport) {
  // axe is injected as a script tag, which the pages' CSP would refuse.
  const context = await browser.newContext({ viewport, bypassCSP: true, permissions: ['camera', 'microphone'] });
  const page = await context.newPage();
  page.on('dialog', (dialog) => dialog.accept());
  await page.goto(new URL(url, base).toString());
  return page;
}

/** The WCAG A/AA violations axe finds on the page as it is now. */
async function violations(page) {
  await page.addScriptTag({ path: axePath });
  const result = await page.evaluate(() =>
    globalThis.axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } }));
  return result.violations.map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
}

test('every page passes axe-core WCAG 2.1 A and AA checks', { timeout: 120_000 }, async () => {
  const launcher = await open('/', { width: 1000, height: 800 });
  await launcher.getByRole('heading', { name: 'Telehub demo' }).waitFor();
  assert.deepEqual(await violations(launcher), [], 'launcher');
  await launcher.getByRole('button', { name: 'Create demo consultation' }).click();
  await launcher.locator('#links:not([hidden])').waitFor();
  assert.deepEqual(await violations(launcher), [], 'launcher with links');
  const href = (name) => launcher.getByRole('link', { name }).getAttribute('href');
  const [patientUrl, doctorUrl, displayUrl] = [await href('Open patient side'), await href('Open doctor side'), await href('Open waiting-room display')];

  const display = await open(displayUrl, { width: 1600, height: 900 });
  await display.locator('#connection[data-state="open"]').waitFor();
  const patient = await open(patientUrl, { width: 390, height: 844 });
  await patient.locator('#ticket').filter({ hasText: /-/ }).waitFor();
  assert.deepEqual(await violations(patient), [], 'patient, waiting');
  await display.locator('#tickets li').waitFor();
  assert.deepEqual(await violations(display), [], 'display');

  const doctor = await open(doctorUrl, { width: 1440, height: 900 });
  await doctor.locator('#queue li').waitFor();
  assert.deepEqual(await violations(doctor), [], 'doctor, waiting room');
  await doctor.locator('#queue li').getByRole('button').click();
  await patient.locator('#consultation:not([hidden])').waitFor();
  await patient.locator('#chat-input').fill('Hello');
  await patient.locator('#chat-input').press('Enter');
  await doctor.locator('#messages li[data-seq]').waitFor();
  assert.deepEqual(await violations(doctor), [], 'doctor, consultation');
  assert.deepEqual(await violations(patient), [], 'patient, consultation');
  await display.locator('#now-serving').filter({ hasText: /-/ }).waitFor();
  assert.deepEqual(await violations(display), [], 'display calling a ticket');
});
