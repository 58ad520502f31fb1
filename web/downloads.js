// Download, verify, cache (worker side): bytes with progress, checked against manifest.json's
// sha256 and kept in the Cache API under that hash, so a repeat visit downloads nothing and a
// changed file is never served stale. Knows nothing of Python or of models.

const CACHE_NAME = "mamba-wasm-v1";

// The origins the worker may fetch from: the same rule as the page's Content-Security-Policy
// connect-src (index.html). A worker loaded from a URL takes its policy from its own response
// headers, not from the page's meta tag, so it applies the rule itself.
const ALLOWED_HOSTS = new Set(["localhost", "127.0.0.1"]);

// A readable refusal of a URL the page's policy would block; null when it may be fetched.
export function refusedUrl(url) {
  const parsed = new URL(url, self.location.href);
  if (parsed.origin === self.location.origin) return null;
  if (parsed.protocol === "https:") return null;
  if (parsed.protocol === "http:" && ALLOWED_HOSTS.has(parsed.hostname)) return null;
  if (parsed.protocol !== "http:") return `${parsed.protocol} URLs are not supported: use an https:// URL.`;
  return `${parsed.origin} is not allowed: the page fetches models only over https (or from this `
    + "machine, localhost), as its Content-Security-Policy says.";
}

// fetch, after the connect-src rule above.
export function checkedFetch(url, options) {
  const refusal = refusedUrl(url);
  if (refusal) return Promise.reject(new TypeError(refusal));
  return fetch(url, options);
}

export async function openCache(name = CACHE_NAME) {
  try {
    return self.caches ? await caches.open(name) : null;
  } catch {
    return null;  // e.g. storage disabled: everything still works, just without a cache
  }
}

