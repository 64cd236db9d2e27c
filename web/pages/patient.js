// The patient's page: check in, wait with a ticket, position and ETA, then
// the consultation (video, chat) once the doctor lets the patient in.
//
// Link: /patient?room=<consultation>#token=<patient token>

import { Call } from '/sdk/call.js';
import {
  $, ChatPanel, alertUser, apiRequest, claims, connectClient, expired, joinConsultation, minutes, money, params,
  showConnection, stopMedia,
} from './common.js';

const { token, room } = params();

async function main() {
  if (!token || !room) {
    alertUser('This link is incomplete: it needs a consultation and a token. Ask the clinic for your link.');
    return;
  }
  if (expired(token)) {
    alertUser('This link has expired: ask the clinic for a new one.');
    return;
  }
  const name = claims(token).name;
  if (name) $('h1').textContent = `Welcome, ${name}`;
  const client = connectClient(token);
  showConnection(client);
  client.on('queue', showPlace);
  client.on('admitted', (a) => a.room === room && enter(client));
  client.on('ended', (e) => e.room === room && ended(e));
  // Admitted (or ended) while this page was offline: the check-in renewed
  // after the reconnect is refused with `conflict`. Go in: an ended
  // consultation opens read-only.
  client.on('error', (e) => {
    if (e.code === 'conflict' && e.request?.type === 'checkin' && e.request.room === room) enter(client);
  });
  await client.connect();
  showPayment(client);
  try {
    showPlace(await client.checkin(room));
  } catch (err) {
    // Active already (admitted earlier, or a reload during the call): go in.
    if (err.code === 'conflict') return enter(client);
    alertUser(`Could not check in: ${err.message}`);
  }
}

/** What is owed, with a button to pay it through Stripe Checkout. */
async function showPayment(client) {
  let consultation;
  try {
    consultation = await apiRequest(`/v1/consultations/${encodeURIComponent(room)}`, token);
  } catch {
    return; // The waiting room works without it.
  }
  const payment = consultation.payment;
  if (!payment) return;
  const show = (status) => {
    const owed = money(payment.amount, payment.currency);
    const text = { unpaid: `To pay before the consultation: ${owed}.`, paid: `Paid: ${owed}. Thank you.`, refunded: `Refunded: ${owed}.` };
    $('#payment').hidden = false;
    $('#payment').dataset.status = status;
    $('#payment-status').textContent = text[status] ?? status;
    $('#pay').hidden = status !== 'unpaid';
  };
  show(payment.status);
  client.on('payment', (p) => p.room === room && show(p.status));
  $('#pay').addEventListener('click', async () => {
    $('#pay').disabled = true;
    try {
      const session = await apiRequest(`/v1/consultations/${encodeURIComponent(room)}/checkout`, token, 'POST');
      location.assign(session.url);
    } catch (err) {
      $('#pay').disabled = false;
      alertUser(`Could not start the payment: ${err.message}`);
    }
  });
}

function showPlace(queue) {
  if (queue.room !== room) return;
  $('#waiting').hidden = false;
  $('#ticket').textContent = queue.ticket;
  $('#position').textContent =
    queue.ahead === 0 ? 'You are next.' : `Number ${queue.position} in line: ${queue.ahead} ${queue.ahead === 1 ? 'patient' : 'patients'} before you.`;
  $('#position').dataset.position = String(queue.position);
  $('#eta').textContent = `Expected wait: ${minutes(queue.eta_s)}.`;
}

let entered = false;
/** The consultation's chat, once the patient is in. */
let chat = null;
/** The camera's stream, while the consultation runs. */
let stream;

async function enter(client) {
  if (entered) return;
  entered = true;
  chime();
  $('#waiting').hidden = true;
  $('#consultation').hidden = false;
  chat = new ChatPanel(client, room, $('#consultation'));
  try {
    ({ stream } = await joinConsultation(client, room, chat, Call));
  } catch (err) {
    alertUser(`Could not join the consultation: ${err.message}`);
  }
}

function ended(frame) {
  // Ended while still waiting too (the hub tells checked-in sessions).
  $('#waiting').hidden = true;
  $('#pay').hidden = true;
  $('#ended').hidden = false;
  $('#ended-text').textContent = frame.by?.id === 'system' ? 'The consultation was closed.' : `${frame.by?.name ?? 'The doctor'} ended the consultation.`;
  chat?.setEnabled(false, 'The consultation has ended');
  globalThis.telehub?.call?.hangup();
  stopMedia(stream);
  stream = undefined;
}

/** A short tone, so a patient in another tab hears that it is their turn. */
function chime() {
  try {
    const audio = new AudioContext();
    const tone = audio.createOscillator();
    tone.frequency.value = 660;
    tone.connect(audio.destination);
    tone.start();
    tone.stop(audio.currentTime + 0.25);
  } catch {
    // No audio allowed before a user gesture: the page change is enough.
  }
}

main().catch((err) => alertUser(`The page could not start: ${err.message}`));
