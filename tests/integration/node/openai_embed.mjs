// POST /v1/embeddings through the official openai npm client (which asks
// for base64 by default and decodes it), over TLS with the gateway's
// self-signed certificate (NODE_EXTRA_CA_CERTS).
//
// Env: EDGEGATE_URL, EDGEGATE_KEY, EDGEGATE_EMBED_MODEL. Prints one JSON
// object with what it saw. Run by tests/integration/test_75_embeddings.py
// from a copy next to node_modules.
import OpenAI from 'openai';

const { EDGEGATE_URL: url, EDGEGATE_KEY: key, EDGEGATE_EMBED_MODEL: model } = process.env;
if (!url || !key || !model) {
  console.error('EDGEGATE_URL, EDGEGATE_KEY and EDGEGATE_EMBED_MODEL must be set');
  process.exit(2);
}
const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: key, maxRetries: 0, timeout: 60_000 });
const input = ['The quick brown fox.', 'The quick brown fox.', 'A slow green turtle.'];
const dflt = await client.embeddings.create({ model, input });
const flt = await client.embeddings.create({ model, input, encoding_format: 'float' });
let bad = null;
try {
  await client.embeddings.create({ model, input: '' });
} catch (e) {
  bad = { status: e.status, param: e.param ?? e.error?.param ?? null };
}
console.log(JSON.stringify({
  object: dflt.object,
  model: dflt.model,
  usage: dflt.usage,
  default: dflt.data.map((d) => ({ index: d.index, embedding: Array.from(d.embedding) })),
  float: flt.data.map((d) => ({ index: d.index, embedding: d.embedding })),
  bad,
}));
