// recog web console: a client of the public API only (management with a Bearer key, search with a
// collection token). Everything a user or the API wrote reaches the page as text nodes or element
// properties, never as markup, and the key lives in this tab's session storage, never in a URL.

const KEY_STORAGE = "recog.apiKey";
const PAGE_SIZE = 20;
const ALL = 1000; // the API's largest page: tokens of a collection, images of an item
const CANVAS_SIDE = 960; // the photo is drawn at most this large (CSS scales it down further)
const BOX_COLOURS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#008080"];

const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }

  toString() {
    return `${this.code}: ${this.message}`;
  }
}

// --- talking to the API ------------------------------------------------------------------------

function apiKey() {
  return sessionStorage.getItem(KEY_STORAGE) || "";
}

function errorFrom(status, text) {
  try {
    const { error } = JSON.parse(text);
    if (error && error.code) return new ApiError(status, error.code, error.message || "");
  } catch {
    // not the API's JSON error (a proxy's page, a cut connection): report the status below
  }
  return new ApiError(status, `HTTP_${status}`, text.slice(0, 200) || "The server gave no explanation.");
}

// `body`: a FormData (multipart), a plain object (JSON) or undefined. `auth` false for search,
// whose credential is the token inside the form.
async function request(method, path, { body, auth = true } = {}) {
  const headers = auth ? { Authorization: `Bearer ${apiKey()}` } : {};
  let payload = body;
  if (body !== undefined && !(body instanceof FormData)) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body: payload, credentials: "omit", cache: "no-store" });
  } catch {
    throw new ApiError(0, "NETWORK_ERROR", "The server could not be reached.");
  }
  const text = await response.text();
  if (!response.ok) throw errorFrom(response.status, text);
  return text ? JSON.parse(text) : null;
}

function listPath(resource, params) {
  return `/api/v0/${resource}/?${new URLSearchParams(params)}`;
}

function objectPath(resource, id) {
  return `/api/v0/${resource}/${encodeURIComponent(id)}/`;
}

// XMLHttpRequest rather than fetch: only it reports upload progress.
function uploadImage(itemId, file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/v0/image/");
    xhr.setRequestHeader("Authorization", `Bearer ${apiKey()}`);
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    });
    xhr.addEventListener("load", () => {
      if (xhr.status === 201) resolve(JSON.parse(xhr.responseText));
      else reject(errorFrom(xhr.status, xhr.responseText));
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, "NETWORK_ERROR", "The upload was cut off.")));
    const form = new FormData();
    form.append("item", objectPath("item", itemId));
    form.append("file", file);
    xhr.send(form);
  });
}

// --- page helpers ------------------------------------------------------------------------------

// `props` are element properties (text, never markup) and `on<event>` listeners; string children
// become text nodes.
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node[name] = value;
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

function notify(message) {
  $("notice").textContent = String(message);
  $("notice").hidden = false;
}

function clearNotice() {
  $("notice").hidden = true;
}

function show(sectionId) {
  for (const id of ["sign-in", "collections", "collection"]) $(id).hidden = id !== sectionId;
  $("sign-out").hidden = sectionId === "sign-in";
}

// Only web links become anchors: an item's url is user input and could be `javascript:`.
function safeLink(url) {
  return /^https?:\/\//i.test(url) ? el("a", { href: url, rel: "noopener noreferrer", target: "_blank" }, url) : url;
}

function stars(rating) {
  const value = Math.max(0, Math.min(5, Number(rating) || 0));
  const title = `recognisability ${value} of 5`;
  return el("span", { className: "stars", title }, "★".repeat(value) + "☆".repeat(5 - value));
}

// Where to go instead of the page just read, or null to show it: its listing's last page when
// `last` (listings are in creation order, so that is where a new object lands) or when a delete
// left the page empty.
function otherOffset(page, last) {
  const { offset, limit, total_count: total } = page.meta;
  const end = Math.max(0, Math.floor((total - 1) / limit) * limit);
  const wanted = last || (page.objects.length === 0 && offset > 0) ? end : offset;
  return wanted === offset ? null : wanted;
}

