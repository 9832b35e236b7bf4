// Verify an entry's inclusion proof in the browser (RFC 6962 / RFC 9162 section 2.1.3.2), against the published
// checkpoint the server gives with it, and that checkpoint's Ed25519 signature by the log's key (C2SP signed note).
const enc = new TextEncoder();

function b64(s) { return Uint8Array.from(atob(s), c => c.charCodeAt(0)); }
function hex(b) { return Array.from(b, x => x.toString(16).padStart(2, "0")).join(""); }
function cat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0; for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}
async function sha256(bytes) { return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)); }
function equal(a, b) { return a.length === b.length && a.every((x, i) => x === b[i]); }

/** The root an inclusion proof of leaf `index` in a tree of `size` leaves implies, or null if it cannot. */
export async function rootFromProof(leaf, index, size, proof) {
  if (index >= size) return null;
  let fn = BigInt(index), sn = BigInt(size) - 1n;
  let r = await sha256(cat(new Uint8Array([0]), leaf));
  for (const p of proof) {
    if (p.length !== 32 || sn === 0n) return null;
    if ((fn & 1n) === 1n || fn === sn) {
      r = await sha256(cat(new Uint8Array([1]), p, r));
      while ((fn & 1n) === 0n && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
    } else {
      r = await sha256(cat(new Uint8Array([1]), r, p));
    }
    fn >>= 1n; sn >>= 1n;
  }
  return sn === 0n ? r : null;
}

/** Whether the signed note `text` carries a valid signature by the C2SP verifier key `vkey` (name+hash+key). */
export async function noteSignedBy(text, vkey) {
  const i = vkey.indexOf("+"), j = vkey.indexOf("+", i + 1);  // the base64 key may hold "+" itself
  const name = vkey.slice(0, i), keyHash = vkey.slice(i + 1, j), keyB64 = vkey.slice(j + 1);
  const raw = b64(keyB64);
  if (raw[0] !== 1 || raw.length !== 33) return false;
  const split = text.indexOf("\n\n");
  const body = text.slice(0, split + 1);
  for (const line of text.slice(split + 2).split("\n")) {
    if (!line.startsWith("\u2014 " + name + " ")) continue;
    const sig = b64(line.slice(name.length + 3));
    if (hex(sig.slice(0, 4)) !== keyHash) continue;
    const key = await crypto.subtle.importKey("raw", raw.slice(1), { name: "Ed25519" }, false, ["verify"]);
    if (await crypto.subtle.verify({ name: "Ed25519" }, key, sig.slice(4), enc.encode(body))) return true;
  }
  return false;
}

async function verify(section, out) {
  const index = Number(section.dataset.index);
  const res = await fetch(`/api/entries/${index}`, { headers: { accept: "application/json" } });
  if (!res.ok) throw new Error(`the server answered ${res.status}`);
  const e = await res.json();
  const checkpoint = e.receipt.slice(e.receipt.indexOf("\n\n") + 2);
  const [, size, rootLine] = checkpoint.split("\n");
  const root = b64(rootLine);
  document.getElementById("checkpoint").textContent = checkpoint;
  if (Number(size) !== e.tree_size) throw new Error(`the proof is for size ${e.tree_size}, the checkpoint is of size ${size}`);
  const got = await rootFromProof(b64(e.leaf), e.index, e.tree_size, e.inclusion_proof.map(b64));
  if (got === null || !equal(got, root)) {
    return { ok: false, text: `FAILED: the root recomputed from the proof (${got ? btoa(String.fromCharCode(...got)) : "none"}) does not match the checkpoint's root ${rootLine}.` };
  }
  let signed;
  try { signed = await noteSignedBy(checkpoint, section.dataset.logKey); } catch { signed = null; }
  const sig = signed === true ? "signed by the log's key" : signed === false ? "but its log signature does NOT verify" : "(this browser cannot check Ed25519 signatures)";
  return { ok: signed !== false, text: `${signed === false ? "FAILED" : "Verified"}: entry ${index} is in the log at size ${size}; the root recomputed from the proof matches the checkpoint's root ${rootLine}, ${sig}.` };
}

function main() {
  const section = document.getElementById("verify");
  const button = document.getElementById("verify-button");
  const out = document.getElementById("verify-result");
  if (!section || !button || !out) return;
  button.addEventListener("click", async () => {
    out.className = ""; out.textContent = "Checking…";
    try {
      const r = await verify(section, out);
      out.className = r.ok ? "ok" : "fail"; out.textContent = r.text;
    } catch (err) {
      out.className = "fail"; out.textContent = `FAILED: ${err.message}`;
    }
    out.dataset.done = out.className;
  });
}

main();
