// edgegate through the official openai npm client, over TLS with the
// gateway's self-signed certificate (NODE_EXTRA_CA_CERTS).
//
// Env: EDGEGATE_URL, EDGEGATE_KEY, EDGEGATE_MODEL. Prints one JSON object
// with what it saw; exits 1 on any unexpected result. Run by
// tests/integration/test_50_node_openai.py from a copy next to node_modules.
import OpenAI from 'openai';

const { EDGEGATE_URL: url, EDGEGATE_KEY: key, EDGEGATE_MODEL: model } = process.env;
if (!url || !key || !model) {
  console.error('EDGEGATE_URL, EDGEGATE_KEY and EDGEGATE_MODEL must be set');
  process.exit(2);
}

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: key, maxRetries: 0, timeout: 60_000 });
const messages = [
  { role: 'system', content: 'You are a test.' },
  { role: 'user', content: 'Hello from the openai npm client!' },
];
const out = {};

// Plain completion.
const plain = await client.chat.completions.create({
  model, messages, max_tokens: 8, temperature: 0,
});
check(plain.object === 'chat.completion', 'object');
check(plain.choices.length === 1, 'one choice');
check(plain.choices[0].message.role === 'assistant', 'role');
check(typeof plain.choices[0].message.content === 'string', 'content');
check(['stop', 'length'].includes(plain.choices[0].finish_reason), 'finish_reason');
check(plain.usage.prompt_tokens > 0 && plain.usage.completion_tokens >= 1, 'usage');
out.plain = { content: plain.choices[0].message.content, usage: plain.usage,
              finish_reason: plain.choices[0].finish_reason };

// Streamed completion, same greedy request: same text, same usage.
const stream = await client.chat.completions.create({
  model, messages, max_tokens: 8, temperature: 0, stream: true,
  stream_options: { include_usage: true },
});
let text = '';
let chunks = 0;
let finish = null;
let usage = null;
for await (const chunk of stream) {
  chunks++;
  check(chunk.object === 'chat.completion.chunk', 'chunk object');
  if (chunk.usage) usage = chunk.usage;
  for (const choice of chunk.choices) {
    text += choice.delta?.content ?? '';
    if (choice.finish_reason) finish = choice.finish_reason;
  }
}
check(chunks >= 2, 'several chunks');
check(finish === out.plain.finish_reason, 'stream finish_reason');
check(text === out.plain.content, 'stream text equals the plain text');
check(usage && usage.completion_tokens === plain.usage.completion_tokens, 'stream usage');
out.stream = { content: text, chunks, usage, finish_reason: finish };

// Errors arrive as the SDK's typed errors, since they are OpenAI-shaped.
try {
  await client.chat.completions.create({ model: 'no-such-model', messages });
  check(false, 'unknown model accepted');
} catch (e) {
  check(e instanceof OpenAI.BadRequestError, `unknown model: ${e}`);
  check(e.param === 'model', 'error param');
  out.bad_model = { status: e.status, param: e.param, code: e.code };
}
try {
  const bad = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'eg-not-a-real-key-000000', maxRetries: 0 });
  await bad.chat.completions.create({ model, messages });
  check(false, 'bad key accepted');
} catch (e) {
  check(e instanceof OpenAI.AuthenticationError, `bad key: ${e}`);
  out.bad_key = { status: e.status, code: e.code };
}

console.log(JSON.stringify(out));