function pager(nav, meta, open) {
  const last = Math.min(meta.offset + meta.limit, meta.total_count);
  const first = meta.total_count ? meta.offset + 1 : 0;
  const previous = () => open(Math.max(meta.offset - meta.limit, 0));
  const next = () => open(meta.offset + meta.limit);
  nav.replaceChildren(
    el("button", { type: "button", disabled: !meta.previous, onclick: previous }, "Previous"),
    el("span", {}, ` ${first}–${last} of ${meta.total_count} `),
    el("button", { type: "button", disabled: !meta.next, onclick: next }, "Next"),
  );
}

// A refused key signs out; other errors are shown with the API's code and message.
function report(error) {
  if (error.code === "AUTHENTICATION_FAILED") {
    signOut();
    notify("The API key was refused; sign in again.");
  } else {
    notify(error instanceof ApiError ? error.toString() : `Unexpected error: ${error}`);
  }
}

// Runs one action of the user's: its result, or undefined when it failed (and was reported).
// A DELETE succeeds with null.
async function attempt(action) {
  try {
    clearNotice();
    return await action();
  } catch (error) {
    report(error);
    return undefined;
  }
}

// Asks first; true once the API has deleted the object.
async function confirmDelete(question, resource, id) {
  if (!window.confirm(question)) return false;
  return (await attempt(() => request("DELETE", objectPath(resource, id)))) !== undefined;
}

// --- sign in -----------------------------------------------------------------------------------

function signOut() {
  sessionStorage.removeItem(KEY_STORAGE);
  show("sign-in");
}

async function signIn(event) {
  event.preventDefault();
  sessionStorage.setItem(KEY_STORAGE, $("api-key").value.trim());
  $("api-key").value = "";
  if (await attempt(() => request("GET", listPath("collection", { limit: 1 })))) route();
}

// --- collections -------------------------------------------------------------------------------

let collectionOffset = 0;

async function listCollections(offset = collectionOffset, last = false) {
  const page = await attempt(() => request("GET", listPath("collection", { limit: PAGE_SIZE, offset })));
  if (!page) return;
  const moved = otherOffset(page, last);
  if (moved !== null) return listCollections(moved);
  collectionOffset = offset;
  show("collections");
  $("collection-rows").replaceChildren(...page.objects.map(collectionRow));
  pager($("collection-pager"), page.meta, listCollections);
}

function collectionRow(collection) {
  const remove = async () => {
    const question = `Delete collection "${collection.name}" with all its items, images and tokens?`;
    if (await confirmDelete(question, "collection", collection.uuid)) listCollections();
  };
  return el(
    "tr",
    {},
    el("td", {}, el("a", { href: `#collection/${encodeURIComponent(collection.uuid)}` }, collection.name)),
    el("td", {}, new Date(collection.created_at).toLocaleString()),
    el("td", { className: "id" }, collection.uuid),
    el("td", {}, el("button", { type: "button", className: "danger", onclick: remove }, "Delete")),
  );
}

async function createCollection(event) {
  event.preventDefault();
  const name = $("collection-name").value.trim();
  if (await attempt(() => request("POST", "/api/v0/collection/", { body: { name } }))) {
    $("collection-name").value = "";
    listCollections(collectionOffset, true);
  }
}

// --- one collection: items, images, uploads ----------------------------------------------------

let current = null; // the collection shown, as the API returned it
let itemOffset = 0; // and the offset of its page of items

