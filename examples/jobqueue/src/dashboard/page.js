"use strict";
// jobqueue's dashboard. It reads the JSON API every two seconds and writes
// what it gets with textContent (JSON through JSON.stringify), never as
// HTML: payloads, outputs, errors, queue and kind names are whatever a
// client submitted. The API key, when the API wants one, lives in this
// tab's sessionStorage and travels only in the Authorization header.
(function () {
  var REFRESH_MS = 2000;
  var PAGE_SIZE = 20;
  var RATE_WINDOW_MS = 60000;
  var KEY_SLOT = "jobqueue.apiKey";
  var STATUSES = ["queued", "running", "succeeded", "dead", "cancelled"];
  // Relative URLs: the page works at / and /dashboard, and behind a proxy
  // that serves the API under a prefix.
  var API = "api/v1/";

  var state = {
    seq: 0, // each refresh; answers of an older one are dropped
    timer: null,
    updates: 0,
    needKey: false,
    filter: { queue: "", status: "", kind: "" },
    cursors: [""], // cursor of every page on the way here; the last is shown
    nextCursor: null,
    kindOnServer: true, // false once the API refused ?kind= (older API)
    schedulesMissing: false, // the API has no /schedules: stop asking
    selected: null,
    queueCards: new Map(),
    samples: new Map(), // queue -> [[time, succeeded + dead], …] for the rate
    rows: new Map(),
    queueNames: "",
  };

  function $(id) { return document.getElementById(id); }
  function q(root, sel) { return root.querySelector(sel); }
  function setText(node, text) {
    var s = text == null ? "" : String(text);
    if (node.textContent !== s) node.textContent = s;
  }
  function showMsg(node, text, kind) {
    node.hidden = !text;
    node.dataset.kind = kind || "";
    setText(node, text);
  }

  // ---- the key -----------------------------------------------------------
  function storedKey() {
    try { return sessionStorage.getItem(KEY_SLOT) || ""; } catch (e) { return ""; }
  }
  function setKey(k) {
    try {
      if (k) sessionStorage.setItem(KEY_SLOT, k); else sessionStorage.removeItem(KEY_SLOT);
    } catch (e) { /* storage disabled: the key lasts until the next 401 */ }
    $("forget").hidden = !k;
  }
  function askForKey(refused) {
    if (state.needKey) return;
    state.needKey = true;
    if (refused) setKey("");
    $("auth").hidden = false;
    showMsg($("auth-error"), refused ? "The API refused that key." : "", "error");
    $("key").focus();
  }

  // ---- the API -----------------------------------------------------------
  function api(method, path, body) {
    var key = storedKey();
    var headers = { Accept: "application/json" };
    if (key) headers.Authorization = "Bearer " + key;
    // No cookies either way: nothing here authenticates by cookie.
    var init = { method: method, headers: headers, cache: "no-store", credentials: "omit" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(API + path, init).then(function (r) {
      return r.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        if (r.ok) return data;
        var e = data && data.error ? data.error : {};
        var err = new Error(typeof e.message === "string" ? e.message : "HTTP " + r.status);
        err.status = r.status;
        err.code = e.code;
        if (r.status === 401) askForKey(!!key);
        throw err;
      });
    });
  }

  // ---- formatting --------------------------------------------------------
  function duration(seconds) {
    var s = Math.max(0, Math.floor(seconds));
    var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600);
    var m = Math.floor(s % 3600 / 60), r = s % 60;
    if (d) return d + "d " + h + "h";
    if (h) return h + "h " + m + "m";
    if (m) return m + "m " + r + "s";
    return r + "s";
  }
  function relative(iso) {
    var t = Date.parse(iso);
    if (isNaN(t)) return "";
    var s = (Date.now() - t) / 1000;
    if (Math.abs(s) < 1) return "now";
    return s > 0 ? duration(s) + " ago" : "in " + duration(-s);
  }
  function when(iso) {
    if (iso == null || iso === "") return "—";
    var rel = relative(iso);
    var shown = String(iso).replace("T", " ").replace(/\.\d+/, "");
    return rel ? shown + " (" + rel + ")" : shown;
  }
  function json(v) {
    if (v === undefined) return "—";
    if (typeof v === "string") return v;
    return JSON.stringify(v, null, 2);
  }
  function orDash(v) { return v == null || v === "" ? "—" : String(v); }

  // ---- queues ------------------------------------------------------------
  function queueCard(name) {
    var card = state.queueCards.get(name);
    if (!card) {
      card = $("queue-tpl").content.firstElementChild.cloneNode(true);
      card.dataset.queue = name;
      setText(q(card, ".name"), name);
      var btn = q(card, ".toggle");
      btn.addEventListener("click", function () { toggleQueue(name, card); });
      state.queueCards.set(name, card);
    }
    return card;
  }
  function applyPaused(card, paused) {
    card.dataset.paused = String(paused);
    q(card, ".badge.paused").hidden = !paused;
    var btn = q(card, ".toggle");
    setText(btn, paused ? "Resume" : "Pause");
    btn.dataset.action = paused ? "resume" : "pause";
  }
  // Jobs finished per minute: the API's own count when it has one, else
  // the growth of succeeded + dead over the last minute of polls.
  function rate(qs, now) {
    if (typeof qs.finished_last_minute === "number") {
      return { text: String(qs.finished_last_minute), source: "api" };
    }
    var c = qs.counts || {};
    var total = (Number(c.succeeded) || 0) + (Number(c.dead) || 0);
    var list = state.samples.get(qs.queue) || [];
    list.push([now, total]);
    while (list.length > 2 && now - list[1][0] >= RATE_WINDOW_MS) list.shift();
    state.samples.set(qs.queue, list);
    var first = list[0], dt = now - first[0];
    if (dt < 1500) return { text: "—", source: "estimate" };
    // The reaper deletes old finished jobs: a shrinking count is not a rate.
    var perMin = Math.max(0, total - first[1]) * 60000 / dt;
    return { text: "≈" + (perMin < 10 ? perMin.toFixed(1) : Math.round(perMin)), source: "estimate" };
  }
  function renderQueues(list) {
    var now = Date.now();
    var seen = new Set();
    var cards = list.map(function (qs) {
      var name = String(qs.queue);
      seen.add(name);
      var card = queueCard(name);
      var counts = qs.counts || {};
      STATUSES.forEach(function (s) {
        var cell = q(card, '.c[data-s="' + s + '"]');
        setText(q(cell, ".n"), Number(counts[s]) || 0);
      });
      applyPaused(card, qs.paused === true);
      var r = rate(qs, now);
      var rv = q(card, ".rv");
      setText(rv, r.text);
      rv.dataset.source = r.source;
      return card;
    });
    state.queueCards.forEach(function (_, name) { if (!seen.has(name)) state.queueCards.delete(name); });
    state.samples.forEach(function (_, name) { if (!seen.has(name)) state.samples.delete(name); });
    var el = $("queues");
    el.replaceChildren.apply(el, cards);
    setText($("queue-count"), list.length);
    $("no-queues").hidden = list.length > 0;
    queueOptions(Array.from(seen));
  }
  function queueOptions(names) {
    var sel = $("f-queue");
    var current = sel.value;
    if (current && names.indexOf(current) < 0) names.push(current);
    names.sort();
    var key = names.join("\n");
    if (key === state.queueNames) return;
    state.queueNames = key;
    var opts = [new Option("all", "")].concat(names.map(function (n) { return new Option(n, n); }));
    sel.replaceChildren.apply(sel, opts);
    sel.value = current;
  }
  function toggleQueue(name, card) {
    var action = card.dataset.paused === "true" ? "resume" : "pause";
    var btn = q(card, ".toggle");
    btn.disabled = true;
    api("POST", "queues/" + encodeURIComponent(name) + "/" + action)
      .then(function (data) {
        showMsg($("queue-msg"), "");
        if (data && typeof data.paused === "boolean") applyPaused(card, data.paused);
      })
      .catch(function (e) {
        if (e.status === 401) return;
        var text = e.status === 404 && e.message === "no such route"
          ? "Pausing queues is not available in this API version."
          : name + ": " + e.message;
        showMsg($("queue-msg"), text, "error");
      })
      .then(function () { btn.disabled = false; refresh(); });
  }

  // ---- jobs --------------------------------------------------------------
  function jobsPath(withKind) {
    var p = new URLSearchParams();
    var f = state.filter;
    if (f.queue) p.set("queue", f.queue);
    if (f.status) p.set("status", f.status);
    if (f.kind && withKind) p.set("kind", f.kind);
    p.set("limit", String(PAGE_SIZE));
    var cursor = state.cursors[state.cursors.length - 1];
    if (cursor) p.set("cursor", cursor);
    return "jobs?" + p.toString();
  }
  function jobRow(id) {
    var tr = state.rows.get(id);
    if (!tr) {
      tr = document.createElement("tr");
      tr.dataset.id = String(id);
      ["id", "queue", "kind", "status", "attempts wide", "created wide"].forEach(function (cls) {
        var td = document.createElement("td");
        td.className = cls;
        tr.appendChild(td);
      });
      var badge = document.createElement("span");
      badge.className = "badge";
      q(tr, ".status").appendChild(badge);
      tr.tabIndex = 0;
      tr.addEventListener("click", function () { select(id); });
      tr.addEventListener("keydown", function (ev) { if (ev.key === "Enter") select(id); });
      state.rows.set(id, tr);
    }
    return tr;
  }
  function renderJobs(jobs) {
    var seen = new Set();
    var rows = jobs.map(function (j) {
      seen.add(j.id);
      var tr = jobRow(j.id);
      tr.dataset.status = j.status;
      tr.setAttribute("aria-selected", String(j.id === state.selected));
      setText(q(tr, ".id"), j.id);
      setText(q(tr, ".queue"), j.queue);
      setText(q(tr, ".kind"), j.kind);
      setText(q(tr, ".status .badge"), j.status);
      setText(q(tr, ".attempts"), j.attempts + "/" + j.max_attempts);
      var created = q(tr, ".created");
      setText(created, relative(j.created_at));
      created.title = String(j.created_at || "");
      return tr;
    });
    state.rows.forEach(function (_, id) { if (!seen.has(id)) state.rows.delete(id); });
    var body = $("jobs");
    // Re-insert only when the order changed, so a row being clicked stays put.
    var same = body.children.length === rows.length &&
      rows.every(function (tr, i) { return body.children[i] === tr; });
    if (!same) body.replaceChildren.apply(body, rows);
    $("no-jobs").hidden = jobs.length > 0;
    var page = state.cursors.length;
    setText($("page-no"), "page " + page);
    $("prev").disabled = page <= 1;
    $("first").disabled = page <= 1;
    $("next").disabled = !state.nextCursor;
    body.dataset.page = String(page);
  }
  function loadJobs(seq) {
    var serverKind = !!state.filter.kind && state.kindOnServer;
    return api("GET", jobsPath(serverKind))
      .catch(function (e) {
        // An API without the kind filter refuses the parameter by name:
        // ask without it and filter the rows of this page here.
        if (serverKind && e.status === 400 && /unknown query parameter "kind"/.test(e.message)) {
          state.kindOnServer = false;
          return api("GET", jobsPath(false));
        }
        throw e;
      })
      .then(function (data) {
        if (seq !== state.seq) return;
        if (!data || !Array.isArray(data.jobs)) throw new Error("unexpected answer from /jobs");
        var local = !!state.filter.kind && !state.kindOnServer;
        var jobs = local ? data.jobs.filter(function (j) { return j.kind === state.filter.kind; }) : data.jobs;
        $("kind-note").hidden = !local;
        state.nextCursor = typeof data.next_cursor === "string" && data.next_cursor ? data.next_cursor : null;
        renderJobs(jobs);
      });
  }
  function filtersChanged() {
    state.filter = { queue: $("f-queue").value, status: $("f-status").value, kind: $("f-kind").value.trim() };
    state.cursors = [""];
    refresh();
  }

  // ---- one job -----------------------------------------------------------
  function select(id) {
    if (state.selected !== id) showMsg($("d-msg"), "");
    state.selected = id;
    state.rows.forEach(function (tr, rid) { tr.setAttribute("aria-selected", String(rid === id)); });
    var panel = $("detail");
    panel.hidden = false;
    // data-status comes back with this job's detail (renderDetail): until
    // then the panel shows no status of the job selected before.
    if (panel.dataset.id !== String(id)) delete panel.dataset.status;
    panel.dataset.id = String(id);
    setText($("d-id"), "#" + id);
    if (window.matchMedia("(max-width: 900px)").matches) panel.scrollIntoView({ block: "start" });
    refresh();
  }
  function renderDetail(job) {
    var panel = $("detail");
    panel.dataset.status = job.status;
    setText($("d-id"), "#" + job.id);
    var st = $("d-status");
    setText(st, job.status);
    st.dataset.status = job.status;
    setText($("d-queue"), job.queue);
    setText($("d-kind"), job.kind);
    setText($("d-group"), orDash(job.group));
    setText($("d-attempts"), job.attempts + " / " + job.max_attempts);
    setText($("d-priority"), orDash(job.priority));
    setText($("d-timeout"), job.timeout_seconds == null ? "—" : job.timeout_seconds + " s");
    setText($("d-progress"), job.progress == null ? "—" : typeof job.progress === "object" ? JSON.stringify(job.progress) : String(job.progress));
    ["created_at", "run_at", "started_at", "finished_at", "updated_at"].forEach(function (f) {
      var dd = $("d-" + f);
      setText(dd, when(job[f]));
      dd.title = job[f] == null ? "" : String(job[f]);
    });
    setText($("d-idem"), orDash(job.idempotency_key));
    var err = $("d-error");
    setText(err, orDash(job.last_error));
    err.dataset.empty = String(job.last_error == null);
    setText($("d-payload"), json(job.payload));
    setText($("d-output"), job.output == null ? "—" : json(job.output));
  }
  function loadDetail(seq) {
    var id = state.selected;
    if (id == null) return Promise.resolve();
    return api("GET", "jobs/" + encodeURIComponent(String(id)))
      .then(function (job) {
        if (seq !== state.seq || id !== state.selected || !job) return;
        renderDetail(job);
      })
      .catch(function (e) {
        if (e.status === 404 && id === state.selected) {
          showMsg($("d-msg"), "Job " + id + " does not exist (any more).", "error");
          return;
        }
        throw e;
      });
  }
  function act(action) {
    var id = state.selected;
    if (id == null) return;
    var buttons = [$("d-retry"), $("d-cancel")];
    buttons.forEach(function (b) { b.disabled = true; });
    api("POST", "jobs/" + encodeURIComponent(String(id)) + "/" + action)
      .then(function (job) {
        if (id !== state.selected || !job) return;
        renderDetail(job);
        var text = action === "retry" ? "Job " + id + " retried: now " + job.status + "." : "Job " + id + " cancelled.";
        showMsg($("d-msg"), text, "ok");
      })
      .catch(function (e) {
        if (e.status === 401 || id !== state.selected) return;
        showMsg($("d-msg"), e.message, "error");
      })
      .then(function () {
        buttons.forEach(function (b) { b.disabled = false; });
        refresh();
      });
  }

  // ---- schedules ---------------------------------------------------------
  function renderSchedules(list) {
    var rows = list.map(function (s) {
      var tr = document.createElement("tr");
      tr.dataset.name = String(s.name);
      var job = s.job || {};
      var jobText = orDash(job.kind) + (job.queue ? " → " + job.queue : "");
      [s.name, s.cron, orDash(s.timezone), jobText, when(s.next_fire_at), s.last_fire_at ? when(s.last_fire_at) : "never"]
        .forEach(function (v) {
          var td = document.createElement("td");
          td.textContent = v == null ? "" : String(v);
          tr.appendChild(td);
        });
      return tr;
    });
    var body = $("schedules");
    body.replaceChildren.apply(body, rows);
    $("schedules-wrap").hidden = list.length === 0;
    setText($("schedule-count"), list.length);
    showMsg($("no-schedules"), list.length ? "" : "No schedules.");
  }
  function loadSchedules(seq) {
    if (state.schedulesMissing) return Promise.resolve();
    return api("GET", "schedules").then(function (data) {
      if (seq !== state.seq) return;
      if (!data || !Array.isArray(data.schedules)) throw new Error("unexpected answer from /schedules");
      renderSchedules(data.schedules);
    }, function (e) {
      if (e.status !== 404) throw e;
      // An API without schedules: say so once instead of asking every 2 s.
      state.schedulesMissing = true;
      $("schedules-wrap").hidden = true;
      setText($("schedule-count"), "");
      showMsg($("no-schedules"), "Schedules not available in this API version.");
    });
  }

  // ---- the loop ----------------------------------------------------------
  function connection(ok, text) {
    var conn = $("conn");
    conn.dataset.ok = String(ok);
    setText(conn, text);
  }
  function refresh() {
    clearTimeout(state.timer);
    state.timer = null;
    // Waiting for the key: asking again would only collect more 401s.
    if (state.needKey) { connection(false, "API key needed"); return; }
    if (document.hidden) { state.timer = setTimeout(refresh, REFRESH_MS); return; }
    var seq = ++state.seq;
    Promise.allSettled([loadQueues(seq), loadJobs(seq), loadSchedules(seq), loadDetail(seq)])
      .then(function (results) {
        if (seq !== state.seq) return; // a newer refresh owns the loop
        var failed = results.filter(function (r) { return r.status === "rejected"; })
          .map(function (r) { return r.reason; })
          .filter(function (e) { return !e || e.status !== 401; });
        if (state.needKey) {
          connection(false, "API key needed");
          return;
        }
        if (failed.length) {
          var e = failed[0];
          connection(false, (e && e.status ? e.message : "cannot reach the API") + " — retrying");
        } else {
          connection(true, "updated " + new Date().toLocaleTimeString());
        }
        state.updates++;
        document.body.dataset.updates = String(state.updates);
        state.timer = setTimeout(refresh, REFRESH_MS);
      });
  }
  function loadQueues(seq) {
    return api("GET", "queues").then(function (data) {
      if (seq !== state.seq) return;
      if (!data || !Array.isArray(data.queues)) throw new Error("unexpected answer from /queues");
      renderQueues(data.queues);
    });
  }

  // ---- wiring ------------------------------------------------------------
  $("auth-form").addEventListener("submit", function (ev) {
    ev.preventDefault(); // form-action 'none': the form never navigates
    var input = $("key");
    var k = input.value.trim();
    if (!k) return;
    input.value = "";
    setKey(k);
    state.needKey = false;
    $("auth").hidden = true;
    showMsg($("auth-error"), "");
    refresh();
  });
  $("forget").addEventListener("click", function () {
    setKey("");
    refresh();
  });
  $("filters").addEventListener("submit", function (ev) { ev.preventDefault(); filtersChanged(); });
  $("f-queue").addEventListener("change", filtersChanged);
  $("f-status").addEventListener("change", filtersChanged);
  var kindTimer = null;
  $("f-kind").addEventListener("input", function () {
    clearTimeout(kindTimer);
    kindTimer = setTimeout(filtersChanged, 300);
  });
  $("next").addEventListener("click", function () {
    if (!state.nextCursor) return;
    state.cursors.push(state.nextCursor);
    refresh();
  });
  $("prev").addEventListener("click", function () {
    if (state.cursors.length > 1) state.cursors.pop();
    refresh();
  });
  $("first").addEventListener("click", function () { state.cursors = [""]; refresh(); });
  $("d-close").addEventListener("click", function () {
    state.selected = null;
    $("detail").hidden = true;
    state.rows.forEach(function (tr) { tr.setAttribute("aria-selected", "false"); });
  });
  $("d-retry").addEventListener("click", function () { act("retry"); });
  $("d-cancel").addEventListener("click", function () { act("cancel"); });
  document.addEventListener("visibilitychange", function () { if (!document.hidden) refresh(); });

  $("forget").hidden = !storedKey();
  refresh();
})();
