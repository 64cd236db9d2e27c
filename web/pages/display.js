// The waiting-room display: a full-screen board of ticket numbers, with a
// "now serving" call-out when a patient is let in. It never shows a name:
// the hub sends a display nothing but tickets and times.
//
// Link: /display?queue=<queue>#token=<display token of the clinic>

import { $, alertUser, connectClient, el, expired, params, showConnection, watchQueue } from './common.js';

const { token, queue } = params();
const RECENT = 4;

async function main() {
  if (!token || !queue) {
    alertUser('This display link needs a queue and a token.');
    return;
  }
  if (expired(token)) {
    alertUser('This link has expired: ask the clinic for a new one.');
    return;
  }
  const client = connectClient(token);
  showConnection(client);
  client.on('queue_state', (state) => state.queue === queue && showTickets(state));
  client.on('called', (called) => called.queue === queue && callOut(called.ticket));
  await client.connect();
  watchQueue(client, queue, showTickets, (err) => alertUser(`Cannot show the queue: ${err.message}`));
}

function showTickets(state) {
  $('#tickets').replaceChildren(...state.entries.map((e) => el('li', { class: 'board-ticket' }, e.ticket)));
  $('#nobody').hidden = state.entries.length > 0;
}

function callOut(ticket) {
  const now = $('#now-serving');
  const previous = now.textContent;
  if (previous && previous !== '—') {
    const recent = $('#recent');
    recent.prepend(el('li', {}, previous));
    while (recent.children.length > RECENT) recent.lastElementChild.remove();
  }
  now.textContent = ticket;
  // Restart the highlight animation for every call.
  now.classList.remove('flash');
  void now.offsetWidth;
  now.classList.add('flash');
}

main().catch((err) => alertUser(`The page could not start: ${err.message}`));
