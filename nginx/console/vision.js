// vision.js: the Vision page. Sends the picked (or dropped) image to
// /v1/vision/detect as a data URI with the thresholds, then draws the image
// and the boxes (original image pixels) with labels on one canvas.

import { callJSON } from './api.js';
import { $, busy, el, fmt, say } from './ui.js';

const COLORS = ['#e6194b', '#3cb44b', '#4363d8', '#f58231', '#911eb4',
                '#008080', '#f032e6', '#9a6324', '#800000', '#000075'];
let file = null;
let image = null; // ImageBitmap of file

function readDataURL(f) {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(r.result);
    r.onerror = () => reject(r.error);
    r.readAsDataURL(f);
  });
}

function draw(detections) {
  const canvas = $('#vision-canvas');
  canvas.width = image.width;
  canvas.height = image.height;
  const ctx = canvas.getContext('2d');
  ctx.drawImage(image, 0, 0);
  const line = Math.max(2, Math.round(Math.max(image.width, image.height) / 300));
  const size = Math.max(12, Math.round(Math.max(image.width, image.height) / 40));
  ctx.font = `${size}px sans-serif`;
  ctx.textBaseline = 'top';
  for (const d of detections) {
    const { x, y, w, h } = d.box;
    const color = COLORS[d.class_id % COLORS.length];
    ctx.strokeStyle = color;
    ctx.lineWidth = line;
    ctx.strokeRect(x, y, w, h);
    const text = `${d.label} ${fmt(d.confidence * 100)}%`;
    // The label sits above the box, inside the image at its edges.
    const tw = ctx.measureText(text).width + 8;
    const tx = Math.max(0, Math.min(x - line / 2, image.width - tw));
    const ty = y - size - 6 >= 0 ? y - size - 6 : y;
    ctx.fillStyle = color;
    ctx.fillRect(tx, ty, tw, size + 6);
    ctx.fillStyle = '#fff';
    ctx.fillText(text, tx + 4, ty + 3);
  }
  const names = detections.map((d) => d.label).join(', ');
  canvas.setAttribute('aria-label', `The image, ${image.width}×${image.height} pixels, with ` +
    (detections.length ? `${detections.length} boxes: ${names}` : 'no boxes'));
}

async function pick(f) {
  const status = $('#vision-status');
  if (!f) return;
  if (!/^image\/(jpeg|png)$/.test(f.type)) {
    say(status, `${f.name} is not a JPEG or PNG image.`, 'error');
    return;
  }
  try {
    image = await createImageBitmap(f);
  } catch {
    say(status, `${f.name}: this browser cannot decode it.`, 'error');
    return;
  }
  file = f;
  say(status, `${f.name}: ${image.width}×${image.height} pixels. Press Detect.`);
  $('#vision-figure').hidden = false;
  $('#vision-list').replaceChildren();
  $('#vision-timing').textContent = '';
  draw([]);
}

async function detect() {
  const status = $('#vision-status');
  if (!file) { say(status, 'Pick an image first.', 'error'); return; }
  say(status, 'Detecting…');
  const t0 = performance.now();
  try {
    const r = await callJSON('/v1/vision/detect', { json: {
      image: await readDataURL(file),
      confidence: +$('#vision-conf').value,
      iou: +$('#vision-iou').value,
      max_detections: +$('#vision-max').value,
    } });
    const ms = performance.now() - t0;
    draw(r.detections);
    $('#vision-list').replaceChildren(...r.detections.map((d) => {
      const b = d.box;
      return el('li', { textContent: `${d.label}: ${fmt(d.confidence * 100, 1)}% at x ${fmt(b.x)}, ` +
                                     `y ${fmt(b.y)}, ${fmt(b.w)}×${fmt(b.h)}` });
    }));
    const t = r.timing || {};
    $('#vision-timing').textContent = `${r.model}: ${r.detections.length} boxes in ${r.width}×${r.height}. ` +
      `Decode ${fmt(t.decode_ms, 1)} ms, inference ${fmt(t.inference_ms, 1)} ms, ` +
      `queue ${fmt(t.queue_ms, 1)} ms; round trip ${fmt(ms)} ms.`;
    say(status, r.detections.length ? '' : 'Nothing found above the confidence threshold.');
  } catch (e) {
    say(status, e, 'error');
  }
}

export function init() {
  $('#vision-file').addEventListener('change', (e) => pick(e.target.files[0]));
  const drop = $('#vision-drop');
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    pick(e.dataTransfer.files[0]);
  });
  $('#vision-form').addEventListener('submit', (e) => {
    e.preventDefault();
    busy($('#vision-send'), detect);
  });
}