async function openCollection(id, offset = 0, last = false) {
  const loaded = await attempt(() =>
    Promise.all([
      request("GET", objectPath("collection", id)),
      request("GET", listPath("token", { collection__uuid: id, limit: ALL })),
      request("GET", listPath("item", { collection__uuid: id, limit: PAGE_SIZE, offset })),
    ]),
  );
  if (!loaded) return;
  const [collection, tokens, items] = loaded;
  const moved = otherOffset(items, last);
  if (moved !== null) return openCollection(id, moved);
  if (!current || current.uuid !== collection.uuid) resetTry();
  current = collection;
  itemOffset = offset;
  show("collection");
  $("collection-title").textContent = collection.name;
  $("try-token").replaceChildren(...tokens.objects.map((t) => el("option", { value: t.token }, t.token)));
  const images = await attempt(() =>
    Promise.all(items.objects.map((item) => request("GET", listPath("image", { item__uuid: item.uuid, limit: ALL })))),
  );
  if (!images) return;
  $("items").replaceChildren(...items.objects.map((item, i) => itemCard(item, images[i].objects)));
  pager($("item-pager"), items.meta, (offset) => openCollection(id, offset));
}

function itemCard(item, images) {
  const gallery = el("div", { className: "gallery" }, ...images.map((image) => imageFigure(item, image)));
  const uploads = el("ul", { className: "uploads" });
  const picker = el("input", { type: "file", accept: "image/jpeg,image/png", multiple: true });
  picker.addEventListener("change", async () => {
    const files = [...picker.files];
    picker.value = "";
    for (const file of files) {
      const image = await uploadOne(item.uuid, file, uploads);
      if (image) gallery.append(imageFigure(item, image));
    }
  });
  const remove = async () => {
    const question = `Delete item "${item.name}" and its ${gallery.childElementCount} image(s)?`;
    if (await confirmDelete(question, "item", item.uuid)) openCollection(current.uuid, itemOffset);
  };
  return el(
    "article",
    { className: "item" },
    el(
      "header",
      {},
      el("h4", {}, item.name),
      item.url ? el("span", { className: "url" }, safeLink(item.url)) : null,
      el("button", { type: "button", className: "danger", onclick: remove }, "Delete item"),
    ),
    item.custom ? el("p", { className: "custom" }, item.custom) : null,
    gallery,
    el("label", { className: "upload" }, "Upload reference images ", picker),
    uploads,
  );
}

function imageFigure(item, image) {
  const figure = el(
    "figure",
    { className: "image" },
    el("img", { src: image.thumb_120, alt: item.name, width: 120, height: 120, loading: "lazy" }),
    el("figcaption", {}, stars(image.recognisability), " ", image.status),
  );
  const remove = async () => {
    if (await confirmDelete(`Delete this image of "${item.name}"?`, "image", image.uuid)) figure.remove();
  };
  figure.append(el("button", { type: "button", className: "danger small", onclick: remove }, "Delete"));
  return figure;
}

// One file's row: its name, a progress bar while it uploads, then the outcome.
async function uploadOne(itemId, file, list) {
  const bar = el("progress", { max: 1, value: 0 });
  const outcome = el("span", { className: "status" }, "uploading…");
  list.append(el("li", {}, el("span", { className: "file" }, file.name), bar, outcome));
  try {
    const image = await uploadImage(itemId, file, (fraction) => {
      bar.value = fraction;
    });
    bar.value = 1;
    outcome.textContent = "uploaded";
    return image;
  } catch (error) {
    if (error.code === "AUTHENTICATION_FAILED") report(error);
    bar.remove();
    outcome.textContent = error instanceof ApiError ? error.toString() : String(error);
    outcome.classList.add("error");
    return null;
  }
}

async function createItem(event) {
  event.preventDefault();
  const body = { collection: objectPath("collection", current.uuid), name: $("item-name").value.trim() };
  for (const [field, input] of [["url", "item-url"], ["custom", "item-custom"]]) {
    const value = $(input).value.trim();
    if (value) body[field] = value;
  }
  if (await attempt(() => request("POST", "/api/v0/item/", { body }))) {
    for (const input of ["item-name", "item-url", "item-custom"]) $(input).value = "";
    openCollection(current.uuid, itemOffset, true);
  }
}

// --- try a photo -------------------------------------------------------------------------------

