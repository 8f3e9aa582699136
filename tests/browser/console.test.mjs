// console.test.mjs: the web console (nginx/console) in Debian's chromium,
// driven by playwright-core, against a running stack. tests/browser/run
// starts the stack and sets the environment: EDGEGATE_URL, EDGEGATE_KEY,
// EDGEGATE_ADMIN_KEY, EDGEGATE_DIR (logs), EDGEGATE_SCREENSHOTS, CHROMIUM.
//
// One line per scenario: PASS, FAIL (with the reason) or SKIP (an endpoint
// this build does not serve yet answers 404). Exits 1 when any scenario fails.

import { chromium } from 'playwright-core';
import { readFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

const env = (k) => {
  if (!process.env[k]) { console.error(`console.test: ${k} is not set (run tests/browser/run)`); process.exit(2); }
  return process.env[k];
};
const BASE = env('EDGEGATE_URL');
const KEY = env('EDGEGATE_KEY');
const ADMIN_KEY = env('EDGEGATE_ADMIN_KEY');
const SHOTS = env('EDGEGATE_SCREENSHOTS');
const STACK = env('EDGEGATE_DIR');
const DOG = '/usr/share/darknet/data/dog.jpg';
const KB_DIR = new URL('./kb/', import.meta.url).pathname;
mkdirSync(SHOTS, { recursive: true });

class Skip extends Error {}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function check(cond, msg) { if (!cond) throw new Error(msg); }

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
// The stack's certificate is self-signed (scripts/up): trust it for this run.
const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1100, height: 900 } });
const page = await context.newPage();
const pageErrors = [];
page.on('pageerror', (e) => pageErrors.push(String(e)));
page.on('console', (m) => { if (m.type() === 'error' && !/status of 4\d\d/.test(m.text())) pageErrors.push(m.text()); });
const api = context.request; // out-of-band calls to the same stack

async function metric(name) {
  const r = await api.get(`${BASE}/metrics`);
  let total = 0;
  for (const line of (await r.text()).split('\n')) {
    const m = /^([\w:]+)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (m && m[1] === name) total += parseFloat(m[3]);
  }
  return total;
}

async function served(path, method = 'POST') {
  const key = path.startsWith('/admin/') ? ADMIN_KEY : KEY;
  const r = await api.fetch(`${BASE}${path}`, { method, headers: { Authorization: `Bearer ${key}` },
                                              data: method === 'POST' ? '{}' : undefined,
                                              failOnStatusCode: false });
  return r.status() !== 404;
}

async function goto(name) {
  await page.goto(`${BASE}/console/#${name}`);
  await page.locator(`#page-${name}`).waitFor({ state: 'visible' });
}

