// chat.js: the Chat page. Streams /v1/chat/completions (SSE read from a
// fetch body), stops with an AbortController (the connection closes, nginx
// drops the FastCGI request and the worker stops generating), and shows per
// answer the usage, tokens/s, X-Cache and the x-ratelimit-* token budget.

import { call, callJSON, events, getKey } from './api.js';
import { $, el, fmt, say } from './ui.js';

let messages = [];   // the conversation sent with every request
let running = null;  // AbortController of the stream in progress

async function loadModels() {
  const select = $('#chat-model');
  if (!getKey('api')) return;
  try {
    const list = await callJSON('/v1/models');
    const keep = select.value;
    // edgegate's "type" field: only language models that chat
    const chat = list.data.filter((m) => m.type === 'chat');
    select.replaceChildren(...chat.map((m) => el('option', { value: m.id, textContent: m.id })));
    if (chat.some((m) => m.id === keep)) select.value = keep;
    say($('#chat-status'), '');
  } catch (e) {
    say($('#chat-status'), e, 'error');
  }
}

function showBudget(h) {
  const limit = h.get('x-ratelimit-limit-tokens');
  const left = h.get('x-ratelimit-remaining-tokens');
  const reset = h.get('x-ratelimit-reset-tokens');
  $('#chat-budget').textContent = limit === null ? 'Token budget: no limit for this key.'
    : `Token budget: ${fmt(+left)} of ${fmt(+limit)} tokens left` + (reset ? ` (resets in ${reset}).` : '.');
}

function addMessage(role, text) {
  const body = el('div', { className: 'text', textContent: text });
  const meta = el('div', { className: 'meta' });
  const li = el('li', { className: `msg ${role}` },
                el('div', { className: 'who', textContent: role === 'user' ? 'You' : 'Assistant' }),
                body, meta);
  $('#chat-log').append(li);
  li.scrollIntoView({ block: 'nearest' });
  return { li, body, meta };
}

function setRunning(ctrl) {
  running = ctrl;
  $('#chat-send').disabled = !!ctrl;
  $('#chat-stop').disabled = !ctrl;
}

async function send() {
  const input = $('#chat-input');
  const text = input.value.trim();
  if (!text || running) return;
  say($('#chat-status'), '');
  const model = $('#chat-model').value;
  if (!model) { say($('#chat-status'), 'No model to talk to: enter an API key first (Keys, above).', 'error'); return; }
  input.value = '';
  const convo = messages; // "New conversation" replaces the array
  convo.push({ role: 'user', content: text });
  const asked = addMessage('user', text);
  const out = addMessage('assistant', '');
  out.li.setAttribute('aria-busy', 'true');

  const ctrl = new AbortController();
  setRunning(ctrl);
  const t0 = performance.now();
  let tFirst = null, chunks = 0, usage = null, finish = null, cache = null, answer = '', deadline = false;
  let failed = null;
  try {
    const resp = await call('/v1/chat/completions', {
      signal: ctrl.signal,
      json: { model, messages: convo, stream: true, stream_options: { include_usage: true },
              max_tokens: +$('#chat-max').value, temperature: +$('#chat-temp').value },
    });
    cache = resp.headers.get('x-cache');
    showBudget(resp.headers);
    for await (const ev of events(resp)) {
      if (ev.usage) usage = ev.usage;
      if (ev.edgegate && ev.edgegate.deadline_hit) deadline = true;
      const c = ev.choices && ev.choices[0];
      if (!c) continue;
      if (c.delta && c.delta.content) {
        if (tFirst === null) tFirst = performance.now();
        chunks++;
        answer += c.delta.content;
        out.body.textContent = answer;
      }
      if (c.finish_reason) finish = c.finish_reason;
    }
  } catch (e) {
    if (e.name === 'AbortError') finish = 'stopped';
    else failed = e;
  } finally {
    setRunning(null);
    out.li.removeAttribute('aria-busy');
  }
  if (failed) say($('#chat-status'), failed, 'error');
  if (failed && !answer) {
    // The request failed: the message goes back into the box, to edit or
    // send again, and out of the conversation.
    out.li.remove();
    asked.li.remove();
    convo.pop();
    if (!input.value) input.value = text;
    return;
  }
  convo.push({ role: 'assistant', content: answer });

  // tokens/s over the generation itself: first token to the end.
  const tokens = usage ? usage.completion_tokens : chunks;
  const secs = (performance.now() - (tFirst ?? t0)) / 1000;
  const parts = [];
  if (usage) parts.push(`${fmt(usage.prompt_tokens)} prompt + ${fmt(usage.completion_tokens)} completion tokens`);
  else parts.push(`about ${fmt(chunks)} tokens`);
  if (tokens > 1 && secs > 0) parts.push(`${fmt(tokens / secs, 1)} tokens/s`);
  if (cache) parts.push(`cache ${cache}`);
  if (finish) parts.push({ length: 'max tokens reached', stop: 'finished', stopped: 'stopped by you' }[finish] || finish);
  if (deadline) parts.push('deadline reached');
  out.meta.textContent = parts.join(' · ');
  out.li.dataset.finish = finish || '';
}

export function init() {
  const form = $('#chat-form');
  form.addEventListener('submit', (e) => { e.preventDefault(); send(); });
  $('#chat-input').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      form.requestSubmit();
    }
  });
  $('#chat-stop').addEventListener('click', () => running && running.abort());
  $('#chat-clear').addEventListener('click', () => {
    if (running) running.abort();
    messages = [];
    $('#chat-log').replaceChildren();
    $('#chat-input').focus();
  });
  document.addEventListener('keys-changed', loadModels);
  loadModels();
}
