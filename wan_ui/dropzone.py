"""The Model Check drop zone: one place for a model folder (described, never uploaded) or a .zip.

A ``.zip`` dropped here, or chosen with "Choose a .zip…", is handed to the hidden upload
``#wc-zip`` (``check_zip``: unpacked with limits, then checked). After either, the path box
shows what was checked (:func:`checked_path`).

The browser walks the dropped folder (``webkitGetAsEntry`` and directory readers; or the
hidden ``<input type=file webkitdirectory>`` behind "Choose a folder…") and reads only:

- every file's path and size;
- the text of small JSON files (under 1 MB; not ``tokenizer.json``);
- the first 8 + N bytes of each ``.safetensors`` file (``File.slice``): the 8-byte header
  length N, then the JSON header. Tensor data is never read.

That manifest, ``{"name", "files": [{"path", "size", "text"?, "head_b64"?}], "browser":
{"sent_bytes", "total_bytes"}}``, goes into a hidden textbox (``#wc-manifest``) and a hidden
button (``#wc-manifest-send``) sends it to ``check_manifest`` (API ``/check_manifest``),
which runs the detector on a :class:`core.check.filesource.ManifestSource`.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

DROP_ID = "wc-dropzone"
MANIFEST_ID = "wc-manifest"
SEND_ID = "wc-manifest-send"
ZIP_ID = "wc-zip"             # the hidden gr.File that takes a dropped or chosen .zip

HTML = """
<div class="wc-drop" tabindex="0" role="button" aria-label="Drop a model folder or a .zip here">
  <p class="wc-drop-title">Drop a model folder or a .zip here</p>
  <p class="wc-drop-sub">A folder: only file names, sizes, configs and the headers of .safetensors files are
  read, in your browser; the weights are never uploaded. A .zip of a small model is uploaded and unpacked.</p>
  <div class="wc-drop-buttons">
    <button type="button" class="wc-drop-pick lg secondary">Choose a folder…</button>
    <button type="button" class="wc-drop-zip lg secondary">Choose a .zip…</button>
  </div>
  <input type="file" class="wc-drop-input" webkitdirectory directory multiple hidden>
  <p class="wc-drop-status" aria-live="polite"></p>
</div>
"""
CSS = ".wc-drop-buttons { display: flex; gap: 8px; flex-wrap: wrap; }"

JS = r"""
const zone = element.querySelector('.wc-drop');
const input = element.querySelector('.wc-drop-input');
const status = element.querySelector('.wc-drop-status');
const pick = element.querySelector('.wc-drop-pick');
const MAX_FILES = 20000, MAX_JSON = 1 << 20, MAX_HEADER = 100 * (1 << 20);
const SKIP = new Set(['.git', '__pycache__', '.cache', 'node_modules', '.venv', '.locks']);
const say = (text) => { status.textContent = text; };
const fmt = (n) => n >= 1e9 ? (n / 1e9).toFixed(2) + ' GB' : n >= 1e6 ? (n / 1e6).toFixed(1) + ' MB'
  : n >= 1e3 ? (n / 1e3).toFixed(1) + ' KB' : n + ' bytes';
const b64 = (blob) => new Promise((resolve, reject) => {
  const reader = new FileReader();
  reader.onload = () => resolve(String(reader.result).split(',')[1] || '');
  reader.onerror = () => reject(reader.error);
  reader.readAsDataURL(blob);
});
const readAll = (dir) => new Promise((resolve, reject) => {
  const reader = dir.createReader();
  const all = [];
  const next = () => reader.readEntries((batch) => {
    if (!batch.length) { resolve(all); return; }
    all.push(...batch);
    next();
  }, reject);
  next();
});
const fileOf = (entry) => new Promise((resolve, reject) => entry.file(resolve, reject));