async function shot(name) {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

async function chatOnce(text, { maxTokens = 64, temperature = 0.7 } = {}) {
  await goto('chat');
  await page.locator('#chat-model option').first().waitFor({ state: 'attached', timeout: 10000 });
  await page.click('#chat-clear'); // a fresh conversation: the test model's context is small
  await page.fill('#chat-max', String(maxTokens));
  await page.fill('#chat-temp', String(temperature));
  await page.fill('#chat-input', text);
  await page.press('#chat-input', 'Enter');
  const answer = page.locator('#chat-log .msg.assistant');
  await answer.waitFor();
  return answer;
}

// ---- scenarios ---------------------------------------------------------------

async function consoleServed() {
  const r = await api.get(`${BASE}/console/`);
  check(r.status() === 200, `GET /console/ -> ${r.status()}`);
  const csp = r.headers()['content-security-policy'] || '';
  check(/default-src 'self'/.test(csp), `CSP is "${csp}"`);
  for (const [path, type] of [['app.js', 'text/javascript'], ['console.css', 'text/css']]) {
    const f = await api.get(`${BASE}/console/${path}`);
    check(f.status() === 200 && f.headers()['content-type'].startsWith(type),
          `${path}: ${f.status()} ${f.headers()['content-type']}`);
  }
  await page.goto(`${BASE}/`);
  check(page.url().endsWith('/console/'), `/ did not lead to /console/ (${page.url()})`);
  // Keys typed once, into the form; kept in sessionStorage, never in the URL.
  await page.locator('#keys').evaluate((d) => { d.open = true; });
  await page.fill('#api-key', KEY);
  await page.fill('#admin-key', ADMIN_KEY);
  await page.click('#keys-form button[type=submit]');
  await page.locator('#keys-state').filter({ hasText: 'API key entered, admin key entered' }).waitFor();
  check(!page.url().includes(KEY) && !page.url().includes(ADMIN_KEY), 'a key is in the URL');
  check(await page.evaluate(() => sessionStorage.getItem('edgegate.apiKey')) === KEY, 'key not in sessionStorage');
}

async function chatStream() {
  await goto('chat');
  // Record every length the answer's text has while it streams.
  await page.evaluate(() => {
    window.__lengths = [];
    new MutationObserver(() => {
      const t = document.querySelector('#chat-log .msg.assistant:last-child .text');
      if (t) window.__lengths.push(t.textContent.length);
    }).observe(document.querySelector('#chat-log'), { subtree: true, childList: true, characterData: true });
  });
  const answer = await chatOnce('Tell me a long story.', { maxTokens: 400 });
  await page.waitForFunction((el) => el.dataset.finish !== undefined, await answer.elementHandle(),
                             { timeout: 60000 });
  const lengths = [...new Set(await page.evaluate(() => window.__lengths))].filter((n) => n > 0);
  check(lengths.length >= 2 && lengths[lengths.length - 1] > lengths[0],
        `text did not grow while streaming (lengths seen: ${lengths.slice(0, 10)})`);
  const meta = await answer.locator('.meta').textContent();
  check(/completion tokens/.test(meta) && /tokens\/s/.test(meta) && /cache (MISS|HIT|BYPASS)/.test(meta),
        `answer meta is "${meta}"`);
  const budget = await page.locator('#chat-budget').textContent();
  check(/Token budget: [\d,]+ of [\d,]+ tokens left/.test(budget), `budget line is "${budget}"`);
  await shot('chat');
  return `${lengths.length} growing observations; ${meta}`;
}

async function chatStop() {
  const disconnects = await metric('edgegate_client_disconnects_total');
  const tokens = await metric('edgegate_completion_tokens_total');
  const maxTokens = 4000;
  const answer = await chatOnce('Go on and on.', { maxTokens, temperature: 0.9 });
  const text = answer.locator('.text');
  await page.waitForFunction((el) => el.textContent.length > 0, await text.elementHandle(),
                             { polling: 'raf', timeout: 30000 });
  await page.click('#chat-stop', { timeout: 5000 }).catch(() => {
    throw new Error('the stream ended before Stop could be clicked');
  });
  await page.waitForFunction((el) => el.dataset.finish !== undefined, await answer.elementHandle());
  const finish = await answer.getAttribute('data-finish');
  check(finish === 'stopped', `the stream ended before Stop took effect (finish "${finish}")`);
  check(await page.locator('#chat-stop').isDisabled(), 'Stop is still enabled');
  const len = (await text.textContent()).length;
  await sleep(700);
  check((await text.textContent()).length === len, 'the text kept growing after Stop');
  // The server saw the client leave and stopped generating.
  let d = disconnects;
  for (let i = 0; i < 100 && d === disconnects; i++) { await sleep(100); d = await metric('edgegate_client_disconnects_total'); }
  check(d === disconnects + 1, `edgegate_client_disconnects_total ${disconnects} -> ${d}`);
  const made = (await metric('edgegate_completion_tokens_total')) - tokens;
  check(made < maxTokens, `the worker generated ${made} tokens of ${maxTokens}`);
  const log = readFileSync(join(STACK, 'logs', 'edgegate.log'), 'utf8');
  check(/client disconnected; generation stopped/.test(log), 'no "client disconnected" line in the pool log');
  return `stopped after ${len} characters; the worker made ${made} of ${maxTokens} tokens`;
}

async function vision() {
  if (!(await served('/v1/vision/detect'))) throw new Skip('/v1/vision/detect answers 404 (not in this build yet)');
  await goto('vision');
  await page.setInputFiles('#vision-file', DOG);
  await page.locator('#vision-figure').waitFor({ state: 'visible' });
  // Random weights score every box near 0.5: a few of them make a readable screenshot.
  await page.fill('#vision-conf', '0.5');
  await page.fill('#vision-max', '8');
  await page.click('#vision-send');
  await page.waitForFunction(() => document.querySelector('#vision-list li') ||
    document.querySelector('#vision-status').dataset.kind === 'error' ||
    /Nothing found/.test(document.querySelector('#vision-status').textContent), null, { timeout: 60000 });
  const status = await page.locator('#vision-status').textContent();
  const n = await page.locator('#vision-list li').count();
  check(n > 0 && n <= 8, `${n} detections listed (status "${status}")`);
  // Boxes were drawn: the canvas differs from the bare image.
  const changed = await page.evaluate(async () => {
    const shown = document.querySelector('#vision-canvas');
    const file = document.querySelector('#vision-file').files[0];
    const bare = new OffscreenCanvas(shown.width, shown.height).getContext('2d');
    bare.drawImage(await createImageBitmap(file), 0, 0);
    const a = shown.getContext('2d').getImageData(0, 0, shown.width, shown.height).data;
    const b = bare.getImageData(0, 0, shown.width, shown.height).data;
    let diff = 0;
    for (let i = 0; i < a.length; i += 4) if (a[i] !== b[i] || a[i + 1] !== b[i + 1] || a[i + 2] !== b[i + 2]) diff++;
    return diff;
  });
  check(changed > 100, `only ${changed} pixels differ from the bare image`);
  const timing = await page.locator('#vision-timing').textContent();
  check(/inference [\d.,]+ ms/.test(timing), `timing line is "${timing}"`);
  await shot('vision');
  return `${n} boxes, ${changed} pixels drawn; ${timing}`;
}

async function kbUpload() {
  if (!(await served('/admin/kb', 'GET'))) throw new Skip('/admin/kb answers 404 (not in this build yet)');
  await goto('admin');
  const files = ['console.md', 'nginx.md'].map((f) => join(KB_DIR, f));
  await page.setInputFiles('#kb-files', files);
  await page.click('#kb-send');
  await page.locator('#kb-status').filter({ hasText: /Added|\d{3}:/ }).waitFor({ timeout: 60000 });
  const status = await page.locator('#kb-status').textContent();
  check(/^Added console\.md.*nginx\.md/.test(status), `upload status is "${status}"`);
  for (const id of ['console.md', 'nginx.md']) {
    await page.locator('#kb-docs tbody th', { hasText: id }).waitFor({ timeout: 10000 });
  }
  return status;
}

async function qa() {
  if (!(await served('/v1/qa'))) throw new Skip('/v1/qa answers 404 (not in this build yet)');
  await goto('qa');
  await page.fill('#qa-question', 'How does the console keep the API key?');
  await page.fill('#qa-max', '32');
  await page.click('#qa-send');
  await page.locator('#qa-sources li blockquote').first().waitFor({ timeout: 60000 });
  await page.waitForFunction(() => !document.querySelector('#qa-send').disabled, null, { timeout: 60000 });
  const status = await page.locator('#qa-status').textContent();
  check(!status, `status says "${status}"`);
  const heads = await page.locator('#qa-sources .source-head').allTextContents();
  check(heads.length > 0 && heads[0].startsWith('[1]') && heads[0].includes('console.md'), `sources: ${heads}`);
  const quote = await page.locator('#qa-sources li blockquote').first().textContent();
  check(/session storage/.test(quote), `the first source quotes "${quote}"`);
  check((await page.locator('#qa-answer').textContent()).trim().length > 0, 'no answer text');
  await shot('qa');
  // The same without streaming: one JSON answer, the same first source.
  await page.uncheck('#qa-stream');
  await page.click('#qa-send');
  await page.waitForFunction(() => !document.querySelector('#qa-send').disabled &&
    document.querySelector('#qa-sources li'), null, { timeout: 60000 });
  const again = await page.locator('#qa-sources .source-head').first().textContent();
  check(again === heads[0], `unstreamed first source "${again}", streamed "${heads[0]}"`);
  await page.check('#qa-stream');
  return `${heads.length} sources; [1] ${heads[0].slice(4, 60)}`;
}

async function adminPurge() {
  // A deterministic chat (temperature 0) puts one answer into the cache.
  const answer = await chatOnce(`Cache me ${Date.now()}`, { maxTokens: 8, temperature: 0 });
  await page.waitForFunction((el) => el.dataset.finish !== undefined, await answer.elementHandle());
  const meta = await answer.locator('.meta').textContent();
  check(/cache MISS/.test(meta), `the chat was not a cache MISS: "${meta}"`);
  await goto('admin');
  await page.waitForFunction(() => +document.querySelector('#cache-stats').dataset.entries > 0, null,
                             { timeout: 10000 });
  const before = +(await page.locator('#cache-stats').getAttribute('data-entries'));
  await page.selectOption('#purge-by', 'all');
  await page.click('#purge-send');
  await page.locator('#purge-status').filter({ hasText: /Purged|\d{3}:/ }).waitFor();
  // (The count may exceed what the page showed: a put lands just after its answer.)
  const said = await page.locator('#purge-status').textContent();
  const purged = /^Purged (\d+) entr(y|ies)\.$/.exec(said);
  check(purged && +purged[1] >= before, `purge said "${said}" (${before} entries shown before)`);
  await page.waitForFunction(() => document.querySelector('#cache-stats').dataset.entries === '0');
  // The other selectors reach the API too: a model purge of an empty cache.
  await page.selectOption('#purge-by', 'model');
  await page.fill('#purge-value', 'no-such-model');
  await page.click('#purge-send');
  await page.locator('#purge-status').filter({ hasText: 'Purged 0 entries.' }).waitFor();
  // Health and budgets are on the page; some traffic for the charts, which
  // then show a few scrapes.
  await page.locator('#health dd', { hasText: /alive/ }).waitFor();
  await page.locator('#budgets tbody tr').first().waitFor();
  for (let i = 0; i < 10; i++) {
    await api.post(`${BASE}/v1/chat/completions`, { headers: { Authorization: `Bearer ${KEY}` },
      data: { model: await page.locator('#chat-model').inputValue(), max_tokens: 64,
              messages: [{ role: 'user', content: `traffic ${i}` }] } });
    await sleep(500);
  }
  const rps = await page.locator('#fig-rps').textContent();
  check(/Requests\/s: [\d.]+/.test(rps), `figure says "${rps}"`);
  await shot('admin');
  return `${said} (${before} shown before, 0 after)`;
}

async function kbDelete() {
  if (!(await served('/admin/kb', 'GET'))) throw new Skip('/admin/kb answers 404 (not in this build yet)');
  await goto('admin');
  const row = page.locator('#kb-docs tbody tr', { has: page.locator('th', { hasText: 'nginx.md' }) });
  await row.getByRole('button', { name: 'Delete nginx.md' }).click();
  await page.locator('#kb-status').filter({ hasText: 'Deleted nginx.md.' }).waitFor();
  await row.waitFor({ state: 'detached' });
}

async function wrongKey() {
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true });
  const p = await ctx.newPage();
  try {
    await p.goto(`${BASE}/console/#chat`);
    await p.fill('#api-key', 'wrong-key-0123456789abcdef');
    await p.click('#keys-form button[type=submit]');
    const status = p.locator('#chat-status');
    await status.filter({ hasText: '401' }).waitFor();
    const text = await status.textContent();
    check(/^401: Missing or invalid API key/.test(text), `status is "${text}"`);
    check(await status.getAttribute('data-kind') === 'error', 'not shown as an error');
    await p.screenshot({ path: join(SHOTS, 'wrong-key.png'), fullPage: true });
    return text;
  } finally {
    await ctx.close();
  }
}

