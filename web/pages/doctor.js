// The doctor's page: the waiting room of a queue with "Let in" buttons,
// then the consultation (video, chat, move to Jitsi, end).
//
// Link: /doctor?queue=<queue>#token=<doctor token>; the queue defaults to
// the doctor's id, which is every consultation's default queue. With
// `&room=<consultation>` the page opens that consultation at once.

import { Call } from '/sdk/call.js';
import {
  $, ChatPanel, alertUser, claims, clock, connectClient, el, expired, joinConsultation, params, showConnection, stopMedia,
  watchQueue,
} from './common.js';

const { token, queue: queueParam, room: roomParam } = params();

/** The consultation open on the right, if any. */
let current = null;
/** Rooms whose admission is under way: their buttons stay disabled when the list is drawn again. */
const admitting = new Set();

async function main() {
  if (!token) {
    alertUser('This link is incomplete: it needs a token.');
    return;
  }
  if (expired(token)) {
    alertUser('This link has expired: ask the clinic for a new one.');
    return;
  }
  const me = claims(token);
  const queue = queueParam || me.sub;
  $('h1').textContent = `Waiting room · ${me.name ?? 'Doctor'}`;
  const client = connectClient(token);
  showConnection(client);
  client.on('queue_state', (state) => state.queue === queue && showQueue(client, state));
  client.on('ended', (e) => current?.room === e.room && closeConsultation(client, `The consultation ended at ${clock(e.at)}.`));
  client.on('media_mode', (frame) => {
    if (current?.room !== frame.room) return;
    $('#switch-media').textContent = frame.mode === 'jitsi' ? 'Back to direct video' : 'Move video to Jitsi';
  });
  await client.connect();
  watchQueue(client, queue, (state) => showQueue(client, state), (err) => alertUser(`Cannot show the queue ${queue}: ${err.message}`));
  if (roomParam) open(client, roomParam, null);
  $('#end').addEventListener('click', () => endCurrent(client));
  $('#switch-media').addEventListener('click', () => switchMedia(client));
}

function showQueue(client, state) {
  const list = $('#queue');
  $('#queue-count').textContent = String(state.entries.length);
  $('#queue-empty').hidden = state.entries.length > 0;
  list.replaceChildren(
    ...state.entries.map((entry) => {
      const unpaid = entry.paid === false;
      const admit = el('button', { type: 'button', class: 'admit' }, unpaid ? 'Awaiting payment' : 'Let in');
      const who = `${entry.patient?.name ?? entry.ticket} (ticket ${entry.ticket})`;
      admit.setAttribute('aria-label', unpaid ? `${who} has not paid yet` : `Let in ${who}`);
      // Paying refreshes the queue, which renders an enabled button.
      admit.disabled = unpaid || admitting.has(entry.room);
      admit.addEventListener('click', () => letIn(client, entry, admit));
      return el(
        'li',
        { class: 'entry', 'data-room': entry.room, 'data-ticket': entry.ticket },
        el('span', { class: 'ticket-small' }, entry.ticket),
        el('span', { class: 'name' }, entry.patient?.name ?? ''),
        el('span', { class: `presence ${entry.online ? 'online' : 'offline'}` }, entry.online ? 'online' : 'offline'),
        el('span', { class: 'since' }, `since ${clock(entry.since)}`),
        admit,
      );
    }),
  );
}

async function letIn(client, entry, button) {
  button.disabled = true;
  admitting.add(entry.room);
  try {
    await client.admit(entry.room);
  } catch (err) {
    button.disabled = false;
    alertUser(`Could not let ${entry.patient?.name ?? entry.ticket} in: ${err.message}`);
    return;
  } finally {
    admitting.delete(entry.room);
  }
  await open(client, entry.room, entry.patient?.name);
}

async function open(client, room, patientName) {
  if (current?.room === room) return;
  closeConsultation(client, '');
  const section = $('#consultation');
  section.hidden = false;
  $('#consultation-title').textContent = patientName ? `Consultation with ${patientName}` : `Consultation ${room}`;
  const chat = new ChatPanel(client, room, section);
  current = { room, chat, call: null, stream: undefined };
  try {
    const { joined, call, stream } = await joinConsultation(client, room, chat, Call);
    // Another consultation may have been opened while this one joined.
    if (current?.room !== room) {
      call?.hangup();
      stopMedia(stream);
      client.leave(room).catch(() => {});
      return;
    }
    current.call = call;
    current.stream = stream;
    const patient = joined.peers.find((p) => p.user.role === 'patient');
    if (!patientName && patient) $('#consultation-title').textContent = `Consultation with ${patient.user.name}`;
  } catch (err) {
    alertUser(`Could not open the consultation: ${err.message}`);
  }
}

async function endCurrent(client) {
  if (!current) return;
  if (!confirm('End this consultation for everyone?')) return;
  try {
    await client.end(current.room);
  } catch (err) {
    alertUser(`Could not end the consultation: ${err.message}`);
  }
}

async function switchMedia(client) {
  if (!current) return;
  const mode = $('#media-mode').dataset.mode === 'jitsi' ? 'p2p' : 'jitsi';
  try {
    await client.setMediaMode(current.room, mode);
  } catch (err) {
    alertUser(`Could not switch the video: ${err.message}`);
  }
}

function closeConsultation(client, message) {
  if (!current) return;
  current.call?.hangup();
  stopMedia(current.stream);
  current.chat.setEnabled(false, message || 'Closed');
  current.chat.dispose();
  // Out of the room too: a session may be in at most 16, and the patient
  // should not see the doctor present in a consultation closed here.
  client.leave(current.room).catch(() => {});
  current = null;
  if (message) alertUser(message);
}

main().catch((err) => alertUser(`The page could not start: ${err.message}`));
