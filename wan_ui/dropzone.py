"""The Model Check drop zone: a folder dropped on the page is described, never uploaded.

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

DROP_ID = "wc-dropzone"
MANIFEST_ID = "wc-manifest"
SEND_ID = "wc-manifest-send"

HTML = """
<div class="wc-drop" tabindex="0" role="button" aria-label="Drop a model folder here">
  <p class="wc-drop-title">Drop a model folder here</p>
  <p class="wc-drop-sub">Only file names, sizes, configs and the headers of .safetensors files are read,
  in your browser; the weights are never uploaded.</p>
  <button type="button" class="wc-drop-pick lg secondary">Choose a folder…</button>
  <input type="file" class="wc-drop-input" webkitdirectory directory multiple hidden>
  <p class="wc-drop-status" aria-live="polite"></p>
</div>
"""

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

pick.addEventListener('click', (e) => { e.preventDefault(); e.stopPropagation(); input.click(); });
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
  const files = entries.length ? await walk(entries)
    : [...(dt ? dt.files : [])].map((f) => ({file: f, path: f.webkitRelativePath || f.name}));
  await send(files);
});
input.addEventListener('change', async () => {
  const files = [...input.files].map((f) => ({file: f, path: f.webkitRelativePath || f.name}));
  input.value = '';
  await send(files);
});
""".replace("__MANIFEST__", MANIFEST_ID).replace("__SEND__", SEND_ID)


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