async function walk(entries) {
  const out = [];
  const stack = [...entries];
  while (stack.length && out.length < MAX_FILES) {
    const entry = stack.pop();
    if (entry.isDirectory) {
      if (SKIP.has(entry.name)) continue;
      try { stack.push(...await readAll(entry)); } catch (err) { /* unreadable folder: skipped */ }
    } else if (entry.isFile) {
      try { out.push({file: await fileOf(entry), path: entry.fullPath.replace(/^\/+/, '')}); }
      catch (err) { /* unreadable file: skipped */ }
    }
    if (out.length % 200 === 0) say(`Listing files… ${out.length}`);
  }
  return out;
}

async function describe(files) {
  const parts = files.map((f) => f.path.split('/').filter(Boolean));
  let name = 'dropped files', strip = 0;
  if (parts.length && parts.every((p) => p.length > 1 && p[0] === parts[0][0])) {
    name = parts[0][0]; strip = 1;
  } else if (parts.length === 1) {
    name = parts[0][parts[0].length - 1];
  }
  const manifest = {name, files: []};
  let sent = 0, total = 0;
  for (let i = 0; i < files.length && manifest.files.length < MAX_FILES; i++) {
    const file = files[i].file;
    const rel = parts[i].slice(strip).join('/');
    if (!rel || parts[i].slice(strip).some((seg) => SKIP.has(seg))) continue;
    const entry = {path: rel, size: file.size};
    total += file.size;
    const lower = rel.toLowerCase();
    const base = lower.split('/').pop();
    try {
      if (lower.endsWith('.json') && file.size < MAX_JSON && base !== 'tokenizer.json') {
        entry.text = await file.text();
        sent += entry.text.length;
      } else if (lower.endsWith('.safetensors') && file.size >= 8) {
        const first = await file.slice(0, 8).arrayBuffer();
        const n = Number(new DataView(first).getBigUint64(0, true));
        const end = (n > 0 && n <= MAX_HEADER && 8 + n <= file.size) ? 8 + n : 8;
        entry.head_b64 = await b64(file.slice(0, end));
        sent += entry.head_b64.length;
      }
    } catch (err) { /* unreadable: the detector reports it as such */ }
    manifest.files.push(entry);
    if (i % 25 === 0) say(`Reading headers… ${i + 1} of ${files.length} files`);
  }
  manifest.browser = {sent_bytes: sent, total_bytes: total, files: manifest.files.length};
  return manifest;
}

async function send(files) {
  if (!files.length) { say('Nothing to read there: drop a model folder or a .safetensors file.'); return; }
  zone.classList.add('wc-busy');
  try {
    say(`Reading ${files.length} files (names, sizes, configs and headers only)…`);
    const manifest = await describe(files);
    const box = document.querySelector('#__MANIFEST__ textarea, #__MANIFEST__ input');
    const button = document.querySelector('#__SEND__');
    if (!box || !button) { say('The page is not ready yet; try again in a moment.'); return; }
    box.value = JSON.stringify(manifest);
    box.dispatchEvent(new Event('input', {bubbles: true}));
    await new Promise((resolve) => setTimeout(resolve, 60));
    button.click();
    const b = manifest.browser;
    say(`Sent ${fmt(b.sent_bytes)} of configs and headers describing ${b.files} files ` +
        `(${fmt(b.total_bytes)} on disk); no weights were uploaded.`);
  } catch (err) {
    say('The folder could not be read: ' + err);
  } finally {
    zone.classList.remove('wc-busy');
  }
}

const zipInput = () => document.querySelector('#__ZIP__ input[type=file]');
function sendZip(file) {
  const target = zipInput();
  if (!target) { say('The page is not ready yet; try again in a moment.'); return; }
  const dt = new DataTransfer();
  dt.items.add(file);
  target.files = dt.files;
  target.dispatchEvent(new Event('change', {bubbles: true}));
  say(`Uploading ${file.name} (${fmt(file.size)}) to unpack and check it…`);
  const report = document.querySelector('#wc-report');     // its report (or refusal) names the .zip
  if (!report) return;
  const seen = new MutationObserver(() => {
    if (!report.innerText.includes(file.name) || report.querySelector('.progress-text, .eta-bar')) return;
    say(`Checked ${file.name}, unpacked on this computer: the report is below.`);
    seen.disconnect();
  });
  seen.observe(report, {childList: true, subtree: true, characterData: true});
  setTimeout(() => seen.disconnect(), 15 * 60 * 1000);
}
const isZip = (f) => f && f.name.toLowerCase().endsWith('.zip');

