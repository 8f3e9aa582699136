// qa.js: the QA page. Asks /v1/qa and shows the answer with its numbered
// sources (the [n] in the answer refers to source n) and the quoted chunks.
// Streamed answers arrive as SSE: a "qa.sources" event first (sources and
// the knowledge base version), then "qa.delta" events with the answer's
// text, then "qa.done" with the usage.

import { call, callJSON, events } from './api.js';
import { $, el, fmt, say } from './ui.js';

let running = null;

function showSources(sources) {
  $('#qa-sources').replaceChildren(...sources.map((s, i) => el('li', {},
    el('p', { className: 'source-head' },
       el('span', { className: 'num', textContent: `[${i + 1}]` }), ' ',
       el('strong', { textContent: s.title || s.document }),
       el('span', { className: 'meta', textContent:
         ` ${s.document}, chunk ${s.chunk}, score ${fmt(s.score, 3)}` })),
    el('blockquote', { textContent: s.text }))));
  if (!sources.length) $('#qa-sources').append(el('li', { textContent: 'No sources.' }));
}

function showMeta(usage, kbVersion, ms) {
  const parts = [];
  if (usage) parts.push(`${fmt(usage.prompt_tokens)} prompt + ${fmt(usage.completion_tokens)} completion tokens`);
  if (kbVersion !== undefined && kbVersion !== null) parts.push(`knowledge base version ${kbVersion}`);
  parts.push(`${fmt(ms)} ms`);
  $('#qa-meta').textContent = parts.join(' · ');
}

async function ask() {
  const status = $('#qa-status');
  const question = $('#qa-question').value.trim();
  if (!question || running) return;
  const body = { question, top_k: +$('#qa-topk').value, max_tokens: +$('#qa-max').value,
                 stream: $('#qa-stream').checked };
  say(status, 'Searching the knowledge base…');
  $('#qa-result').hidden = true;
  $('#qa-answer').textContent = '';
  $('#qa-sources').replaceChildren();
  $('#qa-meta').textContent = '';
  const t0 = performance.now();
  running = new AbortController();
  $('#qa-send').disabled = true;
  $('#qa-stop').disabled = false;
  try {
    if (!body.stream) {
      const r = await callJSON('/v1/qa', { json: body, signal: running.signal });
      $('#qa-answer').textContent = r.answer;
      showSources(r.sources || []);
      $('#qa-result').hidden = false;
      showMeta(r.usage, r.kb_version, performance.now() - t0);
    } else {
      const resp = await call('/v1/qa', { json: body, signal: running.signal });
      let answer = '', usage = null, kbVersion = null;
      for await (const ev of events(resp)) {
        if (ev.object === 'qa.sources') {
          showSources(ev.sources);
          kbVersion = ev.kb_version;
          $('#qa-result').hidden = false;
        } else if (ev.object === 'qa.delta') {
          answer += ev.delta;
          $('#qa-answer').textContent = answer;
        } else if (ev.object === 'qa.done') {
          usage = ev.usage;
        }
      }
      showMeta(usage, kbVersion, performance.now() - t0);
    }
    say(status, '');
  } catch (e) {
    if (e.name === 'AbortError') say(status, 'Stopped.');
    else say(status, e, 'error');
  } finally {
    running = null;
    $('#qa-send').disabled = false;
    $('#qa-stop').disabled = true;
  }
}

export function init() {
  $('#qa-form').addEventListener('submit', (e) => { e.preventDefault(); ask(); });
  $('#qa-stop').addEventListener('click', () => running && running.abort());
}
