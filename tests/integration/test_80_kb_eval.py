"""Issue 6, the retrieval evaluation (tests/eval/kb_eval.py): real Debian
documentation ingested by the command line, 55 hand-written questions,
BM25 recall@5 at least 0.8. Needs no running stack."""

import os
import sys

import pytest

from conftest import BUILD, ROOT, skip_visibly

sys.path.insert(0, os.path.join(ROOT, "tests", "eval"))
import kb_eval  # noqa: E402


def test_bm25_recall():
    if not os.access(os.path.join(BUILD, "edgegate-fcgi"), os.X_OK):
        skip_visibly(f"{BUILD}/edgegate-fcgi is not built (make all)")
    results, n = kb_eval.run(BUILD, ["bm25"], verbose=True)
    if results is None:
        skip_visibly("none of the evaluation documents is installed")
    assert n >= 40, f"only {n} questions have their document installed"
    r = results["bm25"]
    print(f"BM25 recall@1 {r['recall@1']:.3f} recall@5 {r['recall@5']:.3f} over {n} questions",
          file=sys.stderr)
    assert r["recall@5"] >= 0.8, r["misses"]