function resetTry() {
  $("try-status").textContent = "";
  $("try-results").replaceChildren();
  const canvas = $("try-canvas");
  canvas.width = 0;
  canvas.height = 0;
}

// The photo as a browser shows it (EXIF orientation applied), which is also how the service
// measures the corners it returns.
async function drawPhoto(file) {
  const img = new Image();
  const url = URL.createObjectURL(file);
  try {
    img.src = url;
    await img.decode();
  } finally {
    URL.revokeObjectURL(url);
  }
  const scale = Math.min(1, CANVAS_SIDE / Math.max(img.naturalWidth, img.naturalHeight));
  const canvas = $("try-canvas");
  canvas.width = Math.round(img.naturalWidth * scale);
  canvas.height = Math.round(img.naturalHeight * scale);
  canvas.getContext("2d").drawImage(img, 0, 0, canvas.width, canvas.height);
}

// bbox corners come top-left, top-right, bottom-left, bottom-right (normalised to the photo):
// the outline goes TL, TR, BR, BL.
function drawBox(bbox, number) {
  const canvas = $("try-canvas");
  const context = canvas.getContext("2d");
  const [tl, tr, bl, br] = bbox.map(([x, y]) => [x * canvas.width, y * canvas.height]);
  const colour = BOX_COLOURS[(number - 1) % BOX_COLOURS.length];
  context.lineWidth = Math.max(2, canvas.width / 200);
  context.strokeStyle = colour;
  context.beginPath();
  for (const [x, y] of [tl, tr, br, bl]) context.lineTo(x, y);
  context.closePath();
  context.stroke();
  // The result's number in a tag at the top-left corner, matching the list below the photo.
  const size = Math.max(14, Math.round(canvas.width / 30));
  context.font = `bold ${size}px sans-serif`;
  context.fillStyle = colour;
  context.fillRect(tl[0], tl[1], size * 1.2, size * 1.3);
  context.fillStyle = "#fff";
  context.fillText(String(number), tl[0] + size * 0.3, tl[1] + size * 1.05);
}

async function tryPhoto(event) {
  event.preventDefault();
  const file = $("try-photo").files[0];
  const token = $("try-token").value;
  if (!file || !token) return;
  resetTry();
  $("try-status").textContent = "Searching…";
  const form = new FormData();
  form.append("token", token);
  form.append("image", file);
  form.append("bboxes", "true");
  const [found] = await Promise.all([
    request("POST", "/v1/search", { body: form, auth: false }).catch((error) => error),
    drawPhoto(file).catch(() => null),
  ]);
  if (found instanceof Error) {
    $("try-status").textContent = found instanceof ApiError ? found.toString() : String(found);
    return;
  }
  const count = found.results.length;
  $("try-status").textContent = `${count ? `${count} result(s)` : "Nothing recognised"} in ${found.search_time} ms`;
  found.results.forEach((result, i) => {
    if (result.bbox) drawBox(result.bbox, i + 1);
    $("try-results").append(
      el(
        "li",
        {},
        el("img", { src: result.image.thumb_120, alt: result.item.name, width: 60, height: 60 }),
        el("span", { className: "name" }, result.item.name),
        el("span", { className: "score" }, `score ${Number(result.score).toFixed(1)}`),
      ),
    );
  });
}

// --- navigation --------------------------------------------------------------------------------

function route() {
  if (!apiKey()) {
    show("sign-in");
    return;
  }
  const match = /^#collection\/([0-9a-f]{32})$/.exec(window.location.hash);
  if (match) openCollection(match[1]);
  else listCollections();
}

$("sign-in-form").addEventListener("submit", signIn);
$("sign-out").addEventListener("click", () => {
  signOut();
  clearNotice();
});
$("collection-form").addEventListener("submit", createCollection);
$("item-form").addEventListener("submit", createItem);
$("try-form").addEventListener("submit", tryPhoto);
window.addEventListener("hashchange", route);
route();
