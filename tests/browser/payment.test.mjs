// The patient page of a consultation with a price, in a real browser: it
// shows what is owed, its Pay button goes to Stripe Checkout (a stand-in
// here, which checks the request the hub makes), and a payment confirmed by
// Stripe's signed webhook turns the page to "Paid" while it is open.
//
// Needs TELEHUB_URL (a hub in demo mode with TELEHUB_API_KEY=API_KEY,
// TELEHUB_STRIPE_SECRET_KEY=sk_test_browser, TELEHUB_STRIPE_API_BASE at
// http://127.0.0.1:STRIPE_PORT, TELEHUB_STRIPE_WEBHOOK_SECRET and the
// payment URLs) and Chromium; scripts/test starts the hub and sets them.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { createServer } from 'node:http';
import { chromium } from 'playwright-core';

const base = process.env.TELEHUB_URL;
const apiKey = process.env.API_KEY;
const stripePort = Number(process.env.STRIPE_PORT);
const webhookSecret = process.env.STRIPE_WEBHOOK_SECRET;
if (!base || !apiKey || !stripePort || !webhookSecret) {
  throw new Error('TELEHUB_URL, API_KEY, STRIPE_PORT and STRIPE_WEBHOOK_SECRET must be set: scripts/test sets them');
}

/** The Checkout stand-in: what the hub asked for, and the page it sends patients to. */
const sessions = [];
const standIn = createServer((req, res) => {
  let body = '';
  req.on('data', (chunk) => { body += chunk; });
  req.on('end', () => {
    if (req.method === 'POST' && req.url === '/v1/checkout/sessions') {
      if (req.headers.authorization !== 'Bearer sk_test_browser') {
        res.writeHead(401, { 'content-type': 'application/json' }).end('{"error":{"message":"Invalid API Key"}}');
        return;
      }
      const form = Object.fromEntries(new URLSearchParams(body));
      sessions.push({ form, key: req.headers['idempotency-key'] });
      const id = `cs_test_${sessions.length}`;
      const url = `http://127.0.0.1:${stripePort}/pay/${id}`;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id, object: 'checkout.session', url }));
      return;
    }
    if (req.method === 'GET' && req.url.startsWith('/pay/')) {
      res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>Checkout stand-in</title><h1>Pay here</h1>');
      return;
    }
    res.writeHead(404).end();
  });
});

let browser;

before(async () => {
  await new Promise((resolve) => standIn.listen(stripePort, '127.0.0.1', resolve));
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run'],
  });
});

after(async () => {
  await browser?.close();
  standIn.close();
});

async function api(path, body) {
  const response = await fetch(new URL(path, base), {
    method: 'POST',
    headers: { Authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const json = await response.json();
  assert.ok(response.ok, `${path}: ${JSON.stringify(json)}`);
  return json;
}

async function patientPage(room, token) {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(new URL(`/patient?room=${room}#token=${token}`, base).toString());
  await page.locator('#connection[data-state="open"]').waitFor();
  return page;
}

test('the patient pays through Checkout, and the page turns to paid when Stripe confirms', async () => {
  const room = `c-pay-${Date.now()}`;
  await api('/v1/consultations', {
    id: room,
    clinic: 'k-pay',
    patient: { id: `p-${room}`, name: 'Budi' },
    doctor: { id: 'd-pay', name: 'Ana' },
    payment: { amount: 15000, currency: 'usd' },
  });
  const { token } = await api('/v1/tokens', { sub: `p-${room}`, name: 'Budi', role: 'patient' });

  // What is owed, and the way to pay it.
  const paying = await patientPage(room, token);
  await paying.locator('#payment[data-status="unpaid"]').waitFor();
  assert.match(await paying.locator('#payment-status').textContent(), /To pay before the consultation: \$150\.00/);
  await paying.getByRole('button', { name: 'Pay now' }).click();
  await paying.waitForURL(`http://127.0.0.1:${stripePort}/pay/cs_test_1`);
  assert.equal(await paying.locator('h1').textContent(), 'Pay here');
  const [{ form, key }] = sessions;
  assert.equal(form.client_reference_id, room);
  assert.equal(form['line_items[0][price_data][unit_amount]'], '15000');
  assert.equal(form['line_items[0][price_data][currency]'], 'usd');
  assert.ok(key, 'an idempotency key');

  // Stripe confirms (a signed webhook): an open page turns to paid at once.
  const page = await patientPage(room, token);
  await page.locator('#payment[data-status="unpaid"]').waitFor();
  const event = JSON.stringify({
    id: `evt_${room}`,
    type: 'checkout.session.completed',
    data: { object: { id: 'cs_test_1', payment_status: 'paid', client_reference_id: room, payment_intent: `pi_${room}`, amount_total: 15000, currency: 'usd' } },
  });
  const t = Math.floor(Date.now() / 1000);
  const v1 = createHmac('sha256', webhookSecret).update(`${t}.${event}`).digest('hex');
  const response = await fetch(new URL('/v1/webhooks/stripe', base), {
    method: 'POST',
    headers: { 'Stripe-Signature': `t=${t},v1=${v1}`, 'content-type': 'application/json' },
    body: event,
  });
  assert.equal(response.status, 200, await response.text());
  await page.locator('#payment[data-status="paid"]').waitFor();
  assert.match(await page.locator('#payment-status').textContent(), /Paid: \$150\.00\. Thank you\./);
  assert.equal(await page.getByRole('button', { name: 'Pay now' }).isHidden(), true);
});
