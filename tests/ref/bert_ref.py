#!/usr/bin/python3
"""Reference sentence embeddings of a GGUF "bert" model, in numpy (float64).

    bert_ref.py MODEL.gguf OUT.bin TEXT...

Written from the BERT paper and Hugging Face's BertModel semantics, not from
core/bert.c: WordPiece tokenization (ASCII texts only: lowercase, split at
whitespace and punctuation, greedy longest match with the converter's U+2581
word prefix, [CLS] ... [SEP]); embeddings = token + position + token type 0,
LayerNorm; per layer post-LayerNorm self-attention and an erf-GELU FFN;
pooling per bert.pooling_type (1 mean, 2 CLS, 3 last; 0/absent mean); L2
normalisation.

OUT.bin (little-endian): int32 n_texts, int32 n_embd, then per text
int32 n_tokens, int32 tokens[n_tokens], float32 embedding[n_embd].
"""
import math
import string
import struct
import sys

import numpy as np

from gguf_ref import GGUF

_erf = np.vectorize(math.erf)


def wordpiece(meta, text):
    toks = meta["tokenizer.ggml.tokens"]
    ids = {t: i for i, t in enumerate(toks)}
    max_len = max(len(t) for t in toks)
    words, cur = [], ""
    for ch in text.lower():
        if ch.isspace():
            words.append(cur)
            cur = ""
        elif ch in string.punctuation:
            words += [cur, ch]
            cur = ""
        else:
            cur += ch
    words.append(cur)
    out = [meta.get("tokenizer.ggml.cls_token_id", 101)]
    for w in filter(None, words):
        w = "\u2581" + w
        pieces, i = [], 0
        while i < len(w):
            for j in range(min(len(w), i + max_len), i, -1):
                if w[i:j] in ids:
                    pieces.append(ids[w[i:j]])
                    i = j
                    break
            else:
                pieces = [meta.get("tokenizer.ggml.unknown_token_id", 100)]
                break
        out += pieces
    out.append(meta.get("tokenizer.ggml.seperator_token_id", 102))
    return out


def layernorm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def embed(g, toks):
    m = g.meta
    E, H = m["bert.embedding_length"], m["bert.attention.head_count"]
    eps = m.get("bert.attention.layer_norm_epsilon", 1e-12)
    t = lambda name: g.cache.setdefault(name, g.tensor(name).astype(np.float64))
    n = len(toks)
    x = t("token_embd.weight")[toks] + t("position_embd.weight")[:n]
    if "token_types.weight" in g.tensors:
        x = x + t("token_types.weight")[0]
    x = layernorm(x, t("token_embd_norm.weight"), t("token_embd_norm.bias"), eps)
    D = E // H
    for layer in range(m["bert.block_count"]):
        p = lambda s: t("blk.%d.%s" % (layer, s))
        lin = lambda v, s: v @ p(s + ".weight").T + p(s + ".bias")
        q, k, v = (lin(x, s).reshape(n, H, D).transpose(1, 0, 2) for s in ("attn_q", "attn_k", "attn_v"))
        s = q @ k.transpose(0, 2, 1) / math.sqrt(D)
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        a = (s @ v).transpose(1, 0, 2).reshape(n, E)
        x = layernorm(x + lin(a, "attn_output"), p("attn_output_norm.weight"), p("attn_output_norm.bias"), eps)
        u = lin(x, "ffn_up")
        u = 0.5 * u * (1 + _erf(u / math.sqrt(2)))
        x = layernorm(x + lin(u, "ffn_down"), p("layer_output_norm.weight"), p("layer_output_norm.bias"), eps)
    pooling = m.get("bert.pooling_type", 1)
    e = x[0] if pooling == 2 else x[-1] if pooling == 3 else x.mean(0)
    return e / np.linalg.norm(e)


def main():
    g = GGUF(sys.argv[1])
    g.cache = {}
    texts = sys.argv[3:]
    with open(sys.argv[2], "wb") as f:
        f.write(struct.pack("<ii", len(texts), g.meta["bert.embedding_length"]))
        for text in texts:
            toks = wordpiece(g.meta, text)
            f.write(struct.pack("<i%di" % len(toks), len(toks), *toks))
            f.write(embed(g, toks).astype("<f4").tobytes())


if __name__ == "__main__":
    main()
