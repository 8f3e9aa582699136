#!/usr/bin/python3
"""Second opinion on the detector: OpenCV's dnn module (cv2.dnn.readNetFromDarknet).

    /usr/bin/python3 tests/vision/compare_opencv.py CFG WEIGHTS IMAGE [--build build] [--thresh T]

Feeds OpenCV the image letterboxed the way darknet does (its bilinear resize,
0.5 grey padding; blobFromImage with swapRB=True for RGB), runs
`edgegate-run --detect ... --dump-heads` on the same files, and compares:
every yolo/region output (OpenCV's rows: x, y, w, h relative to the network
input, objectness, objectness x class probability, the last zeroed under the
layer's threshold), then the detections after darknet's post-processing
applied to OpenCV's rows (letterbox correction, threshold, greedy per-class
NMS at 0.45) against edgegate's JSON, for yolo networks (OpenCV's region
layer runs an NMS of its own, so there darknet is the judge). Exits 1 on a
mismatch.
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile

import cv2
import numpy as np


def darknet_resize(im, w, h):
    """darknet's resize_image: [h][w][c] float32 -> [h'][w'][c], columns first."""
    ih, iw = im.shape[:2]
    f32 = np.float32
    ws = f32(iw - 1) / f32(w - 1) if w > 1 else f32(0)
    hs = f32(ih - 1) / f32(h - 1) if h > 1 else f32(0)
    sx = np.arange(w, dtype=f32) * ws
    ix = np.minimum(sx.astype(np.int64), iw - 1)
    dx = (sx - ix.astype(f32))[None, :, None]
    right = np.minimum(ix + 1, iw - 1)
    part = (f32(1) - dx) * im[:, ix] + dx * im[:, right]
    part[:, w - 1] = im[:, iw - 1]
    sy = np.arange(h, dtype=f32) * hs
    iy = np.minimum(sy.astype(np.int64), ih - 1)
    dy = (sy - iy.astype(f32))[:, None, None]
    below = np.minimum(iy + 1, ih - 1)
    out = (f32(1) - dy) * part[iy]
    out[:h - 1] += (dy * part[below])[:h - 1]
    return out


def letterbox(rgb, nw, nh):
    ih, iw = rgb.shape[:2]
    if nw / iw < nh / ih:
        w, h = nw, ih * nw // iw
    else:
        w, h = iw * nh // ih, nh
    boxed = np.full((nh, nw, 3), 0.5, np.float32)
    y0, x0 = (nh - h) // 2, (nw - w) // 2
    boxed[y0:y0 + h, x0:x0 + w] = darknet_resize(rgb.astype(np.float32) / np.float32(255), w, h)
    return boxed, w, h


def parse_cfg(path):
    secs = []
    for line in open(path):
        line = "".join(line.split())
        if not line or line[0] in "#;":
            continue
        if line[0] == "[":
            secs.append((line[1:-1], {}))
        else:
            k, v = line.split("=", 1)
            secs[-1][1][k] = v
    return secs


def heads_of(secs):
    out = []
    for t, o in secs[1:]:
        if t in ("yolo", "region"):
            anchors = [float(a) for a in o["anchors"].split(",") if a]
            num = int(o.get("num", 1))
            mask = [int(m) for m in o["mask"].split(",")] if "mask" in o else list(range(num))
            out.append((t, anchors, mask if t == "yolo" else list(range(num)), int(o.get("classes", 20))))
    return out


def read_heads(path):
    d = open(path, "rb").read()
    n, o, res = struct.unpack_from("i", d)[0], 4, []
    for _ in range(n):
        c, h, w = struct.unpack_from("3i", d, o)
        o += 12
        res.append(np.frombuffer(d, np.float32, c * h * w, o).reshape(c, h, w))
        o += 4 * c * h * w
    return res


def rows_from_raw(a, kind, anchors, mask, classes, netw, neth):
    """our [n(5+C)][H][W] raw output -> OpenCV's rows [(y, x, n)][5+C]"""
    c, h, w = a.shape
    n = c // (classes + 5)
    a = a.reshape(n, classes + 5, h, w).transpose(2, 3, 0, 1).astype(np.float64)  # [h][w][n][5+C]
    col = np.arange(w)[None, :, None]
    row = np.arange(h)[:, None, None]
    aw = np.array([anchors[2 * m] for m in mask])[None, None, :]
    ah = np.array([anchors[2 * m + 1] for m in mask])[None, None, :]
    r = np.empty_like(a)
    r[..., 0] = (col + a[..., 0]) / w
    r[..., 1] = (row + a[..., 1]) / h
    if kind == "yolo":
        r[..., 2] = np.exp(a[..., 2]) * aw / netw
        r[..., 3] = np.exp(a[..., 3]) * ah / neth
    else:
        r[..., 2] = np.exp(a[..., 2]) * aw / w
        r[..., 3] = np.exp(a[..., 3]) * ah / h
    r[..., 4] = a[..., 4]
    r[..., 5:] = a[..., 4:5] * a[..., 5:]
    return r.reshape(-1, classes + 5)


def iou_c(a, b):
    """IoU of centre/size boxes"""
    l = max(a[0] - a[2] / 2, b[0] - b[2] / 2)
    r = min(a[0] + a[2] / 2, b[0] + b[2] / 2)
    t = max(a[1] - a[3] / 2, b[1] - b[3] / 2)
    d = min(a[1] + a[3] / 2, b[1] + b[3] / 2)
    if r <= l or d <= t:
        return 0.0
    i = (r - l) * (d - t)
    return i / (a[2] * a[3] + b[2] * b[3] - i)


def detections(rows_list, iw, ih, netw, neth, rw, rh, thresh, nms=0.45):
    cands = []
    for rows in rows_list:
        for r in rows:
            if not r[4] > thresh:
                continue
            x = (r[0] - (netw - rw) / 2 / netw) / (rw / netw)
            y = (r[1] - (neth - rh) / 2 / neth) / (rh / neth)
            bw, bh = r[2] * netw / rw, r[3] * neth / rh
            for k in np.nonzero(r[5:] > thresh)[0]:
                cands.append((float(r[5 + k]), int(k), (x, y, bw, bh)))
    cands.sort(key=lambda c: -c[0])
    kept = []
    for c in cands:
        if all(k[1] != c[1] or iou_c(k[2], c[2]) <= nms for k in kept):
            kept.append(c)
    out = []
    for p, k, (x, y, bw, bh) in kept:
        l, r = np.clip([(x - bw / 2) * iw, (x + bw / 2) * iw], 0, iw)
        t, d = np.clip([(y - bh / 2) * ih, (y + bh / 2) * ih], 0, ih)
        out.append((k, p, (l, t, r - l, d - t)))
    return out


def iou_tl(a, b):
    if min(a[2], a[3], b[2], b[3]) <= 0:  # clipped to nothing: a box wholly outside the image
        return 1.0 if max(abs(p - q) for p, q in zip(a, b)) < 1 else 0.0
    ix = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    iy = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if ix <= 0 or iy <= 0:
        return 0.0
    return ix * iy / (a[2] * a[3] + b[2] * b[3] - ix * iy)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cfg")
    ap.add_argument("weights")
    ap.add_argument("image")
    ap.add_argument("--build", default=os.environ.get("EDGEGATE_BUILD", "build"))
    ap.add_argument("--thresh", type=float, default=0.5)
    a = ap.parse_args()
    secs = parse_cfg(a.cfg)
    netw, neth = int(secs[0][1]["width"]), int(secs[0][1]["height"])
    heads = heads_of(secs)
    # OpenCV's region layer zeroes class scores under the cfg's thresh (darknet
    # applies it only in training): below it the detections cannot agree
    region_thresh = max([float(o.get("thresh", 0.5)) for t, o in secs[1:] if t == "region"] or [0])
    if a.thresh < region_thresh:
        print(f"note: --thresh {a.thresh} raised to the region layer's thresh {region_thresh}")
        a.thresh = region_thresh

    bgr = cv2.imread(a.image, cv2.IMREAD_COLOR)
    rgb = bgr[:, :, ::-1]
    ih, iw = rgb.shape[:2]
    boxed, rw, rh = letterbox(rgb, netw, neth)
    # blobFromImage takes BGR: hand it BGR and let swapRB=True make it RGB again
    blob = cv2.dnn.blobFromImage(np.ascontiguousarray(boxed[:, :, ::-1]), 1.0, (netw, neth), swapRB=True, crop=False)
    net = cv2.dnn.readNetFromDarknet(a.cfg, a.weights)
    net.setInput(blob)
    cv_rows = net.forward(net.getUnconnectedOutLayersNames())

    with tempfile.TemporaryDirectory() as td:
        dump = os.path.join(td, "heads.bin")
        js = subprocess.run([os.path.join(a.build, "edgegate-run"), "--detect", a.cfg, a.weights, a.image,
                             "--confidence", str(a.thresh), "--dump-heads", dump, "-t", "2"],
                            check=True, capture_output=True, text=True).stdout
        ours = read_heads(dump)
    mine = json.loads(js)["detections"]

    ok = True
    name = os.path.basename(a.cfg) + " " + os.path.basename(a.image)
    our_rows = []
    for i, (h, raw) in enumerate(zip(heads, ours)):
        r = rows_from_raw(raw, *h, netw, neth)
        our_rows.append(r)
        cv = cv_rows[i].astype(np.float64)
        assert cv.shape == r.shape, (cv.shape, r.shape)
        box = np.abs(cv[:, :5] - r[:, :5]) / np.maximum(np.abs(cv[:, :5]), 1e-2)
        live = cv[:, 5:] > 0  # OpenCV zeroes scores under the layer's threshold
        cls = np.abs(cv[:, 5:] - r[:, 5:])[live] / np.maximum(cv[:, 5:][live], 1e-2)
        worst_cls = cls.max() if cls.size else 0.0
        print(f"{name} head {i} ({h[0]}): max rel diff box/objectness {box.max():.2e}, "
              f"class scores {worst_cls:.2e} ({live.sum()} above OpenCV's threshold)")
        ok &= box.max() < 1e-3 and worst_cls < 1e-3
    ref = detections(cv_rows, iw, ih, netw, neth, rw, rh, a.thresh)
    print(f"{name}: {len(ref)} boxes (OpenCV + darknet post-processing), {len(mine)} (edgegate) at {a.thresh}")
    worst = 1.0
    used = set()
    for d in mine:
        b = (d["box"]["x"], d["box"]["y"], d["box"]["w"], d["box"]["h"])
        best, bj = 0.0, -1
        for j, (k, p, rb) in enumerate(ref):
            if k == d["class_id"] and j not in used and iou_tl(b, rb) > best:
                best, bj = iou_tl(b, rb), j
        used.add(bj)
        if best <= 0.9:
            print(f"  unmatched: class {d['class_id']} {d['confidence']:.4f} {b}")
        worst = min(worst, best)
    print(f"{name}: min IoU of matched boxes {worst:.4f}")
    if region_thresh:
        # OpenCV's region layer also runs its own NMS (0.4) on its rows, so
        # overlapping region boxes cannot agree: darknet is the judge there
        print(f"{name}: region layer: detections not compared (OpenCV applies its own NMS)")
    else:
        ok &= len(ref) == len(mine) and worst > 0.9
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
