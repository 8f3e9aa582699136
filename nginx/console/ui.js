// ui.js: small DOM helpers shared by the pages.

export const $ = (sel, root = document) => root.querySelector(sel);

// el('li', {className: 'x', textContent: 'y', attrs: {'aria-label': 'z'}},
// child, ...): text goes in through textContent only, so nothing from the
// API is ever parsed as HTML.
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'attrs') for (const [a, x] of Object.entries(v)) node.setAttribute(a, x);
    else node[k] = v;
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

// Shows a message in a status element: kind 'error' (role=alert in the
// markup), 'ok' or '' (neutral). An ApiError prints as "STATUS: message".
export function say(node, text, kind = '') {
  node.textContent = text ? String(text) : '';
  node.dataset.kind = kind;
}

export function fmt(n, digits = 0) {
  if (n === null || n === undefined || Number.isNaN(n)) return 'n/a';
  return Number(n).toLocaleString('en-US', { maximumFractionDigits: digits,
                                             minimumFractionDigits: digits });
}

// 1234567 -> "1.2M": for limits, where the exact figure matters less.
export function compact(n) {
  return Number(n).toLocaleString('en-US', { notation: 'compact', maximumFractionDigits: 1 });
}

export function bytes(n) {
  if (n === null || n === undefined) return 'n/a';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${fmt(n, i ? 1 : 0)} ${units[i]}`;
}

// Runs fn while the button shows it is busy; the button is disabled so a
// second click does not send the request twice.
export async function busy(button, fn) {
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  try {
    return await fn();
  } finally {
    button.disabled = false;
    button.removeAttribute('aria-busy');
  }
}
