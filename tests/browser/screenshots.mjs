// Takes the screenshots in docs/screenshots from a running hub in demo mode:
//   TELEHUB_URL=http://127.0.0.1:8080 node tests/browser/screenshots.mjs
// (not a test: run by hand when the pages change)

import { chromium } from 'playwright-core';

const base = process.env.TELEHUB_URL ?? 'http://127.0.0.1:8080';
const out = new URL('../../docs/screenshots/', import.meta.url).pathname;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
    '--allow-loopback-in-peer-connection', '--disable-features=WebRtcHideLocalIpsWithMdns', '--autoplay-policy=no-user-gesture-required'],
});

async function page(url, viewport = { width: 1280, height: 800 }) {
  const context = await browser.newContext({ viewport, permissions: ['camera', 'microphone'] });
  const p = await context.newPage();
  p.on('dialog', (d) => d.accept());
  await p.goto(new URL(url, base).toString());
  return p;
}

const launcher = await page('/', { width: 1000, height: 760 });
await launcher.getByLabel('Patient name').fill('Sari Wulandari');
await launcher.getByRole('button', { name: 'Create demo consultation' }).click();
await launcher.locator('#links:not([hidden])').waitFor();
const href = (name) => launcher.getByRole('link', { name }).getAttribute('href');
const [patientUrl, doctorUrl, displayUrl] = [await href('Open patient side'), await href('Open doctor side'), await href('Open waiting-room display')];
await launcher.getByRole('button', { name: 'Add another patient for this doctor' }).click();
await launcher.locator('#more li').waitFor();
const secondUrl = await launcher.locator('#more a').getAttribute('href');
await launcher.screenshot({ path: `${out}launcher.png` });

const display = await page(displayUrl, { width: 1600, height: 900 });
const patient = await page(patientUrl, { width: 390, height: 844 });
await patient.locator('#ticket').filter({ hasText: /-/ }).waitFor();
const second = await page(secondUrl, { width: 390, height: 844 });
await second.locator('#position', { hasText: 'Number 2' }).waitFor();
await second.screenshot({ path: `${out}patient-waiting-phone.png` });

const doctor = await page(doctorUrl, { width: 1440, height: 900 });
await doctor.locator('#queue li').nth(1).waitFor();
await doctor.screenshot({ path: `${out}doctor-queue.png` });
await doctor.locator('#queue li').first().getByRole('button').click();
await display.locator('#now-serving').filter({ hasText: /-/ }).waitFor();
await display.screenshot({ path: `${out}display.png` });
await doctor.locator('#call-state[data-state="connected"]').waitFor({ timeout: 45000 });
await patient.locator('#chat-input').fill('Good morning, doctor. I have had a fever since Sunday.');
await patient.locator('#chat-input').press('Enter');
await doctor.locator('#messages li[data-seq]').waitFor();
await doctor.locator('#chat-input').fill('Good morning, Sari. Any cough or sore throat?');
await doctor.locator('#chat-input').press('Enter');
await patient.locator('#messages li[data-seq]').nth(1).waitFor();
await patient.locator('#chat-input').fill('A little');
await doctor.locator('#typing', { hasText: 'typing' }).waitFor();
await doctor.screenshot({ path: `${out}doctor-consultation.png` });
await patient.screenshot({ path: `${out}patient-consultation-phone.png` });
await browser.close();
console.log(`screenshots written to ${out}`);