pick.addEventListener('click', (e) => { e.preventDefault(); e.stopPropagation(); input.click(); });
element.querySelector('.wc-drop-zip').addEventListener('click', (e) => {
  e.preventDefault(); e.stopPropagation();
  const target = zipInput();
  if (target) { target.click(); } else { say('The page is not ready yet; try again in a moment.'); }
});
zone.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); input.click(); } });
['dragenter', 'dragover'].forEach((type) => zone.addEventListener(type, (e) => {
  e.preventDefault(); e.stopPropagation(); zone.classList.add('wc-drag');
  if (e.dataTransfer) e.dataTransfer.dropEffect = 'copy';
}));
['dragleave', 'dragend'].forEach((type) => zone.addEventListener(type, () => zone.classList.remove('wc-drag')));
zone.addEventListener('drop', async (e) => {
  e.preventDefault(); e.stopPropagation(); zone.classList.remove('wc-drag');
  const dt = e.dataTransfer;
  const items = dt && dt.items ? [...dt.items] : [];
  const entries = items.map((item) => item.webkitGetAsEntry ? item.webkitGetAsEntry() : null).filter(Boolean);
  const loose = dt ? [...dt.files] : [];
  if (entries.length === 1 && entries[0].isFile && isZip(entries[0])) {      // one .zip: unpacked on the server
    sendZip(await fileOf(entries[0])); return;
  }
  if (!entries.length && loose.length === 1 && isZip(loose[0])) { sendZip(loose[0]); return; }
  const files = entries.length ? await walk(entries)
    : [...(dt ? dt.files : [])].map((f) => ({file: f, path: f.webkitRelativePath || f.name}));
  await send(files);
});
input.addEventListener('change', async () => {
  const files = [...input.files].map((f) => ({file: f, path: f.webkitRelativePath || f.name}));
  input.value = '';
  await send(files);
});
""".replace("__MANIFEST__", MANIFEST_ID).replace("__SEND__", SEND_ID).replace("__ZIP__", ZIP_ID)


def html() -> str:
    """The drop zone's markup (static: nothing from the user is in it)."""
    return HTML.strip()


def describe_sent(manifest: dict) -> str:
    """One sentence on what the browser sent, for the report (escaped HTML)."""
    b = manifest.get("browser") if isinstance(manifest.get("browser"), dict) else {}
    from core.check.wording import format_size
    sent = b.get("sent_bytes")
    total = b.get("total_bytes")
    files = len(manifest.get("files") or [])
    if not isinstance(sent, int) or not isinstance(total, int):
        return ""
    return escape(f"Your browser sent {format_size(sent)} of configs and headers describing {files} files "
                  f"({format_size(total)} on disk); no weights were uploaded.")


def checked_path(data: dict | None) -> Any:
    """What the path box shows after a check (``data``: the report's JSON): the unpacked folder of
    a .zip, the place of a dropped folder when it was found on this computer, else the dropped
    folder's name in the placeholder; a check by path leaves the box as it is."""
    import gradio as gr
    source = (data or {}).get("source")
    if source == "zip" and data.get("path"):
        return gr.update(value=str(data["path"]))
    if source == "manifest":
        if data.get("local_path"):
            return gr.update(value=str(data["local_path"]))
        name = Path(str(data.get("path") or "the dropped folder")).name
        return gr.update(value="", placeholder=f"Checked: the dropped folder “{name}”, read in your browser. "
                                               "Type its path here to fix it or to check it from disk.")
    return gr.skip()