async function phoneWidth() {
  await page.setViewportSize({ width: 375, height: 800 });
  try {
    const wide = [];
    for (const name of ['chat', 'vision', 'qa', 'admin']) {
      await goto(name);
      await sleep(200);
      const w = await page.evaluate(() => document.documentElement.scrollWidth);
      if (w > 375) wide.push(`${name} ${w}px`);
    }
    check(!wide.length, `wider than 375 px: ${wide.join(', ')}`);
    await goto('chat');
    await shot('chat-375');
  } finally {
    await page.setViewportSize({ width: 1100, height: 900 });
  }
}

async function keyboard() {
  // The pages are reachable by keyboard: Tab from the top reaches the nav
  // links, Enter follows one and focus moves to the page's heading.
  await page.goto('about:blank');
  await page.goto(`${BASE}/console/#chat`);
  for (let i = 0; i < 10; i++) {
    await page.keyboard.press('Tab');
    if (await page.evaluate(() => document.activeElement.getAttribute('href') === '#qa')) break;
  }
  check(await page.evaluate(() => document.activeElement.getAttribute('href') === '#qa'),
        'Tab never reached the QA link');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => document.activeElement.id === 'h-qa');
  check(await page.locator('nav a[href="#qa"]').getAttribute('aria-current') === 'page', 'aria-current not set');
}

