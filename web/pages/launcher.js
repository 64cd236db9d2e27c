// The demo launcher (demo mode only): creates consultations through
// POST /v1/demo/consultation and lists the links of each side.

import { $, alertUser, el } from './common.js';

let doctor = null;

async function create(body) {
  const response = await fetch('/v1/demo/consultation', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  const reply = await response.json();
  if (!response.ok) throw new Error(reply.error?.message ?? `HTTP ${response.status}`);
  return reply;
}

$('#create').addEventListener('submit', async (event) => {
  event.preventDefault();
  alertUser('');
  try {
    const demo = await create({ patient_name: $('#patient-name').value, doctor_name: $('#doctor-name').value });
    doctor = { id: demo.consultation.doctor.id, name: demo.consultation.doctor.name };
    $('#room-id').textContent = demo.consultation.id;
    $('#patient-link').href = demo.patient.url;
    $('#doctor-link').href = demo.doctor.url;
    $('#display-link').href = demo.display.url;
    $('#more').replaceChildren();
    $('#links').hidden = false;
    $('#patient-link').focus();
  } catch (err) {
    alertUser(`Could not create the consultation: ${err.message}`);
  }
});

let count = 1;
$('#another').addEventListener('click', async () => {
  if (!doctor) return;
  count += 1;
  try {
    const demo = await create({ patient_name: `Patient ${count}`, doctor_id: doctor.id, doctor_name: doctor.name });
    const link = el('a', { href: demo.patient.url, target: '_blank', rel: 'noopener' }, `Open the side of ${demo.consultation.patient.name}`);
    $('#more').append(el('li', {}, link));
  } catch (err) {
    alertUser(`Could not add a patient: ${err.message}`);
  }
});
