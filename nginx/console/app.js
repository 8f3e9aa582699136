// app.js: the console's entry point: keys, page switching (#chat, #vision,
// #qa, #admin in the URL fragment; never a key), and each page's module.

import { getKey, setKey } from './api.js';
import { $, say } from './ui.js';
import * as chat from './chat.js';
import * as vision from './vision.js';
import * as qa from './qa.js';
import * as admin from './admin.js';

const pages = { chat, vision, qa, admin };
let current = null;

function showKeyState() {
  const has = (k) => (getKey(k) ? 'entered' : 'not entered');
  $('#keys-state').textContent = `API key ${has('api')}, admin key ${has('admin')}`;
  $('#api-key').placeholder = getKey('api') ? '(kept for this tab)' : '';
  $('#admin-key').placeholder = getKey('admin') ? '(kept for this tab)' : '';
}

function setupKeys() {
  const form = $('#keys-form');
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    // An empty field keeps the key already entered; "Forget keys" clears.
    for (const [kind, input] of [['api', $('#api-key')], ['admin', $('#admin-key')]]) {
      if (input.value.trim()) setKey(kind, input.value);
      input.value = '';
    }
    showKeyState();
    say($('#keys-status'), 'Keys saved for this tab.', 'ok');
    if (getKey('api')) $('#keys').open = false;
    document.dispatchEvent(new Event('keys-changed'));
  });
  $('#keys-forget').addEventListener('click', () => {
    setKey('api', '');
    setKey('admin', '');
    showKeyState();
    say($('#keys-status'), 'Keys forgotten.', 'ok');
    document.dispatchEvent(new Event('keys-changed'));
  });
  showKeyState();
  if (!getKey('api')) $('#keys').open = true;
}

function route(moveFocus) {
  const name = location.hash.slice(1) in pages ? location.hash.slice(1) : 'chat';
  if (name === current) return;
  if (current && pages[current].hide) pages[current].hide();
  for (const n of Object.keys(pages)) {
    $(`#page-${n}`).hidden = n !== name;
    const link = $(`nav a[href="#${n}"]`);
    if (n === name) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  current = name;
  document.title = `${$(`#page-${name} h2`).textContent} · edgegate console`;
  if (pages[name].show) pages[name].show();
  if (moveFocus) $(`#page-${name} h2`).focus();
}

setupKeys();
for (const p of Object.values(pages)) p.init();
window.addEventListener('hashchange', () => route(true));
route(false);