export async function sha256Hex(bytes) {
  const digest = await crypto.subtle.digest("SHA-256", bytes);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

function rethrowUnlessCancelled(error) {
  if (error && error.name === "AbortError") throw error;  // the user's Cancel, not a fault
}

// Why a fetch that never got an answer failed. The browser gives the same TypeError for an offline
// network, a refused connection and a missing CORS header; a second, opaque request (mode no-cors:
// its answer cannot be read, but it arrives whenever the server answers at all) tells the last two
// apart.
export async function unreachable(url, error) {
  if (self.navigator && navigator.onLine === false) {
    return `${url}: this device is offline. Connect, then Retry.`;
  }
  if (refusedUrl(url)) return refusedUrl(url);
  let answered = false;
  try {
    await fetch(url, { method: "HEAD", mode: "no-cors", cache: "no-store" });
    answered = true;
  } catch {
    answered = false;
  }
  if (answered) {
    return `${url}: the server answered, but does not allow cross-origin requests (CORS: no `
      + "Access-Control-Allow-Origin header), which a page needs to read a file from another site.";
  }
  return `${url}: cannot connect to the server (${error.message}): it is down, refused the `
    + "connection, or the address is wrong.";
}

// fn(item) for every item, at most `limit` at a time (a page firing 50,000 requests at once stalls
// the browser and the server): the results in order, or the first error.
export async function mapLimited(items, limit, fn) {
  const results = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

// The bytes at `url`, growing the buffer when Content-Length is absent or wrong. onBytes(n) is
// called for each chunk; `signal` aborts it (the page's Cancel). `limit`, when given, bounds the
// file (see readBody).
export async function download(url, label, expectedSize, onBytes, signal, limit = null) {
  let response;
  try {
    response = await checkedFetch(url, { cache: "no-cache", signal });
  } catch (e) {
    rethrowUnlessCancelled(e);
    throw new Error(`${label}: download failed (${e.message}). Check the connection, then Retry.`);
  }
  if (!response.ok) {
    throw new Error(`${label}: the server answered HTTP ${response.status}`
      + `${response.statusText ? ` (${response.statusText})` : ""}.`);
  }
  return readBody(response, label, expectedSize, onBytes, limit);
}

// The body of `response`. `limit` ({bytes, why, encoded}) is the most the file may hold: a server
// that sends more is cut off at once, whatever its Content-Length said; `encoded` replaces it for
// a compressed response (the size planned from a HEAD request is the compressed one).
export async function readBody(response, label, expectedSize, onBytes, limit = null) {
  if (limit && limit.encoded && response.headers.get("Content-Encoding")) limit = limit.encoded;
  const declared = Number(response.headers.get("Content-Length")) || expectedSize || 0;
  const tooLarge = () => new Error(`${label}: the server sent more than ${limit.bytes.toLocaleString("en")} `
    + `bytes, ${limit.why}. The download was stopped.`);
  if (limit && declared > limit.bytes && !response.headers.get("Content-Encoding")) {
    await response.body.cancel();
    throw tooLarge();
  }
  let buffer = new Uint8Array(limit ? Math.min(declared, limit.bytes) : declared);
  let length = 0;
  const reader = response.body.getReader();
  for (;;) {
    let chunk;
    try {
      chunk = await reader.read();
    } catch (e) {  // the connection dropped mid-file
      rethrowUnlessCancelled(e);
      throw new Error(`${label}: the connection broke after ${length.toLocaleString("en")} of `
        + `${declared ? declared.toLocaleString("en") : "?"} bytes (${e.message}). Retry to download it again.`);
    }
    const { done, value } = chunk;
    if (done) break;
    if (limit && length + value.length > limit.bytes) {
      await reader.cancel();
      throw tooLarge();
    }
    if (length + value.length > buffer.length) {  // no or wrong Content-Length: grow
      const bigger = new Uint8Array(Math.max(buffer.length * 2, length + value.length));
      bigger.set(buffer.subarray(0, length));
      buffer = bigger;
    }
    buffer.set(value, length);
    length += value.length;
    onBytes(value.length);
  }
  const promised = Number(response.headers.get("Content-Length"));
  if (promised && length < promised && !response.headers.get("Content-Encoding")) {
    throw new Error(`${label}: the download ended after ${length.toLocaleString("en")} of `
      + `${promised.toLocaleString("en")} bytes. Retry to download it again.`);
  }
  return length === buffer.length ? buffer : buffer.slice(0, length);
}

// Bytes of a file listed in manifest.json, verified; from the Cache API when it has that hash.
export async function fetchVerified(manifest, path, onBytes, signal) {
  const entry = manifest.files[path];
  const url = new URL(path, self.location.href).href;
  const key = `${url}?sha256=${entry.sha256}`;
  const cache = await openCache();
  if (cache) {
    const hit = await cache.match(key);
    if (hit) {
      const bytes = new Uint8Array(await hit.arrayBuffer());
      if (await sha256Hex(bytes) === entry.sha256) {
        onBytes(bytes.length);
        return bytes;
      }
      await cache.delete(key);
    }
  }
  const bytes = await download(url, path, entry.size, onBytes, signal);
  const actual = await sha256Hex(bytes);
  if (actual !== entry.sha256) {
    throw new Error(`${path}: the downloaded file does not match manifest.json `
      + `(sha256 ${actual.slice(0, 12)}…, expected ${entry.sha256.slice(0, 12)}…). `
      + "The site may have been rebuilt meanwhile: reload the page.");
  }
  if (cache) {
    try {
      for (const old of await cache.keys()) {  // earlier versions of this file
        if (old.url.startsWith(`${url}?sha256=`)) await cache.delete(old);
      }
      await cache.put(key, new Response(bytes));
    } catch (e) {
      console.warn(`not caching ${path}: ${e.message}`);  // quota: fine, it is in memory
    }
  }
  return bytes;
}

// manifest.json of this site: {files: {path: {sha256, size}}, package, numpy, ...}.
export async function fetchManifest() {
  const response = await fetch("manifest.json", { cache: "no-cache" });
  if (!response.ok) throw new Error(`manifest.json: the server answered HTTP ${response.status}.`);
  return response.json();
}

// "models/x/config.json" when `url` is a file of this site's manifest, else null.
export function manifestPath(manifest, url) {
  const root = new URL("./", self.location.href).href;
  if (!url.startsWith(root)) return null;
  const path = url.slice(root.length);
  return manifest.files[path] ? path : null;
}

// onBytes(n) for a byte count of `total`, reporting through send(loaded, total) at most every
// 50 ms (and at the end); addTotal(n) grows the total when more files join.
export function progressCounter(send, total) {
  let loaded = 0;
  let lastSent = 0;
  const count = (n) => {
    loaded += n;
    const now = performance.now();
    if (now - lastSent > 50 || loaded >= total) {
      lastSent = now;
      send(loaded, total);
    }
  };
  count.addTotal = (n) => { total += n; };
  return count;
}
