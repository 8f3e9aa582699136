#!/usr/bin/python3
"""Retrieval evaluation of the knowledge base (issue 6).

Copies the documents named in tests/eval/kb_questions.json (Debian
documentation of packages in scripts/deps; .gz files are decompressed) into
a temporary directory, ingests them with `edgegate-fcgi --kb-ingest` into a
fresh knowledge base, asks every question with `--kb-search QUERY MODE 5`
and reports recall@1 and recall@5 per mode: a question is answered at k
when one of the first k hits is a chunk of the right document that
contains the question's passage (compared case- and whitespace-
insensitively, so chunk boundaries and markup do not matter as long as the
passage is whole in one chunk, which the chunk overlap provides).

    /usr/bin/python3 tests/eval/kb_eval.py [--build build] [--modes bm25[,dense,hybrid]]
        [--kb-conf 'embedding_model = "ID";' --models-conf '{ id = ...; }']

Dense and hybrid need an embedding model in the knowledge base's config
(--kb-conf and --models-conf are added to the generated config). Exits 1
when BM25 recall@5 is below --min-recall5 (0.8). Documents that are not
installed are skipped, visibly; with none at all the run is skipped.
"""

import argparse
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUESTIONS = os.path.join(ROOT, "tests", "eval", "kb_questions.json")


def norm(s):
    return re.sub(r"\s+", " ", s).strip().lower()


def prepare(spec, dest):
    """Copies the installed documents into dest; returns the ids present."""
    present = set()
    for d in spec["documents"]:
        src = d["path"]
        if not os.path.isfile(src):
            print(f"SKIP: {src} missing (its questions are left out)", file=sys.stderr)
            continue
        out = os.path.join(dest, d["id"])
        if src.endswith(".gz"):
            with gzip.open(src, "rb") as f, open(out, "wb") as g:
                shutil.copyfileobj(f, g)
        else:
            shutil.copyfile(src, out)
        present.add(d["id"])
    return present


def run(build, modes, kb_conf="", models_conf="", min_recall5=0.8, verbose=False):
    """Returns (results by mode, number of questions); raises on tool errors."""
    with open(QUESTIONS) as f:
        spec = json.load(f)
    exe = os.path.join(ROOT, build, "edgegate-fcgi") if not os.path.isabs(build) else \
        os.path.join(build, "edgegate-fcgi")
    if not os.access(exe, os.X_OK):
        raise RuntimeError(f"{exe} is not built (make all)")
    tmp = tempfile.mkdtemp(prefix="edgegate-kb-eval-")
    try:
        docs = os.path.join(tmp, "docs")
        os.mkdir(docs)
        present = prepare(spec, docs)
        qs = [q for q in spec["questions"] if q["doc"] in present]
        if not qs:
            return None, 0
        # The operator commands need a valid config; the model file is only
        # checked for readability, never loaded by them.
        model = os.path.join(tmp, "unused.gguf")
        open(model, "wb").close()
        conf = os.path.join(tmp, "eval.conf")
        with open(conf, "w") as f:
            f.write(f'socket = "{tmp}/x.sock";\n'
                    f'models = ( {{ id = "unused"; path = "{model}"; }}{models_conf} );\n'
                    f'kb = {{ path = "{tmp}/kb.mdb"; {kb_conf} }};\n')
        t0 = time.monotonic()
        # Ingest under the ids of the question file: run from the docs dir.
        r = subprocess.run([exe, "-c", conf, "--kb-ingest"] + sorted(present),
                           cwd=docs, capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"--kb-ingest failed:\n{r.stdout}\n{r.stderr}")
        chunks = sum(json.loads(l).get("chunks", 0) for l in r.stdout.splitlines())
        ingest_s = time.monotonic() - t0
        results = {}
        for mode in modes:
            hit1 = hit5 = 0
            misses = []
            t0 = time.monotonic()
            for q in qs:
                r = subprocess.run([exe, "-c", conf, "--kb-search", q["q"], mode, "5"],
                                   capture_output=True, text=True, timeout=60)
                if r.returncode != 0:
                    raise RuntimeError(f"--kb-search failed: {r.stderr}")
                hits = json.loads(r.stdout)["data"]
                want = norm(q["passage"])
                ok = [h["document"] == q["doc"] and want in norm(h["text"]) for h in hits]
                hit1 += bool(ok[:1] and ok[0])
                hit5 += any(ok)
                if not any(ok):
                    misses.append((q["q"], [(h["document"], h["chunk"]) for h in hits[:3]]))
            results[mode] = {"recall@1": hit1 / len(qs), "recall@5": hit5 / len(qs),
                             "questions": len(qs), "seconds": round(time.monotonic() - t0, 2),
                             "misses": misses}
        print(f"kb eval: {len(present)} documents, {chunks} chunks, {len(qs)} questions, "
              f"ingest {ingest_s:.2f}s")
        for mode, res in results.items():
            print(f"  {mode:7s} recall@1 {res['recall@1']:.3f}  recall@5 {res['recall@5']:.3f}"
                  f"  ({res['seconds']}s)")
            if verbose:
                for q, top in res["misses"]:
                    print(f"    miss: {q} -> {top}")
        return results, len(qs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.environ.get("EDGEGATE_BUILD", "build"))
    ap.add_argument("--modes", default="bm25")
    ap.add_argument("--kb-conf", default="")
    ap.add_argument("--models-conf", default="")
    ap.add_argument("--min-recall5", type=float, default=0.8)
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()
    results, n = run(a.build, a.modes.split(","), a.kb_conf,
                     (", " + a.models_conf) if a.models_conf else "", a.min_recall5, a.verbose)
    if results is None:
        print("SKIP: none of the evaluation documents is installed", file=sys.stderr)
        return 0
    if "bm25" in results and results["bm25"]["recall@5"] < a.min_recall5:
        print(f"FAIL: BM25 recall@5 {results['bm25']['recall@5']:.3f} < {a.min_recall5}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
