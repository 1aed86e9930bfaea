// Pillarbox webmail: small progressive enhancements over server-rendered pages.
// Everything works without this file; it adds keyboard navigation (j/k, enter, x, r, a, f, c,
// u, #, /; Settings switches them off), live updates from the server-sent change feed (new rows
// announced, focus kept), confirmation of destructive buttons, an upload size check,
// message-frame sizing, keeping unsent text across a forced re-login, the simple rich-text
// editor of compose (the server sanitises what it posts), the signature following the chosen
// identity, recipient completion, and showing only the inputs a filter rule's chosen condition
// or action uses, and the browser's time zone for the pages' times.
"use strict";
(function () {
  const DRAFT_KEY = "pillarbox.unsent";
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  // -- the reader's time zone, for every time the pages show (the server falls back to UTC) -----
  // A page written in another zone than this browser's (the cookie was new, or the zone changed)
  // when the account leaves it automatic (data-zone-auto) and shows times is fetched again, once
  // per zone and tab: a zone the server does not know (it keeps UTC) cannot loop.
  try {
    const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    // IANA names are letters, digits and "/_+-": a cookie value as they are.
    const cookie = "tz=" + zone;
    if (zone && /^[A-Za-z0-9\/_+-]+$/.test(zone) && !document.cookie.split("; ").includes(cookie)) {
      document.cookie = cookie + "; path=/; max-age=31536000; samesite=lax";
      const root = document.documentElement;
      if (root.hasAttribute("data-zone-auto") && root.dataset.zone !== zone && $("time")
          && document.cookie.split("; ").includes(cookie)
          && sessionStorage.getItem("pillarbox.zone-reload") !== zone) {
        sessionStorage.setItem("pillarbox.zone-reload", zone);
        window.location.reload();
      }
    }
  } catch (error) { /* no Intl or no storage: UTC until the next page */ }
  const typing = (el) => el && (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName));

  // -- confirmation of destructive buttons ----------------------------------------------------
  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-confirm]");
    if (!button) return;
    if (!window.confirm(button.dataset.confirm)) {
      event.preventDefault();
    } else if (button.form && !button.form.elements.confirmed) {
      // Asked here: the server's confirmation page (the no-script way) is skipped.
      const confirmed = document.createElement("input");
      Object.assign(confirmed, { type: "hidden", name: "confirmed", value: "1" });
      button.form.append(confirmed);
    }
  });

  // -- message list: rows, selection, j/k ------------------------------------------------------
  let current = -1;
  const rows = () => $$("table.messages tbody tr[data-href]");
  function focusRow(index) {
    const all = rows();
    if (!all.length) return;
    current = Math.max(0, Math.min(all.length - 1, index));
    all.forEach((row, i) => row.classList.toggle("current", i === current));
    const link = $("td.subject a", all[current]);
    if (link) link.focus({ preventScroll: false });
  }
  function bindList() {
    const all = $("#select-all");
    if (all) {
      all.hidden = false;
      all.addEventListener("change", () => {
        $$("input[name=uid]", $("#list-form")).forEach((box) => { box.checked = all.checked; });
      });
    }
    rows().forEach((row) => {
      row.addEventListener("click", (event) => {
        if (event.target.closest("a, input, button, label")) return;
        window.location.href = row.dataset.href;
      });
    });
  }
  bindList();

  // -- keyboard shortcuts ---------------------------------------------------------------------
  // WCAG 2.1.4: single-key shortcuts can be switched off (Settings), for speech-input users whose
  // dictated words would fire them; the choice is the account's (the page says it in
  // data-shortcuts), saved as the box is ticked.
  const root = document.documentElement;
  const shortcutsOn = () => root.dataset.shortcuts !== "off";
  // Before the choice was the account's it was this browser's: one made "off" here is carried
  // over to the account once (logged-in pages have the Compose link), so it is not lost.
  try {
    const csrf = $("meta[name=csrf-token]");
    if (localStorage.getItem("pillarbox.shortcuts") === "off" && csrf && $("[data-key=c]")) {
      localStorage.removeItem("pillarbox.shortcuts");
      if (shortcutsOn()) {
        root.dataset.shortcuts = "off";
        const body = new FormData();
        body.append("csrf", csrf.content);
        fetch("/settings/shortcuts", { method: "POST", body, credentials: "same-origin" }).catch(() => null);
      }
    }
  } catch (_) { /* no storage */ }
  const switchForm = $("#shortcuts-form");
  if (switchForm) {
    const box = $("#shortcuts-on"), state = $("#shortcuts-state");
    $("button", switchForm).hidden = true;
    box.addEventListener("change", async () => {
      const on = box.checked;
      const body = new FormData(switchForm);
      const response = await fetch(switchForm.action, { method: "POST", body, credentials: "same-origin" }).catch(() => null);
      if (response && response.ok && !response.url.includes("/login")) {
        root.dataset.shortcuts = on ? "on" : "off";
        state.textContent = on ? "Shortcuts on." : "Shortcuts off.";
      } else {
        box.checked = !on;
        state.textContent = "Not saved: the server could not be reached, or you were logged out.";
      }
    });
  }
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target) || !shortcutsOn()) return;
    const key = event.key;
    if (key === "/") {
      const search = $("#q");
      if (search) { event.preventDefault(); search.focus(); }
      return;
    }
    if (key === "j" || key === "k") {
      if (rows().length) { event.preventDefault(); focusRow(current + (key === "j" ? 1 : -1)); }
      return;
    }
    if (key === "Enter" && current >= 0 && rows()[current]) {
      window.location.href = rows()[current].dataset.href;
      return;
    }
    if (key === "x" && current >= 0 && rows()[current]) {
      const box = $("input[name=uid]", rows()[current]);
      if (box) box.checked = !box.checked;
      return;
    }
    const target = $(`[data-key="${CSS.escape(key)}"]`);
    if (target) {
      event.preventDefault();
      target.click();
    }
  });

  // -- toolbars: arrow keys between their controls (ARIA APG toolbar pattern) -------------------
  // Tab still stops on each control, as without script; Left/Right (and Home/End) move along the
  // bar as a screen reader announcing "toolbar" leads its user to expect. A select keeps its own
  // arrows (they choose an option), so only Tab leaves it.
  document.addEventListener("keydown", (event) => {
    const bar = event.target.closest && event.target.closest("[role=toolbar]");
    if (!bar || event.target.tagName === "SELECT" || event.ctrlKey || event.metaKey || event.altKey) return;
    const stops = $$("button, select, a[href]", bar).filter((el) => !el.disabled && el.offsetParent !== null);
    const at = stops.indexOf(event.target);
    if (at < 0) return;
    const next = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: stops.length - 1 }[event.key];
    if (next === undefined) return;
    event.preventDefault();
    stops[(next + stops.length) % stops.length].focus();
  });

  // -- live updates (server-sent events from the store's change feed) ---------------------------
  async function refresh() {
    const list = $("#list");
    const busy = list && $$("input[name=uid]:checked", list).length > 0;
    // The page's own doing, not the person's: the header keeps it from refreshing the session.
    const response = await fetch(window.location.href, { credentials: "same-origin", headers: { "x-pillarbox-background": "1" } });
    if (!response.ok || response.redirected) return;
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    const folders = $("#folders"), fresh = $("#folders", doc);
    if (folders && fresh) folders.replaceWith(fresh);
    const freshList = $("#list", doc);
    if (list && freshList && !busy) {
      // Focus inside the list would fall to <body> with the old list: the same control of the
      // same row (or the same control by id) takes it back, and new rows are announced.
      const focused = list.contains(document.activeElement) ? document.activeElement : null;
      const row = focused && focused.closest("tr[data-href]");
      const before = new Set(rows().map((r) => r.dataset.href));
      list.replaceWith(freshList);
      bindList();
      if (current >= 0) focusRow(current);
      else if (focused) {
        const again = row ? $(`tr[data-href="${CSS.escape(row.dataset.href)}"] ${focused.tagName}`, freshList)
                          : focused.id && $(`#${CSS.escape(focused.id)}`, freshList);
        (again || $("#main")).focus();
      }
      const arrived = rows().filter((r) => !before.has(r.dataset.href)).length;
      const news = $("#list-news");
      if (news && arrived) news.textContent = `${arrived} new message${arrived === 1 ? "" : "s"}`;
    }
    document.title = doc.title;
  }
  if ($("#folders") && window.EventSource) {
    // A shared folder's changes are not this account's: the stream is told which one is shown.
    const shown = $("#list") && $("#list").dataset.mailbox;
    const source = new EventSource(shown ? "/events?mailbox=" + shown : "/events");
    let pending = null;
    source.addEventListener("change", () => {
      // Coalesce bursts (a move is an expunge here and an arrival there).
      if (pending) return;
      pending = setTimeout(() => { pending = null; refresh().catch(() => {}); }, 150);
    });
  }

  // -- message body frame: grow to its content ----------------------------------------------
  const frame = $("iframe.body-frame");
  if (frame) {
    const fit = () => {
      try {
        const doc = frame.contentDocument;
        if (doc && doc.documentElement) {
          frame.style.height = (doc.documentElement.scrollHeight + 16) + "px";
        }
      } catch (_) { /* not same-origin: keep the CSS height */ }
    };
    frame.addEventListener("load", fit);
    fit();
  }

  // -- compose: the rich-text editor -----------------------------------------------------------
  // A contenteditable box driven by execCommand (bold, italic, links, lists); its HTML goes in
  // the hidden "html" field, from which the server builds text/html and the text/plain part.
  const escapeHtml = (text) => text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  function textToHtml(text) {
    // Plain text (a reply's quote included) as editor HTML: "> " runs become a blockquote.
    const out = [];
    let quoted = null;
    text.replace(/\r\n/g, "\n").split("\n").forEach((line) => {
      const match = /^>\s?(.*)$/.exec(line);
      if (match) { (quoted = quoted || []).push(escapeHtml(match[1])); return; }
      if (quoted) { out.push(`<blockquote>${quoted.join("<br>")}</blockquote>`); quoted = null; }
      out.push(line ? `<div>${escapeHtml(line)}</div>` : "<div><br></div>");
    });
    if (quoted) out.push(`<blockquote>${quoted.join("<br>")}</blockquote>`);
    return out.join("");
  }
  function richEditor(form, onChange) {
    const box = $("#f-rich", form), bar = $("#editor-bar", form), toggle = $("#rich-toggle", form);
    const body = $("#f-body", form), field = form.elements.html;
    if (!box || !bar || !toggle || !field) return null;
    $("#rich-switch", form).hidden = false;
    const sync = () => { field.value = box.hidden ? "" : box.innerHTML; };
    const show = (rich) => {
      if (rich && !box.innerHTML.trim()) box.innerHTML = textToHtml(body.value);
      if (!rich) body.value = box.innerText;
      box.hidden = bar.hidden = !rich;
      body.hidden = rich;
      toggle.checked = rich;
      sync();
    };
    toggle.addEventListener("change", () => { show(toggle.checked); onChange(); });
    box.addEventListener("input", () => { sync(); onChange(); });
    bar.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-command]");
      if (!button) return;
      box.focus();
      let value = null;
      if (button.dataset.command === "createLink") {
        value = window.prompt("Link address", "https://");
        if (!value || value === "https://") return;
      }
      document.execCommand(button.dataset.command, false, value);
      sync();
      onChange();
    });
    form.addEventListener("submit", sync);
    if (toggle.checked) show(true);
    return { load: (html) => { box.innerHTML = html; show(true); } };
  }

  // -- compose: size check and unsent text kept across a re-login ----------------------------
  const form = $("#compose-form");
  const fields = ["identity", "to", "cc", "bcc", "subject", "body", "html", "in_reply_to", "references", "replying_to", "forwarding"];
  if (new URLSearchParams(window.location.search).get("sent") === "1") {
    sessionStorage.removeItem(DRAFT_KEY);
  }
  if (form) {
    const limit = Number(form.dataset.maxUpload || 0);
    const files = $("#f-attachment", form);
    const error = $("#e-attachment", form);
    const checkSize = () => {
      const total = Array.from(files.files || []).reduce((sum, f) => sum + f.size, 0);
      const over = limit && total > limit;
      error.hidden = !over;
      error.textContent = over ? `Attachments are ${(total / 1048576).toFixed(1)} MB; the limit is ${(limit / 1048576).toFixed(0)} MB.` : "";
      $$("button[name=action]", form).forEach((b) => { b.disabled = !!over; });
    };
    if (files) files.addEventListener("change", checkSize);
    const snapshot = () => {
      const data = {};
      fields.forEach((name) => { const el = form.elements[name]; if (el) data[name] = el.value; });
      return data;
    };
    const save = () => sessionStorage.setItem(DRAFT_KEY, JSON.stringify(snapshot()));
    const editor = richEditor(form, save);
    form.addEventListener("input", save);
    form.addEventListener("submit", save);
    const kept = sessionStorage.getItem(DRAFT_KEY);
    const banner = $("#restore-draft");
    if (kept && banner) {
      let data = null;
      try { data = JSON.parse(kept); } catch (_) { data = null; }
      const differs = data && fields.some((n) => form.elements[n] && (data[n] || "") !== form.elements[n].value);
      if (differs && (data.body || data.subject || data.to)) {
        banner.hidden = false;
        $("#restore-button").addEventListener("click", () => {
          fields.forEach((name) => { if (form.elements[name] && name in data) form.elements[name].value = data[name]; });
          if (editor && data.html) editor.load(data.html);
          form.dispatchEvent(new Event("pillarbox:restored"));
          banner.hidden = true;
        });
      }
    }
  }

  // -- compose: the signature follows the chosen identity --------------------------------------
  // The server put the default identity's signature below a "-- " line (RFC 3676 §4.3). On a
  // change of identity the old block is replaced by the new one only if the body still holds it
  // unmodified: a signature the writer edited is theirs and left alone. Plain-text editing only.
  const identity = $("#f-identity");
  if (identity && form) {
    const body = $("#f-body", form);
    const block = (option) => (option && option.dataset.signature ? `-- \n${option.dataset.signature}` : "");
    let previous = identity.selectedOptions[0];
    // Text brought back after a re-login comes with its own identity and signature.
    form.addEventListener("pillarbox:restored", () => { previous = identity.selectedOptions[0]; });
    identity.addEventListener("change", () => {
      const before = block(previous), after = block(identity.selectedOptions[0]);
      previous = identity.selectedOptions[0];
      if (!body || body.hidden || before === after) return;
      const text = body.value.replace(/\r\n/g, "\n");
      if (before) {
        const at = text.indexOf(`\n${before}`);
        // Only the block as inserted: followed by the end (a line end at most), or by the
        // blank line before a quote; a line added to it makes it the writer's.
        const end = at + 1 + before.length;
        const following = text.slice(end);
        if (at < 0 || !(/^\n?$/.test(following) || following.startsWith("\n\n"))) return;
        body.value = after ? text.slice(0, at + 1) + after + text.slice(end)
                           : text.slice(0, at).replace(/\n+$/, "") + text.slice(end);
      } else {
        // None before: below the line the cursor is on, as the server puts one at the top.
        const stop = text.indexOf("\n", body.selectionStart || 0);
        const cut = stop < 0 ? text.length : stop;
        const head = text.slice(0, cut).replace(/\n+$/, ""), tail = text.slice(cut).replace(/^\n+/, "");
        body.value = `${head}\n\n${after}\n` + (tail ? `\n${tail}` : "");
      }
      body.dispatchEvent(new Event("input", { bubbles: true }));
    });
  }

  // -- compose: recipient completion --------------------------------------------------------
  // An ARIA 1.2 combobox over To/Cc/Bcc: the part after the last comma is looked up among the
  // account's contacts, then its correspondents (GET /api/v1/addresses, the session cookie; no
  // CSRF for a GET), arrows move through the listbox, Enter or Tab takes a suggestion, Escape
  // closes it.
  $$("input[data-complete]").forEach((input) => {
    const list = document.createElement("ul");
    list.id = `${input.id}-suggestions`;
    list.className = "suggestions";
    list.setAttribute("role", "listbox");
    list.setAttribute("aria-label", "Suggested addresses");
    list.hidden = true;
    input.after(list);
    input.setAttribute("role", "combobox");
    input.setAttribute("aria-autocomplete", "list");
    input.setAttribute("aria-controls", list.id);
    input.setAttribute("aria-expanded", "false");
    let asked = 0, active = -1;
    const options = () => $$("li", list);
    const close = () => {
      list.hidden = true; active = -1;
      input.setAttribute("aria-expanded", "false");
      input.removeAttribute("aria-activedescendant");
    };
    const mark = (index) => {
      options().forEach((li, i) => li.setAttribute("aria-selected", String(i === index)));
      active = index;
      if (index >= 0) input.setAttribute("aria-activedescendant", options()[index].id);
      else input.removeAttribute("aria-activedescendant");
    };
    const token = () => {
      const value = input.value, comma = value.lastIndexOf(",");
      return { head: comma < 0 ? "" : value.slice(0, comma + 1) + " ", word: value.slice(comma + 1).trim() };
    };
    const take = (address) => {
      input.value = `${token().head}${address}, `;
      close();
      input.dispatchEvent(new Event("input", { bubbles: true }));
      input.focus();
    };
    input.addEventListener("input", async (event) => {
      if (!event.isTrusted) return;  // our own dispatch after taking one
      const { word } = token();
      const ask = ++asked;
      if (!word) { close(); return; }
      let found = [];
      try {
        const reply = await fetch(`${input.dataset.complete}?prefix=${encodeURIComponent(word)}`, { credentials: "same-origin", headers: { accept: "application/json" } });
        if (reply.ok) found = (await reply.json()).addresses || [];
      } catch (_) { found = []; }
      if (ask !== asked) return;  // a later keystroke's answer wins
      list.replaceChildren(...found.map((address, i) => {
        const li = document.createElement("li");
        li.id = `${list.id}-${i}`;
        li.setAttribute("role", "option");
        li.setAttribute("aria-selected", "false");
        li.textContent = address;
        li.addEventListener("mousedown", (e) => { e.preventDefault(); take(address); });
        return li;
      }));
      if (!found.length) { close(); return; }
      list.hidden = false;
      input.setAttribute("aria-expanded", "true");
      mark(-1);
    });
    input.addEventListener("keydown", (event) => {
      if (list.hidden) return;
      const count = options().length;
      if (event.key === "ArrowDown") { event.preventDefault(); mark((active + 1) % count); }
      else if (event.key === "ArrowUp") { event.preventDefault(); mark(active <= 0 ? count - 1 : active - 1); }
      else if (event.key === "Escape") { event.preventDefault(); close(); }
      else if ((event.key === "Enter" || event.key === "Tab") && active >= 0) {
        event.preventDefault();
        take(options()[active].textContent);
      }
    });
    input.addEventListener("blur", close);
  });

  // -- filter rules: show only the inputs the chosen condition or action uses -----------------
  // (the server ignores the others; without this file every input is simply shown)
  function showWhen(fieldset, selectName, cells) {
    const select = $(`select[name$=${selectName}]`, fieldset);
    const update = () => {
      Object.entries(cells).forEach(([when, values]) => {
        const cell = $(`[data-when=${when}]`, fieldset);
        if (cell) cell.hidden = !values.includes(select.value);
      });
    };
    select.addEventListener("change", update);
    update();
  }
  $$("fieldset.condition").forEach((fs) => showWhen(fs, "_field", { header: ["header"] }));
  $$("fieldset.action").forEach((fs) => showWhen(fs, "_kind", {
    folder: ["move", "copy"],
    address: ["redirect", "redirect-copy"],
  }));
  // -- the session's end: a warning before it, "Stay signed in", and a word once it came -------
  // WCAG 2.2.1: the user is warned before the idle session ends and can extend it with one
  // action. Someone typing or clicking is not idle, though the server sees no request: such
  // input counts as the server counts a request (it refreshes a session past half its life),
  // so a long message is never cut off and the idle limit stays what it was; only a page left
  // alone warns. The end is the ends cookie (any tab's request moves it; the live feed and its
  // re-reads do not), read in the server's clock (data-now: the browser's may be off).
  const warning = $("#session-warning");
  if (warning) {
    const skew = Number(warning.dataset.now) - Date.now() / 1000;
    const warnFor = Number(warning.dataset.warning), ttl = Number(warning.dataset.ttl);
    const serverNow = () => Date.now() / 1000 + skew;
    let known = Number(warning.dataset.ends);
    const ends = () => {
      const match = document.cookie.match(/(?:^|; )pb_session_ends=(\d+)/);
      return Math.max(known, match ? Number(match[1]) : 0);
    };
    const text = $("#session-text"), extend = $("#session-extend"), ended = $("#session-ended");
    const clock = (at) => new Date((at - skew) * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    let state = "on", busy = false, returnFocus = null, lastInput = 0;
    const setState = (next, words) => {
      state = next;
      extend.hidden = next !== "warned";
      ended.hidden = next !== "ended";
      text.textContent = words;
    };
    const stay = async () => {
      if (busy) return;
      busy = true;
      const response = await fetch(extend.action, {
        method: "POST", body: new FormData(extend), credentials: "same-origin",
        headers: { accept: "application/json" },
      }).catch(() => null);
      busy = false;
      const json = response && response.ok && (response.headers.get("content-type") || "").includes("json");
      if (!json) return false;
      known = (await response.json()).ends;
      return true;
    };
    // Not once the warning shows: a key would then end it before Tab reached its button.
    // Past half its life, as the server counts; a few seconds before the warning at the
    // latest (with a warning of half the life, a keystroke and the warning would race).
    const extendAge = Math.max(0, Math.min(ttl / 2, ttl - warnFor - 5));
    const halfLived = (at) => at > ends() - ttl + extendAge;
    ["keydown", "input", "pointerdown"].forEach((type) => document.addEventListener(type, () => {
      if (state !== "on") return;
      lastInput = serverNow();
      if (halfLived(lastInput)) stay();
    }, true));
    const tick = async () => {
      const left = ends() - serverNow();
      if (left <= 0) {
        if (state !== "ended") {
          const writing = $("#compose-form") ? " What you were writing is kept: Send or Save draft asks you to log in, then opens it from Drafts." : "";
          setState("ended", "Your session has ended. Log in again to go on." + writing);
        }
      } else if (left <= warnFor) {
        if (state === "on" && halfLived(lastInput)) {
          await stay();  // input as the warning came, its extension still on the way
        } else if (state === "on") {
          returnFocus = document.activeElement;
          setState("warned", `You will be logged out at ${clock(ends())} for inactivity, in ${Math.ceil(left / 60)} min.`);
        }
      } else if (state !== "on") {
        // Extended here or by another tab.
        const hadFocus = extend.contains(document.activeElement);
        setState("on", state === "warned" ? `You stay signed in, until ${clock(ends())} if idle.` : "");
        window.setTimeout(() => { if (state === "on") text.textContent = ""; }, 10000);
        const back = returnFocus && returnFocus.isConnected && returnFocus !== document.body;
        if (hadFocus) (back ? returnFocus : $("#main")).focus();
      }
    };
    extend.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (await stay()) tick();
      else setState("ended", "Your session has ended. Log in again to go on.");
    });
    window.setInterval(tick, 1000);
  }
})();