const scenarios = [
  ['console served, keys entered', consoleServed],
  ['chat: streamed text appears', chatStream],
  ['chat: stop a stream', chatStop],
  ['vision: boxes drawn on dog.jpg', vision],
  ['admin: knowledge base upload', kbUpload],
  ['qa: answer with numbered sources', qa],
  ['admin: cache purge changes the stats', adminPurge],
  ['admin: knowledge base delete', kbDelete],
  ['wrong key shows the 401 message', wrongKey],
  ['phone width (375 px)', phoneWidth],
  ['keyboard navigation', keyboard],
];

let failed = 0;
for (const [name, fn] of scenarios) {
  const t0 = Date.now();
  try {
    const note = await fn();
    console.log(`PASS ${name} (${Date.now() - t0} ms)${note ? `: ${note}` : ''}`);
  } catch (e) {
    if (e instanceof Skip) { console.log(`SKIP ${name}: ${e.message}`); continue; }
    failed++;
    console.log(`FAIL ${name}: ${String(e.message || e).split('\n')[0]}`);
    await shot(`failed-${name.replace(/\W+/g, '-')}`).catch(() => {});
  }
}
if (pageErrors.length) {
  failed++;
  console.log(`FAIL no errors in the page: ${pageErrors.slice(0, 3).join(' | ')}`);
}
await browser.close();
console.log(`browser tests: ${failed ? `${failed} failed` : 'all passed'}; screenshots in ${SHOTS}`);
process.exit(failed ? 1 : 0);
