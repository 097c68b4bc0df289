// Sanad operators' UI: the little script the server-rendered pages need.
// - quick exit (button or Esc) on every page;
// - the new case form: posted as JSON to /api/cases, field errors shown in the user's language, and a draft
//   kept as the operator types, encrypted (AES-GCM, WebCrypto) under a key the server keeps per account, so a
//   crash or a closed tab loses nothing and a draft left on a shared machine opens only for its author;
// - the queue: refreshed every few seconds, critical cases highlighted and announced (aria-live) as they arrive;
// - small forms on the case and accounts pages (override, assignment, accounts), posted as JSON;
// - every signed-in page leaves for the login page once its session has ended.
// No dependency, no build step; text goes into the page only through textContent, never as HTML.
"use strict";

(function () {
  const body = document.body;
  const strings = JSON.parse(body.dataset.strings || "{}");
  const csrf = body.dataset.csrf || "";
  const userId = body.dataset.user || "";
  const POLL_MS = 5000;
  const SESSION_CHECK_MS = 60000;
  const DRAFT_SAVE_DELAY_MS = 400;

  function t(key, ...params) {
    const text = strings[key] || key;
    return text.replace(/\{(\d+)\}/g, (_, index) => String(params[Number(index)] ?? ""));
  }

  function announce(message) {
    const region = document.getElementById("announcer");
    if (!region) return;
    region.textContent = "";
    window.setTimeout(() => { region.textContent = message; }, 50);
  }

  // Quick exit ----------------------------------------------------------------------------------------

  function quickExit() {
    document.title = "";
    body.replaceChildren();
    try { window.sessionStorage.clear(); } catch (ignored) { /* nothing to clear */ }
    if (csrf) {
      fetch("/api/session", { method: "DELETE", keepalive: true, credentials: "same-origin",
                              headers: { "X-CSRF-Token": csrf } }).catch(() => {});
    }
    window.location.replace("/exit");
  }

  const exitButton = document.getElementById("quick-exit");
  if (exitButton) exitButton.addEventListener("click", quickExit);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !event.altKey && !event.ctrlKey && !event.metaKey) quickExit();
  });

  // JSON over fetch -----------------------------------------------------------------------------------

  async function api(method, url, payload, extraHeaders) {
    const headers = { "Accept": "application/json", "X-CSRF-Token": csrf, ...(extraHeaders || {}) };
    if (payload !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(url, { method, headers, credentials: "same-origin",
                                        body: payload === undefined ? undefined : JSON.stringify(payload) });
    if (response.status === 401) {
      const next = encodeURIComponent(window.location.pathname);
      window.location.assign(`/login?expired=1&next=${next}`);
      throw new Error("session ended");
    }
    let data = null;
    try { data = await response.json(); } catch (ignored) { data = null; }
    return { status: response.status, ok: response.ok, data };
  }

  // Reading a form as the API's JSON ------------------------------------------------------------------

  function setPath(target, name, value) {
    const parts = name.split(".");
    let node = target;
    for (const part of parts.slice(0, -1)) node = node[part] = node[part] || {};
    node[parts[parts.length - 1]] = value;
  }

  function baghdadMoment(local) {
    // A datetime-local value is Baghdad time; Iraq keeps UTC+3 all year.
    return local.length === 16 ? `${local}:00+03:00` : `${local}+03:00`;
  }

  function formPayload(form) {
    const payload = {};
    for (const group of form.querySelectorAll('fieldset[data-kind="list"]')) {
      const checked = [...group.querySelectorAll("input[type=checkbox]:checked")].map((box) => box.value);
      setPath(payload, group.dataset.name, checked);
    }
    for (const field of form.elements) {
      if (!field.name || field.closest('fieldset[data-kind="list"]') || field.type === "submit") continue;
      const kind = field.dataset.kind;
      const raw = field.value;
      if (kind === "flag") { setPath(payload, field.name, field.checked); continue; }
      if (kind === "bool") { setPath(payload, field.name, raw === "true"); continue; }
      if (kind === "bool3") { if (raw) setPath(payload, field.name, raw === "true"); continue; }
      if (kind === "nullable") { setPath(payload, field.name, raw === "" ? null : raw); continue; }
      if (raw === "") continue;
      if (kind === "int") { setPath(payload, field.name, /^\d+$/.test(raw) ? Number(raw) : raw); continue; }
      if (kind === "baghdad") { setPath(payload, field.name, baghdadMoment(raw)); continue; }
      setPath(payload, field.name, raw);
    }
    return payload;
  }

  function clearErrors(form) {
    for (const slot of form.querySelectorAll("[data-error-for]")) slot.textContent = "";
    for (const field of form.querySelectorAll("[aria-invalid]")) field.removeAttribute("aria-invalid");
  }

  function clearFieldError(form, field, summary) {
    // An error goes once the operator edits its field; the summary once no error is left.
    const name = field.name || (field.closest("fieldset[data-name]") || {}).dataset?.name;
    if (!name) return;
    const group = field.closest('fieldset[data-kind="list"]');
    const slot = form.querySelector(`[data-error-for="${CSS.escape(group ? group.dataset.name : name)}"]`);
    if (slot) slot.textContent = "";
    field.removeAttribute("aria-invalid");
    if (summary && ![...form.querySelectorAll("[data-error-for]")].some((s) => s.textContent)) summary.hidden = true;
  }

  function showErrors(form, error, summary) {
    clearErrors(form);
    const fields = (error && error.fields) || {};
    let first = null;
    for (const [name, messages] of Object.entries(fields)) {
      const slot = form.querySelector(`[data-error-for="${CSS.escape(name)}"]`);
      if (slot) slot.textContent = messages.join(" ");
      const field = form.querySelector(`[name="${CSS.escape(name)}"]`);
      if (field) {
        field.setAttribute("aria-invalid", "true");
        if (slot) { slot.id = slot.id || `error-${name.replace(/\W/g, "-")}`; field.setAttribute("aria-describedby", slot.id); }
        first = first || field;
      }
    }
    if (summary) {
      summary.hidden = false;
      summary.textContent = (error && error.message) || t("form.has_errors");
      summary.focus();
    }
    if (first) first.focus();
  }

  // The case form and its encrypted draft --------------------------------------------------------------

  const b64 = {
    encode: (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes))),
    decode: (text) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0)),
  };

  async function draftCipher() {
    if (!window.isSecureContext || !window.crypto || !window.crypto.subtle) return null;
    const answer = await api("GET", "/api/me/draft-key");
    if (!answer.ok) return null;
    const key = await crypto.subtle.importKey("raw", b64.decode(answer.data.key), "AES-GCM", false,
                                              ["encrypt", "decrypt"]);
    const context = new TextEncoder().encode(`sanad-draft:${userId}`);
    return {
      async seal(value) {
        const iv = crypto.getRandomValues(new Uint8Array(12));
        const plain = new TextEncoder().encode(JSON.stringify(value));
        const sealed = await crypto.subtle.encrypt({ name: "AES-GCM", iv, additionalData: context }, key, plain);
        return JSON.stringify({ v: 1, iv: b64.encode(iv), data: b64.encode(sealed) });
      },
      async open(text) {
        const stored = JSON.parse(text);
        const plain = await crypto.subtle.decrypt(
          { name: "AES-GCM", iv: b64.decode(stored.iv), additionalData: context }, key, b64.decode(stored.data));
        return JSON.parse(new TextDecoder().decode(plain));
      },
    };
  }

  function formState(form) {
    const state = {};
    for (const field of form.elements) {
      if (!field.name) continue;
      if (field.type === "checkbox") state[`${field.name}=${field.value}`] = field.checked;
      else if (field.type !== "hidden" && field.type !== "submit") state[field.name] = field.value;
    }
    return state;
  }

  function restoreState(form, state) {
    for (const field of form.elements) {
      if (!field.name) continue;
      if (field.type === "checkbox") {
        const key = `${field.name}=${field.value}`;
        if (key in state) field.checked = Boolean(state[key]);
      } else if (field.name in state && field.type !== "hidden") {
        field.value = state[field.name];
      }
    }
  }

  function setUpCaseForm(form) {
    const status = document.getElementById("draft-status");
    const discard = document.getElementById("draft-discard");
    const summary = document.getElementById("form-errors");
    const storageKey = `sanad.draft.${userId}`;
    let idempotencyKey = crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random();
    let touched = false;
    let timer = null;
    // Listeners are in place at once; the key arrives when it arrives, and saving waits for it.
    const cipherReady = draftCipher().catch(() => null);

    async function saveDraft() {
      const cipher = await cipherReady;
      if (!cipher) return;
      window.localStorage.setItem(storageKey, await cipher.seal({ state: formState(form), idempotencyKey }));
      status.textContent = t("form.draft_saved");
      discard.hidden = false;
    }

    function edited(event) {
      touched = true;
      if (event.type === "input") clearFieldError(form, event.target, summary);
      status.textContent = "";  // "saved" again only once this edit is saved
      window.clearTimeout(timer);
      timer = window.setTimeout(saveDraft, DRAFT_SAVE_DELAY_MS);
    }
    form.addEventListener("input", edited);
    form.addEventListener("change", edited);
    discard.addEventListener("click", () => {
      window.localStorage.removeItem(storageKey);
      form.reset();
      discard.hidden = true;
      status.textContent = "";
    });
    form.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); form.requestSubmit(); }
    });

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      window.clearTimeout(timer);
      await saveDraft();
      const button = document.getElementById("case-submit");
      button.disabled = true;
      button.textContent = t("form.saving");
      summary.hidden = true;
      try {
        const answer = await api("POST", "/api/cases", formPayload(form), { "Idempotency-Key": idempotencyKey });
        if (answer.ok) {
          window.localStorage.removeItem(storageKey);
          window.location.assign(`/queue?saved=${encodeURIComponent(answer.data.reference)}`);
          return;
        }
        showErrors(form, answer.data && answer.data.error, summary);
      } catch (error) {
        summary.hidden = false;
        summary.textContent = t("form.network_error");
        summary.focus();
      } finally {
        button.disabled = false;
        button.textContent = t("form.submit");
      }
    });

    cipherReady.then(async (cipher) => {
      if (!cipher) {
        status.textContent = t("form.draft_unavailable");
      } else if (!touched && window.localStorage.getItem(storageKey)) {
        try {
          const draft = await cipher.open(window.localStorage.getItem(storageKey));
          restoreState(form, draft.state);
          idempotencyKey = draft.idempotencyKey || idempotencyKey;
          status.textContent = t("form.draft_restored");
          discard.hidden = false;
        } catch (ignored) {
          window.localStorage.removeItem(storageKey);  // not ours, or tampered with: it cannot be opened
        }
      }
      form.dataset.ready = "true";
    });
  }

  // The live queue -------------------------------------------------------------------------------------

  const baghdadParts = new Intl.DateTimeFormat("en-GB", {
    timeZone: "Asia/Baghdad", year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit",
    minute: "2-digit", hourCycle: "h23",
  });

  function baghdadTime(iso) {
    const parts = Object.fromEntries(baghdadParts.formatToParts(new Date(iso)).map((p) => [p.type, p.value]));
    return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}`;
  }

  function cell(row, content) {
    const td = document.createElement("td");
    if (content instanceof Node) td.append(content); else td.textContent = content;
    row.append(td);
  }

  function queueRow(item) {
    const level = item.risk_level || "none";
    const row = document.createElement("tr");
    row.dataset.id = item.id;
    row.dataset.reference = item.reference;
    row.dataset.level = level;
    row.className = `level-${level}`;
    const link = document.createElement("a");
    link.href = `/cases/${item.id}`;
    link.textContent = item.reference;
    cell(row, link);
    const badge = document.createElement("span");
    badge.className = `risk risk-${level}`;
    badge.textContent = t(`risk.${level}`);
    cell(row, badge);
    cell(row, t(`status.${item.status}`));
    const time = document.createElement("time");
    time.dateTime = item.received_at;
    time.textContent = baghdadTime(item.received_at);
    cell(row, time);
    let place = t(`governorate.${item.governorate}`);
    if (item.district) place += ` / ${t(`district.${item.district}`)}`;
    cell(row, place);
    cell(row, item.needs.map((need) => t(`service.${need}`)).join(body.dataset.lang === "ar" ? "، " : ", "));
    cell(row, item.assigned_to ? item.assigned_to.name : t("queue.open"));
    return row;
  }

  function setUpQueue() {
    const tbody = document.getElementById("queue-body");
    const empty = document.getElementById("queue-empty");
    const updated = document.getElementById("queue-updated");
    const saved = new URLSearchParams(window.location.search).get("saved");
    if (saved) announce(t("form.saved", saved));
    // What the page showed is known; the case just saved is not, so its level is announced when it comes.
    const known = new Map([...tbody.querySelectorAll("tr")]
      .filter((row) => row.dataset.reference !== saved)
      .map((row) => [row.dataset.id, row.dataset.level]));

    async function refresh() {
      try {
        const answer = await api("GET", "/api/cases", undefined, { "X-Sanad-Poll": "1" });
        if (!answer.ok) throw new Error(String(answer.status));
        const rows = answer.data.cases.map((item) => {
          const row = queueRow(item);
          if (item.risk_level === "critical" && known.get(item.id) !== "critical") {
            row.classList.add("arrived");
            announce(t("queue.new_critical", item.reference));
          }
          return row;
        });
        known.clear();
        for (const item of answer.data.cases) known.set(item.id, item.risk_level || "none");
        tbody.replaceChildren(...rows);
        empty.hidden = rows.length > 0;
        updated.textContent = t("queue.updated", baghdadTime(new Date().toISOString()));
      } catch (error) {
        if (error.message !== "session ended") updated.textContent = t("queue.offline");
      }
    }
    window.setInterval(refresh, POLL_MS);
    refresh();
  }

  // Small forms on the case and accounts pages ---------------------------------------------------------

  function setUpApiForm(form) {
    const status = form.querySelector(".form-status");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearErrors(form);
      const answer = await api(form.dataset.method || "POST", form.dataset.action, formPayload(form));
      if (answer.ok) {
        if (status) status.textContent = "✓";
        window.location.reload();
        return;
      }
      showErrors(form, answer.data && answer.data.error, null);
      if (status) status.textContent = (answer.data && answer.data.error && answer.data.error.message) || "";
    });
  }

  // A page left open leaves with its session ----------------------------------------------------------
  // The queue's refresh finds an ended session; every other page of a signed-in account asks now and then
  // (as a poll, which keeps no session alive), so a case left on screen in a shared room goes to the login
  // page once its session ends: an idle hour, the end of the shift, quick exit in another tab. A draft
  // being typed is kept, encrypted, for its author.

  function watchSession() {
    window.setInterval(() => {
      api("GET", "/api/me", undefined, { "X-Sanad-Poll": "1" }).catch(() => {});
    }, SESSION_CHECK_MS);
  }

  // Start ----------------------------------------------------------------------------------------------

  const caseForm = document.getElementById("case-form");
  if (caseForm) setUpCaseForm(caseForm);
  if (body.dataset.page === "queue") setUpQueue();
  else if (userId) watchSession();
  for (const form of document.querySelectorAll("form.api-form")) setUpApiForm(form);
})();
