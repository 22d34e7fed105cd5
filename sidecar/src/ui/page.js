"use strict";
// berth's status page. Everything shown comes from the JSON endpoint and is
// written with textContent or dataset, never parsed as HTML: check names,
// group names and error text are not trusted.
(function () {
  var REFRESH_MS = 2000;
  var HISTORY = 60;
  var ENDPOINT = "api/v1/health/?history=1"; // relative: works behind a proxy prefix
  var checkTpl = document.getElementById("check-tpl");
  var groupTpl = document.getElementById("group-tpl");
  var checksEl = document.getElementById("checks");
  var groupsEl = document.getElementById("groups");
  var cards = new Map();
  var groupCards = new Map();
  var updates = 0;

  function $(id) { return document.getElementById(id); }
  function q(root, sel) { return root.querySelector(sel); }
  function setText(node, text) {
    var s = text == null ? "" : String(text);
    if (node.textContent !== s) node.textContent = s;
  }

  function ms(v) {
    if (v == null) return "—";
    if (v < 1) return v.toFixed(2) + " ms";
    if (v < 100) return v.toFixed(1) + " ms";
    if (v < 10000) return Math.round(v) + " ms";
    return (v / 1000).toFixed(1) + " s";
  }

  function every(v) {
    if (v == null) return "—";
    return v >= 1000 ? +(v / 1000).toFixed(1) + " s" : v + " ms";
  }

  function duration(seconds) {
    var s = Math.max(0, Math.floor(seconds));
    var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600);
    var m = Math.floor(s % 3600 / 60), r = s % 60;
    if (d) return d + "d " + h + "h";
    if (h) return h + "h " + m + "m";
    if (m) return m + "m " + r + "s";
    return r + "s";
  }

  function ago(iso) {
    if (!iso) return null;
    var t = Date.parse(iso);
    if (isNaN(t)) return String(iso);
    var s = (Date.now() - t) / 1000;
    return s < 1 ? "just now" : duration(s) + " ago";
  }

  function fact(id, text, good) {
    var node = $(id);
    setText(node, text);
    node.dataset.good = String(good);
  }

  function checkCard(name) {
    var card = cards.get(name);
    if (!card) {
      card = checkTpl.content.firstElementChild.cloneNode(true);
      card.dataset.check = name;
      setText(q(card, ".name"), name);
      var strip = q(card, ".strip");
      for (var i = 0; i < HISTORY; i++) {
        var bar = document.createElement("span");
        bar.className = "bar";
        strip.appendChild(bar);
      }
      cards.set(name, card);
    }
    return card;
  }

  function renderCheck(c, detail) {
    var card = checkCard(c.name);
    card.dataset.status = c.status;
    setText(q(card, ".type"), c.type);
    var crit = q(card, ".crit");
    crit.dataset.critical = String(!!c.critical);
    setText(crit, c.critical ? "critical" : "optional");
    setText(q(card, ".status"), c.status);
    setText(q(card, ".latency"), ms(c.latency_ms));
    setText(q(card, ".every"), every(c.interval_ms));
    setText(q(card, ".fails"), c.consecutive_failures);
    var lastFail = ago(c.last_failure);
    q(card, ".lastfail-wrap").hidden = !lastFail;
    setText(q(card, ".lastfail"), lastFail);
    var err = q(card, ".error");
    err.hidden = c.error == null;
    err.dataset.detail = String(!!detail);
    setText(q(err, ".mk"), detail ? "error" : "error kind");
    setText(q(card, ".errtext"), c.error);

    var history = Array.isArray(c.history) ? c.history.slice(-HISTORY) : [];
    var strip = q(card, ".strip");
    strip.dataset.count = String(history.length);
    var fails = 0, max = 0;
    history.forEach(function (h) { if (!h[0]) fails++; if (h[1] > max) max = h[1]; });
    strip.setAttribute("aria-label", "last " + history.length + " results, " + fails + " failed");
    var bars = strip.children;
    var offset = HISTORY - history.length;
    for (var i = 0; i < HISTORY; i++) {
      var bar = bars[i];
      var h = i >= offset ? history[i - offset] : null;
      if (!h) {
        delete bar.dataset.ok;
        bar.title = "";
        bar.style.height = "100%";
        continue;
      }
      bar.dataset.ok = String(!!h[0]);
      bar.title = (h[0] ? "ok" : "failed") + ", " + ms(h[1]);
      // Height shows latency relative to the slowest result in the strip;
      // failures stay full height so they stand out.
      var pct = !h[0] || max <= 0 ? 100 : 35 + 65 * (h[1] / max);
      bar.style.height = pct.toFixed(0) + "%";
    }
    return card;
  }

  function renderGroup(g, statusOf) {
    var card = groupCards.get(g.name);
    if (!card) {
      card = groupTpl.content.firstElementChild.cloneNode(true);
      card.dataset.group = g.name;
      setText(q(card, ".name"), g.name);
      groupCards.set(g.name, card);
    }
    card.dataset.status = g.status;
    setText(q(card, ".status"), g.status);
    var list = q(card, ".members");
    var items = (g.checks || []).map(function (m) {
      var li = document.createElement("li");
      li.dataset.status = statusOf.get(m.name) || m.status;
      var dot = document.createElement("span");
      dot.className = "dot";
      var name = document.createElement("span");
      name.textContent = m.name;
      li.appendChild(dot);
      li.appendChild(name);
      if (!m.critical) {
        var opt = document.createElement("span");
        opt.className = "opt";
        opt.textContent = "optional";
        li.appendChild(opt);
      }
      return li;
    });
    list.replaceChildren.apply(list, items);
    return card;
  }

  function render(data) {
    var overall = $("overall");
    overall.dataset.status = data.status;
    setText(overall, data.status);
    document.title = data.status + " · berth";
    fact("started", data.started ? "started" : "starting", data.started ? true : "warn");
    fact("ready", data.ready ? "ready" : "not ready", !!data.ready);
    fact("draining", data.draining ? "draining" : "no", data.draining ? "warn" : true);
    setText($("uptime"), duration(data.uptime_seconds || 0));
    $("uptime").dataset.good = "";
    $("detail-note").hidden = !!data.detail || !data.checks.some(function (c) { return c.error != null; });

    var seen = new Set();
    var statusOf = new Map();
    var ordered = data.checks.map(function (c) {
      seen.add(c.name);
      statusOf.set(c.name, c.status);
      return renderCheck(c, data.detail);
    });
    cards.forEach(function (card, name) { if (!seen.has(name)) cards.delete(name); });
    checksEl.replaceChildren.apply(checksEl, ordered);
    setText($("check-count"), data.checks.length);
    $("no-checks").hidden = data.checks.length > 0;

    var groups = Array.isArray(data.groups) ? data.groups : [];
    var seenGroups = new Set();
    var groupNodes = groups.map(function (g) { seenGroups.add(g.name); return renderGroup(g, statusOf); });
    groupCards.forEach(function (card, name) { if (!seenGroups.has(name)) groupCards.delete(name); });
    groupsEl.replaceChildren.apply(groupsEl, groupNodes);
    setText($("group-count"), groups.length);
    $("groups-section").hidden = groups.length === 0;

    updates++;
    document.body.dataset.updates = String(updates);
  }

  function connection(ok, text) {
    var conn = $("conn");
    conn.dataset.ok = String(ok);
    setText(conn, text);
  }

  function tick() {
    fetch(ENDPOINT, { cache: "no-store", headers: { Accept: "application/json" } })
      .then(function (r) { return r.json(); }) // 503 carries the same body
      .then(function (data) {
        if (!data || !Array.isArray(data.checks)) throw new Error("unexpected answer");
        render(data);
        connection(true, "updated " + new Date().toLocaleTimeString());
      })
      .catch(function () {
        connection(false, "cannot reach berth — retrying");
      })
      .then(function () { setTimeout(tick, REFRESH_MS); });
  }

  tick();
})();
