/*  botmesh queue dashboard (served by the gateway at /admin/queues).

    Plain JavaScript, no framework, no network access beyond this gateway.
    It polls:
      GET /stats                     per-type counters, workers, totals, redis, leader
      GET /jobs?state=&botType=&limit=   recent jobs (no payload/result)
      GET /api/history?limit=N       metric snapshots, oldest first
      GET /job/{id}                  one job's whole record
    and posts POST /job/{id}/{retry,cancel,redeliver}.

    It also reads GET /events (Server-Sent Events, with fetch and a stream
    reader, so that the API key goes as a header as on every request): each
    job event refreshes the page, at most every EVENT_DEBOUNCE_MS; the polls
    above keep their pace meanwhile (what they show also changes without a
    job event: a prefetched job starting in its worker, heartbeats, permits;
    and the stream is at most once) (a dropped stream is opened again after
    1, 2, 4 ... 30 s).  The stream is closed while the page is
    hidden or the live box unticked.  ?poll=MS sets the poll period.

    When the gateway answers 401, the page asks for an API key once and keeps
    it in localStorage ("botmesh.apiKey"); every request carries it as X-API-Key.

    Everything taken from the server is written with textContent, never as
    HTML.  Stable hooks for tests: tr[data-type] td[data-field], #workers-body
    tr[data-worker], #jobs-body tr[data-job-id], #job-detail [data-field],
    #action-retry / #action-cancel / #action-redeliver, and on <body>
    data-stats-updates / data-jobs-updates / data-history-points /
    data-detail-job, which count completed refreshes. */
(function () {
  "use strict";

  var POLL_MS = pollPeriod(2000); // stats, jobs and the open job (?poll=MS)
  var EVENT_DEBOUNCE_MS = 250;    // at most one refresh per this, however many events
  var STREAM_RETRY_MS = 30000;    // a stream the gateway refused is tried again after this
  var STREAM_BACKOFF_MS = 1000;   // a dropped stream: first new try, doubled up to STREAM_RETRY_MS
  var EVENT_NAMES = ["waiting", "active", "progress", "completed", "failed", "delayed",
                     "removed", "stalled", "cancelled", "reset", "gap"];
  var HISTORY_MS = 5000;          // snapshots change every METRICS_SNAPSHOT_INTERVAL
  var HISTORY_LIMIT = 360;        // one hour at 10 s
  var WEBHOOK_ALERT_MS = 300000;  // failed webhook deliveries flagged for 5 min
  var KEY_STORE = "botmesh.apiKey";
  var PALETTE = ["#2f6fdf", "#e07b00", "#1d8a4f", "#b83280", "#6b46c1",
                 "#c53030", "#008c95", "#8a6d00", "#4a5568", "#d53f8c"];

  var state = {
    stats: null,            // last /stats answer
    jobs: [],               // last /jobs answer
    schedules: [],          // last /schedules answer
    history: [],            // snapshots, oldest first
    historyError: "",       // why the gateway has no history, when it said so
    historyCode: "",        // its error code (history_unavailable: none is kept)
    historyAt: 0,           // when history was last fetched (ms)
    selected: null,         // job id shown in the detail panel
    detail: null,           // its record
    authNeeded: false,      // a 401 stopped polling until a key is given
    timer: null,            // pending poll
    stream: null,           // the AbortController of the fetch on /events, while one is wanted
    streamLive: false,      // it is open
    streamRetry: null,      // pending new try after the stream dropped or was refused
    eventTimer: null,       // pending refresh asked by events
    eventAt: 0,             // when events last refreshed the page (ms)
    eventPending: false,    // events came during a refresh: refresh again after it
    busy: false,            // a refresh is running
    colors: {},             // bot type -> colour, stable while the page lives
    modes: {},              // bot type -> the mode /stats gave while workers served it
    counts: { stats: 0, jobs: 0, detail: 0, schedules: 0, events: 0, polls: 0, eventRefreshes: 0 }
  };

  // ------------------------------------------------------------------
  // Small helpers

  function $(id) { return document.getElementById(id); }

  function pollPeriod(dflt) {
    var m = /[?&]poll=(\d+)(?:&|$)/.exec(window.location.search);
    return m ? Math.max(500, Number(m[1])) : dflt;
  }

  //  el("td", {class: "num", "data-field": "waiting"}, "12")
  function el(tag, attrs) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (name) {
        var value = attrs[name];
        if (value === undefined || value === null) return;
        if (name === "class") node.className = value;
        else if (name === "title") node.title = value;
        else node.setAttribute(name, value);
      });
    }
    for (var i = 2; i < arguments.length; i++) {
      var child = arguments[i];
      if (child === undefined || child === null) continue;
      if (Array.isArray(child)) { child.forEach(function (c) { node.appendChild(c); }); continue; }
      node.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  function num(v) { return typeof v === "number" && isFinite(v) ? v : 0; }

  //  Timestamps come as ISO-8601 strings from the gateway, or ms numbers.
  function toMs(v) {
    if (typeof v === "number" && isFinite(v)) return v;
    if (typeof v === "string" && v) {
      var t = Date.parse(v);
      return isNaN(t) ? null : t;
    }
    return null;
  }

  function pad(n, w) { n = String(n); while (n.length < (w || 2)) n = "0" + n; return n; }

  function fmtTime(v) {
    var t = toMs(v);
    if (t === null) return "";
    var d = new Date(t), now = new Date();
    var hms = pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
    if (d.toDateString() === now.toDateString()) return hms;
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " + hms;
  }

  function isoTitle(v) {
    var t = toMs(v);
    return t === null ? "" : new Date(t).toISOString();
  }

  function fmtDuration(ms) {
    if (ms === null || ms === undefined || !isFinite(ms) || ms < 0) return "";
    if (ms < 1000) return Math.round(ms) + " ms";
    if (ms < 60000) return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + " s";
    var s = Math.round(ms / 1000);
    if (s < 3600) return Math.floor(s / 60) + " m " + (s % 60) + " s";
    return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " m";
  }

  function fmtAge(ms) {
    if (ms === null || !isFinite(ms)) return "";
    if (ms < 0) ms = 0;
    return fmtDuration(ms) + " ago";
  }

  function jobDuration(job) {
    var start = toMs(job.startedAt), end = toMs(job.finishedAt);
    if (start === null) return null;
    if (end === null) return job.state === "running" ? Date.now() - start : null;
    return end - start;
  }

  function stateBadge(s, attrs) {
    var a = attrs || {};
    a["class"] = "state state-" + String(s || "unknown").replace(/[^a-z]/g, "");
    return el("span", a, s || "");
  }

  function colorOf(type) {
    if (!state.colors[type]) {
      var used = Object.keys(state.colors).length;
      state.colors[type] = PALETTE[used % PALETTE.length];
    }
    return state.colors[type];
  }

  function getKey() {
    try { return window.localStorage.getItem(KEY_STORE) || ""; } catch (e) { return ""; }
  }

  function setKey(key) {
    try {
      if (key) window.localStorage.setItem(KEY_STORE, key);
      else window.localStorage.removeItem(KEY_STORE);
    } catch (e) { /* storage off: the key lives only in this page */ }
    memoryKey = key;
  }
  var memoryKey = "";

  // ------------------------------------------------------------------
  // HTTP

  function ApiError(status, code, message) {
    this.status = status;
    this.code = code;
    this.message = message;
  }

  function api(method, path, body) {
    var headers = { "Accept": "application/json" };
    var key = getKey() || memoryKey;
    if (key) headers["X-API-Key"] = key;
    var init = { method: method, headers: headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(path, init)
      .catch(function (e) {
        throw new ApiError(0, "network", "cannot reach the gateway (" + e.message + ")");
      })
      .then(function (res) {
        return res.text().then(function (text) {
          var body = null;
          try { body = text ? JSON.parse(text) : null; } catch (e) { body = null; }
          if (res.status === 401) {
            askKey(key ? "The API key was refused." : "");
            throw new ApiError(401, "unauthorized", "API key needed");
          }
          if (!res.ok) {
            var code = "http_" + res.status, message = res.statusText || text;
            var err = body && body.error;
            if (err && typeof err === "object") {
              code = err.code || code;
              message = err.message || message;
            }
            else if (typeof err === "string") {
              code = body.code || err;
              message = body.message || err;
            }
            throw new ApiError(res.status, code, message);
          }
          if (body === null) throw new ApiError(res.status, "bad_json", "the gateway did not answer JSON");
          return body;
        });
      });
  }

  // ------------------------------------------------------------------
  // API key

  //  The header has one status, the stream pill (#stream: live, polling,
  //  paused...).  #conn shows only what is wrong with the page's requests
  //  (an API key needed, an error, the gateway unreachable) and hides once
  //  they work again: a second "live" badge beside the stream's said nothing.
  function connPill(s, text) {
    var pill = $("conn");
    pill.dataset.state = s;
    pill.textContent = text;
    pill.hidden = s === "ok";
  }

  function askKey(message) {
    state.authNeeded = true;
    connPill("auth", "API key needed");
    $("auth").hidden = false;
    $("auth-message").textContent = message || "";
    $("auth-key").focus();
  }

  function saveKey(ev) {
    ev.preventDefault();
    setKey($("auth-key").value.trim());
    $("auth-key").value = "";
    $("auth").hidden = true;
    state.authNeeded = false;
    state.historyAt = 0;
    startStream();
    refresh();
  }

  // ------------------------------------------------------------------
  // Rendering: bot types, totals, workers

  function typeNames(stats) {
    return Object.keys((stats && stats.types) || {}).sort();
  }

  function renderStats(stats) {
    var body = $("types-body");
    clear(body);
    var names = typeNames(stats);
    var sums = { waiting: 0, delayed: 0, waitingChildren: 0, running: 0, prefetched: 0, limit: 0, waitingForPermit: 0, completed: 0, failed: 0, cancelled: 0, workers: 0, limitKills: 0,
                 warmProcesses: 0, recycles: 0, initFailures: 0 };
    names.forEach(function (name) {
      var t = stats.types[name] || {};
      // The "all" row counts bot executions: the webhook row's deliveries
      // are shown on their own row only.
      if (name !== "webhook")
        Object.keys(sums).forEach(function (k) { sums[k] += num(t[k]); });
      body.appendChild(typeRow(name, t));
    });
    if (!names.length)
      body.appendChild(el("tr", null, el("td", { colspan: "15", "class": "muted" }, "No bot types yet.")));

    var foot = $("totals");
    clear(foot);
    var totalRow = el("tr", { "data-type": "*" },
      el("td", { title: "all bot types; webhook deliveries are not counted here" }, "all"),
      el("td", { "class": "num", "data-field": "waiting" }, sums.waiting,
         childrenNote(sums.waitingChildren, "total-waitingChildren")),
      el("td", { "class": "num", "data-field": "delayed" }, sums.delayed),
      el("td", null, el("div", { "class": "usage" }, el("span", { "class": "text" },
        el("span", { "data-field": "running", id: "total-running" }, sums.running), " running",
        prefetchedNote(sums.prefetched, "total-prefetched")))),
      el("td", { "class": "num", "data-field": "waitingForPermit" }, sums.waitingForPermit),
      el("td", { "class": "num", "data-field": "completed" }, sums.completed),
      el("td", { "class": "num", "data-field": "failed" }, sums.failed),
      el("td", { "class": "num", "data-field": "cancelled" }, sums.cancelled),
      //  Bot workers, as broker_workers_connected: a webhook manager (a
      //  worker of the webhook type only) is on the webhook row.
      el("td", { "class": "num", "data-field": "workers" }, (stats.workers || []).filter(function (w) {
        return (w.types || []).some(function (t) { return t !== "webhook"; });
      }).length),
      el("td", { "class": "num", "data-field": "limitKills" }, sums.limitKills),
      el("td", null, ""),
      el("td", { "class": "num", "data-field": "warmProcesses" }, sums.warmProcesses),
      el("td", { "class": "num", "data-field": "recycles" }, sums.recycles),
      el("td", { "class": "num", "data-field": "initFailures" }, sums.initFailures),
      el("td", null));
    foot.appendChild(totalRow);
    //  The broker's totals go on across restarts and failovers: each
    //  leader continues those of the last metric snapshot in Redis (a
    //  leader killed loses what it counted since its last snapshot).  Each
    //  label says what it counts.
    var totals = stats.totals || {};
    var line = el("td", { colspan: "15", "class": "muted", id: "totals-line" });
    var since = "totals across restarts and failovers";
    if (typeof stats.uptimeMs === "number")
      since += " (this broker up " + fmtDuration(stats.uptimeMs) + ")";
    //  Until the broker has read the last snapshot (Redis slow or away at
    //  its start), its totals are only its own: say so rather than show a
    //  drop.
    if (totals.known === false)
      since += ", earlier totals not read yet (Redis): this broker's own counts only";
    line.appendChild(el("span", { id: "totals-since", "data-known": totals.known === false ? "false" : "true" },
                        since + ":  "));
    var retries = 0;
    names.forEach(function (name) { if (name !== "webhook") retries += num((stats.types[name] || {}).retries); });
    var shown = [
      ["submitted", "submitted", totals.submitted, "jobs clients submitted, each counted once, by whichever broker led"],
      ["completed", "completed", totals.completed, "jobs that completed"],
      ["failed", "failed", totals.failed, "jobs that failed (after their retries)"],
      ["cancelled", "cancelled", totals.cancelled, "jobs cancelled"],
      ["rejected", "rejected", totals.rejected, "submissions refused (queue_full, store_unavailable, ...)"],
      ["retried", "retried by request", totals.retried, "failed or cancelled jobs put back in their queue by request: RETRY (POST /job/{id}/retry, the Retry button) or QUEUE retry (POST /queues/{type}/retry, Retry failed), one each"],
      ["retries", "retried automatically", retries, "failed runs sent back to wait their backoff (attempts left): bot_retries_total on /metrics"]];
    shown.forEach(function (item, i) {
      if (item[2] === undefined) return;
      if (i) line.appendChild(document.createTextNode("  ·  "));
      line.appendChild(el("span", { title: item[3] }, item[1] + " "));
      line.appendChild(el("b", { id: "total-" + item[0], "data-total": item[0], title: item[3] }, num(item[2])));
    });
    foot.appendChild(el("tr", null, line));

    renderWorkers(stats.workers || []);
    renderTypeFilter(names);

    var redis = $("redis");
    redis.title = "the broker's Redis (job records); the charts' history is the gateway's";
    if (stats.redis === true) { redis.textContent = "redis up"; redis.dataset.state = "ok"; }
    else if (stats.redis === false) { redis.textContent = "redis down"; redis.dataset.state = "down"; }
    else { redis.textContent = "redis ?"; redis.dataset.state = "unknown"; }

    //  The broker that answered leads (a standby answers not_leader).
    var leader = $("leader"), lead = stats.leader;
    if (lead && typeof lead.endpoint === "string") {
      leader.textContent = "leader " + lead.endpoint + (lead.ha === "redis" ? " (epoch " + lead.epoch + ")" : "");
      leader.dataset.state = "ok";
      leader.dataset.epoch = String(lead.epoch || 0);
      leader.title = lead.ha === "redis" ? "BROKER_HA=redis: the broker that holds the lease"
                                         : "a single broker (no BROKER_HA)";
    } else { leader.textContent = "leader ?"; leader.dataset.state = "unknown"; }
  }

  //  Jobs wait and nothing can take them: no worker serves the type (for
  //  the webhook type: no webhook manager is connected).
  function typeAlert(name, t) {
    if (num(t.waiting) > 0 && num(t.workers) === 0)
      return { code: "no-workers", text: name === "webhook" ? "no webhook manager" : "no workers",
               title: num(t.waiting) + " queued, and no " + (name === "webhook" ? "webhook manager is" : "worker serving " + name + " is") +
                      " connected: they wait until one is" };
    return null;
  }

  function typeRow(name, t) {
    var usage = t.usage !== undefined ? t.usage : t.running;
    var id = function (f) { return "type-" + name + "-" + f; };
    var alert = typeAlert(name, t);
    var attrs = { "data-type": name, "data-paused": t.paused ? "1" : "0" };
    if (alert) { attrs["class"] = "alerting"; attrs["data-alert"] = alert.code; }
    return el("tr", attrs,
      el("td", { "class": "type" },
         el("span", { "class": "swatch", style: "background:" + colorOf(name) }), name,
         t.paused ? el("span", { "class": "state state-paused", id: id("paused") }, "paused") : null,
         alert ? el("span", { "class": "state state-alert", id: id("alert"), title: alert.title }, alert.text) : null),
      el("td", { "class": "num" }, el("span", { "data-field": "waiting", id: id("waiting") }, num(t.waiting)),
         childrenNote(num(t.waitingChildren), id("waitingChildren"))),
      el("td", { "class": "num", "data-field": "delayed", id: id("delayed") }, num(t.delayed)),
      el("td", null, usageCell(num(t.running), num(t.limit), num(usage), name, num(t.prefetched))),
      el("td", { "class": "num", "data-field": "waitingForPermit", id: id("waitingForPermit") }, num(t.waitingForPermit)),
      el("td", { "class": "num", "data-field": "completed", id: id("completed") }, num(t.completed)),
      el("td", { "class": "num", "data-field": "failed", id: id("failed") }, num(t.failed)),
      el("td", { "class": "num", "data-field": "cancelled", id: id("cancelled") }, num(t.cancelled)),
      el("td", { "class": "num", "data-field": "workers", id: id("workers") }, num(t.workers)),
      el("td", { "class": "num", "data-field": "limitKills", id: id("limitKills") }, num(t.limitKills)),
      botCells(name, t, id),
      el("td", { "class": "queue-actions" },
        queueButton(name, t.paused ? "resume" : "pause", t.paused ? "Resume" : "Pause"),
        //  Webhook deliveries are paused and resumed, never dropped: the
        //  gateway refuses drain, clean and retry of that queue.
        name === "webhook" ? null : queueButton(name, "drain", "Drain"),
        name === "webhook" ? null : queueButton(name, "retry-failed", "Retry failed"),
        name === "webhook" ? null : queueButton(name, "clean-completed", "Clean completed"),
        name === "webhook" ? null : queueButton(name, "clean-failed", "Clean failed"),
        name === "webhook" ? null : queueButton(name, "clean-cancelled", "Clean cancelled")));
  }

  //  How the type's bots run: mode, warm processes, recycles, init
  //  failures.  Webhook deliveries are no bot processes: their row leaves
  //  the four cells blank (the broker sends none of them for it).
  function botCells(name, t, id) {
    if (name === "webhook") {
      var why = "webhook deliveries are HTTP requests of the webhook manager, not bot processes";
      return [0, 1, 2, 3].map(function () { return el("td", { "class": "muted", title: why }, ""); });
    }
    return [
      modeCell(name, t, id),
      el("td", { "class": "num", "data-field": "warmProcesses", id: id("warmProcesses") }, num(t.warmProcesses)),
      el("td", { "class": "num", "data-field": "recycles", id: id("recycles") }, num(t.recycles)),
      el("td", { "class": "num", "data-field": "initFailures", id: id("initFailures") }, num(t.initFailures))];
  }

  //  The mode cell.  /stats says "spawn" for a type its workers do not run
  //  warm, and null when no worker serves it: then the mode last seen while
  //  workers served it (this page's memory), or "no workers".
  function modeCell(name, t, id) {
    var mode = t.mode || "spawn";
    if (num(t.workers) > 0) {
      state.modes[name] = mode;
      return el("td", { "data-field": "mode", id: id("mode") }, mode);
    }
    var last = state.modes[name];
    return el("td", { "data-field": "mode", id: id("mode"), "class": "muted",
                      title: last ? "no worker serves " + name + " now; its workers last ran it in " + last + " mode"
                                  : "no worker serves " + name + " now: its mode is not known" },
              last ? last + " (no workers)" : "no workers");
  }

  //  A bot type's queue action: POST /queues/{type}/{pause|resume|drain|clean|retry}.
  function queueButton(name, action, label) {
    var b = el("button", { type: "button", id: "type-" + name + "-" + action, "data-action": action }, label);
    b.addEventListener("click", function () { runQueueAction(name, action); });
    return b;
  }

  function runQueueAction(name, action) {
    var message = $("queue-message");
    var clean = action.indexOf("clean-") === 0;
    //  Retry failed: the oldest 1,000 failed jobs a click (the gateway's
    //  limit); the message says when more are left.
    var retry = action === "retry-failed";
    var path = "/queues/" + encodeURIComponent(name) + "/" + (clean ? "clean" : retry ? "retry" : action);
    var body = clean ? { state: action.slice(6), olderThanMs: 0 } : retry ? { state: "failed" } : undefined;
    message.textContent = name + ": " + action + "…";
    message.dataset.result = "pending";
    api("POST", path, body).then(function (r) {
      message.textContent = name + ": " + action + (r.removed ? ", " + r.removed + " jobs removed" : "") +
        (retry ? ", " + num(r.retried) + " jobs retried" + (r.more ? " (more left: click again)" : "") : "") +
        (r.paused ? " (paused)" : "");
      message.dataset.result = "ok";
      message.dataset.removed = String(r.removed || 0);
      message.dataset.retried = String(r.retried || 0);
    }, function (err) {
      message.textContent = name + ": " + action + " failed: " + (err.code ? err.code + ": " : "") + err.message;
      message.dataset.result = "error";
    }).then(function () { refresh(); });
  }

  //  The schedules: key, type, cron (zone) or every N ms, next due time,
  //  runs (of the limit), active or ended, and a Remove button each.
  function renderSchedules(list) {
    var body = $("schedules-body");
    clear(body);
    $("schedules-count").textContent = "(" + list.length + ")";
    list.slice().sort(function (a, b) { return String(a.key).localeCompare(String(b.key)); })
      .forEach(function (s) {
        var id = function (f) { return "schedule-" + s.key + "-" + f; };
        var when = s.cron ? s.cron + " (" + (s.tz || "UTC") + ")" : "every " + fmtDuration(num(s.everyMs));
        var next = toMs(s.nextAt);
        var remove = el("button", { type: "button", id: id("remove"), "data-action": "remove-schedule" }, "Remove");
        remove.addEventListener("click", function () { removeSchedule(s.key); });
        body.appendChild(el("tr", { "data-schedule": s.key },
          el("td", { "class": "name", "data-field": "key" }, s.key),
          el("td", { "data-field": "botType" }, s.botType || ""),
          el("td", { "data-field": "when", id: id("when") }, when),
          el("td", { "data-field": "nextAt", "data-value": next === null ? "" : next, id: id("nextAt"),
                     title: isoTitle(next) }, next === null ? "" : fmtTime(next)),
          el("td", { "class": "num", "data-field": "runs", "data-value": num(s.runs), id: id("runs") },
             num(s.runs) + (s.limit ? " / " + s.limit : "")),
          el("td", { "data-field": "state", id: id("state") }, s.ended ? "ended" : "active"),
          el("td", null, remove)));
      });
    if (!list.length)
      body.appendChild(el("tr", null, el("td", { colspan: "7", "class": "muted" }, "No schedules.")));
  }

  function removeSchedule(key) {
    var message = $("schedule-message");
    message.textContent = key + ": remove…";
    message.dataset.result = "pending";
    api("DELETE", "/schedules/" + encodeURIComponent(key)).then(function () {
      message.textContent = key + ": removed";
      message.dataset.result = "ok";
    }, function (err) {
      message.textContent = key + ": remove failed: " + (err.code ? err.code + ": " : "") + err.message;
      message.dataset.result = "error";
    }).then(function () { refreshSchedules().catch(showError); });
  }

  function refreshSchedules() {
    return api("GET", "/schedules").then(function (body) {
      state.schedules = Array.isArray(body.schedules) ? body.schedules : [];
      renderSchedules(state.schedules);
      state.counts.schedules++;
      document.body.dataset.schedulesUpdates = state.counts.schedules;
    }, function (err) {
      //  A gateway without schedules still shows the rest
      if (err.status === 404) { state.schedules = []; renderSchedules([]); return; }
      throw err;
    });
  }

  //  " (N prefetched)" after a running count when N > 0: jobs of it that
  //  wait in their worker for a bot process (WORKER_PREFETCH), counted in
  //  running (STATS prefetched).
  //  The jobs waiting for their dependencies (waiting-children), beside
  //  the queued ones: nothing when there are none.
  function childrenNote(children, id) {
    if (!(children > 0)) return null;
    return el("span", { "class": "prefetched", title: children + " jobs wait for the jobs of their " +
                        "dependsOn to complete (waiting-children): not queued yet" },
      " (+", el("span", { "data-field": "waitingChildren", id: id }, children), " waiting on dependencies)");
  }

  function prefetchedNote(prefetched, id) {
    if (!(prefetched > 0)) return null;
    return el("span", { "class": "prefetched", title: prefetched + " of the running jobs wait in their " +
                        "worker for a bot process to take them (WORKER_PREFETCH): no bot runs them yet" },
      " (", el("span", { "data-field": "prefetched", id: id }, prefetched), " prefetched)");
  }

  //  "running / limit" with a bar showing semaphore permits in use, and
  //  the prefetched jobs among those running.
  function usageCell(running, limit, usage, name, prefetched) {
    var pct = limit > 0 ? Math.min(100, Math.round(100 * usage / limit)) : 0;
    var fill = el("div", { "class": "fill" + (limit > 0 && usage >= limit ? " full" : ""), style: "width:" + pct + "%" });
    var prefix = "type-" + name + "-";
    return el("div", { "class": "usage", title: "semaphore: " + usage + " of " + limit + " permits in use" },
      el("div", { "class": "bar", "data-field": "usage", "data-value": usage }, fill),
      el("span", { "class": "text" },
        el("span", { "data-field": "running", id: prefix + "running" }, running), " / ",
        el("span", { "data-field": "limit", id: prefix + "limit" }, limit),
        prefetchedNote(prefetched, prefix + "prefetched")));
  }

  function renderWorkers(workers) {
    var body = $("workers-body");
    clear(body);
    $("workers-count").textContent = "(" + workers.length + ")";
    var now = Date.now();
    workers.slice().sort(function (a, b) { return String(a.name).localeCompare(String(b.name)); })
      .forEach(function (w) {
        var beat = toMs(w.lastHeartbeatAt !== undefined ? w.lastHeartbeatAt : w.lastHeartbeat);
        //  A small number is an age in ms rather than a timestamp
        if (beat !== null && beat < 1e11) beat = now - beat;
        body.appendChild(el("tr", { "data-worker": w.name },
          el("td", { "class": "name", "data-field": "name" }, w.name),
          el("td", { "data-field": "types" }, (w.types || []).join(", ")),
          el("td", { "class": "num", "data-field": "credit" }, num(w.credit)),
          el("td", { "class": "num", "data-field": "running" }, num(w.running)),
          el("td", { "data-field": "lastHeartbeat", "data-value": beat === null ? "" : beat, title: isoTitle(beat) },
             beat === null ? "" : fmtAge(now - beat))));
      });
    if (!workers.length)
      body.appendChild(el("tr", null, el("td", { colspan: "5", "class": "muted" }, "No workers connected.")));
  }

  function renderTypeFilter(names) {
    var select = $("filter-type");
    var current = select.value;
    var have = Array.prototype.map.call(select.options, function (o) { return o.value; }).slice(1);
    if (have.join("\n") === names.join("\n")) return;
    while (select.options.length > 1) select.remove(1);
    names.forEach(function (n) { select.appendChild(el("option", { value: n }, n)); });
    if (current && names.indexOf(current) < 0) select.appendChild(el("option", { value: current }, current));
    select.value = current;
  }

  // ------------------------------------------------------------------
  // Rendering: jobs

  // The runs of a job against the runs it is allowed (runAttempts, the
  // request's "attempts"): one per failed run (attemptErrors) and the one
  // that runs or completed.  attempts counts dispatches, runs lost to
  // crashes too, and maxAttempts bounds only those: neither is the runs.
  function jobRuns(job) {
    var failed = Array.isArray(job.attemptErrors) ? job.attemptErrors.length : 0;
    return failed + (job.state === "running" || job.state === "completed" ? 1 : 0);
  }

  function runsText(job, sep) {
    if (job.attempts === undefined && job.runAttempts === undefined) return "";
    return jobRuns(job) + (job.runAttempts ? sep + job.runAttempts : "");
  }

  function dispatchNote(job) {
    if (job.attempts === undefined) return "";
    return "runs of the runs allowed; dispatched " + job.attempts + " time" + (job.attempts === 1 ? "" : "s") +
      (job.maxAttempts ? " (at most " + job.maxAttempts + " lost to crashes)" : "");
  }

  function renderJobs() {
    var body = $("jobs-body");
    clear(body);
    var needle = $("search-id").value.trim();
    var shown = 0;
    state.jobs.forEach(function (job) {
      if (needle && String(job.jobId).indexOf(needle) < 0) return;
      shown++;
      var hook = job.webhook;
      var row = el("tr", { "data-job-id": job.jobId, "data-state": job.state, "data-bot-type": job.botType },
        el("td", { "class": "id", "data-field": "jobId" }, job.jobId),
        el("td", { "data-field": "botType" }, job.botType),
        el("td", { "data-field": "state" }, stateBadge(job.state)),
        el("td", { "class": "num", "data-field": "priority" }, job.priority !== undefined ? job.priority : ""),
        el("td", { "class": "num", "data-field": "progress" }, job.progress !== undefined ? job.progress + "%" : ""),
        el("td", { "class": "num", "data-field": "attempts", title: dispatchNote(job) },
           runsText(job, "/")),
        el("td", { "data-field": "createdAt", title: isoTitle(job.createdAt) }, fmtTime(job.createdAt)),
        el("td", { "class": "num", "data-field": "duration" }, fmtDuration(jobDuration(job))),
        el("td", { "data-field": "webhook" }, hook && hook.state ? stateBadge(hook.state) : ""));
      if (job.jobId === state.selected) row.className = "selected";
      row.addEventListener("click", function () { openJob(job.jobId); });
      body.appendChild(row);
    });
    $("jobs-empty").hidden = shown > 0;
  }

  function jobsQuery() {
    var q = [];
    var st = $("filter-state").value, bt = $("filter-type").value, limit = $("filter-limit").value;
    if (st) q.push("state=" + encodeURIComponent(st));
    if (bt) q.push("botType=" + encodeURIComponent(bt));
    q.push("limit=" + encodeURIComponent(limit || "50"));
    return "/jobs?" + q.join("&");
  }

  // ------------------------------------------------------------------
  // Job detail and actions

  function openJob(id) {
    id = String(id || "").trim();
    if (!id) return;
    if (location.hash !== "#/job/" + encodeURIComponent(id))
      location.hash = "#/job/" + encodeURIComponent(id);
    else
      showJob(id);
  }

  function closeJob() {
    if (location.hash) history.replaceState(null, "", location.pathname + location.search);
    state.selected = null;
    state.detail = null;
    $("job-detail").hidden = true;
    delete document.body.dataset.detailJob;
    renderJobs();
  }

  function fromHash() {
    var m = /^#\/job\/(.+)$/.exec(location.hash);
    var id = null;
    // A link with a broken escape (%E0%A4%A) names no job: the page goes on.
    if (m) { try { id = decodeURIComponent(m[1]); } catch (e) { id = null; } }
    if (id) showJob(id);
    else if (state.selected) { state.selected = null; $("job-detail").hidden = true; renderJobs(); }
  }

  function showJob(id) {
    if (state.selected !== id) {
      state.selected = id;
      state.detail = null;
      $("action-message").textContent = "";
      $("detail-id").textContent = id;
      $("detail-missing").hidden = true;
      $("job-detail").hidden = false;
      renderDetail(null);
      renderJobs();
    }
    return loadDetail();
  }

  function loadDetail() {
    var id = state.selected;
    if (!id) return Promise.resolve();
    return api("GET", "/job/" + encodeURIComponent(id)).then(function (record) {
      if (state.selected !== id) return;
      state.detail = record;
      $("detail-missing").hidden = true;
      renderDetail(record);
      state.counts.detail++;
      document.body.dataset.detailJob = id;
      document.body.dataset.detailUpdates = state.counts.detail;
    }, function (err) {
      if (state.selected !== id || err.status === 401) return;
      var box = $("detail-missing");
      box.hidden = false;
      box.textContent = err.status === 404 ? "No job with this id." : "Could not load the job: " + err.message;
      if (err.status === 404) { state.detail = null; renderDetail(null); }
    });
  }

  function setField(root, name, value, title) {
    var node = root.querySelector('[data-field="' + name + '"]');
    if (!node) return;
    node.textContent = value === undefined || value === null ? "" : String(value);
    node.title = title || "";
  }

  function json(v) {
    if (v === undefined) return "";
    try { return JSON.stringify(v, null, 2); } catch (e) { return String(v); }
  }

  function renderDetail(job) {
    var root = $("job-detail");
    var j = job || {};
    var st = root.querySelector('[data-field="state"]');
    clear(st);
    if (j.state) st.appendChild(stateBadge(j.state));
    st.dataset.value = j.state || "";
    setField(root, "botType", j.botType);
    setField(root, "priority", j.priority);
    setField(root, "progress", j.progress !== undefined ? j.progress + "%" : "");
    var runs = runsText(j, " of ");
    setField(root, "attempts", runs && runs + " runs" + (j.attempts !== undefined && j.attempts !== jobRuns(j)
      ? ", dispatched " + j.attempts : ""), dispatchNote(j));
    setField(root, "worker", j.worker);
    setField(root, "createdAt", fmtTime(j.createdAt), isoTitle(j.createdAt));
    setField(root, "startedAt", fmtTime(j.startedAt), isoTitle(j.startedAt));
    setField(root, "finishedAt", fmtTime(j.finishedAt), isoTitle(j.finishedAt));
    setField(root, "duration", fmtDuration(jobDuration(j)));
    setField(root, "webhookUrl", j.webhookUrl);

    $("detail-payload").textContent = job ? json(j.payload === undefined ? null : j.payload) : "";
    var hasResult = j.result !== undefined;
    $("detail-result-box").hidden = !hasResult;
    $("detail-result").textContent = hasResult ? json(j.result) : "";
    var jobLog = typeof j.log === "string" ? j.log : "";
    $("detail-log-box").hidden = !jobLog;
    $("detail-log").textContent = jobLog;
    var err = j.error;
    $("detail-error-box").hidden = !err;
    $("detail-error-code").textContent = err ? (err.code || "") : "";
    $("detail-error-message").textContent = err ? (err.message || (typeof err === "string" ? err : "")) : "";

    var hook = j.webhook;
    $("detail-webhook-box").hidden = !hook;
    var hookRoot = $("detail-webhook");
    hook = hook || {};
    setField(hookRoot, "webhook.state", hook.state);
    setField(hookRoot, "webhook.attempts", hook.attempts);
    setField(hookRoot, "webhook.lastStatus", hook.lastStatus);
    setField(hookRoot, "webhook.lastError", hook.lastError);
    setField(hookRoot, "webhook.nextAttemptAt", fmtTime(hook.nextAttemptAt), isoTitle(hook.nextAttemptAt));

    var terminal = j.state === "completed" || j.state === "failed" || j.state === "cancelled";
    $("action-retry").disabled = !(j.state === "failed" || j.state === "cancelled");
    $("action-cancel").disabled = !(j.state === "queued" || j.state === "running" || j.state === "delayed"
                                    || j.state === "waiting-children");
    $("action-redeliver").disabled = !(terminal && (j.webhook || j.webhookUrl));
    $("action-promote").disabled = j.state !== "delayed";
    $("action-remove").disabled = !j.state || j.state === "running";
  }

  var ACTION_DONE = { retry: "queued again", cancel: "cancelled", redeliver: "webhook delivery queued",
                      promote: "due now: queued", remove: "removed" };
  var ACTIONS = ["retry", "cancel", "redeliver", "promote", "remove"];

  function runAction(action) {
    var id = state.selected;
    if (!id) return;
    var message = $("action-message");
    message.textContent = action + "…";
    message.dataset.result = "pending";
    ACTIONS.forEach(function (a) { $("action-" + a).disabled = true; });
    var call = action === "remove" ? api("DELETE", "/job/" + encodeURIComponent(id))
                                   : api("POST", "/job/" + encodeURIComponent(id) + "/" + action);
    call.then(function () {
      message.textContent = ACTION_DONE[action];
      message.dataset.result = "ok";
    }, function (err) {
      message.textContent = action + " failed: " + (err.code ? err.code + ": " : "") + err.message;
      message.dataset.result = "error";
    }).then(function () {
      loadDetail();
      refreshJobs();
    });
  }

  // ------------------------------------------------------------------
  // Charts (canvas, drawn by hand)

  //  Round up to 1, 2 or 5 times a power of ten.
  function niceCeil(v) {
    if (!(v > 0)) return 1;
    var p = Math.pow(10, Math.floor(Math.log(v) / Math.LN10));
    var f = v / p;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
  }

  function fmtAxis(v) {
    if (v === 0) return "0";
    var a = Math.abs(v);
    if (a >= 1e6) return (v / 1e6).toFixed(a >= 1e7 ? 0 : 1) + "M";
    if (a >= 1e3) return (v / 1e3).toFixed(a >= 1e4 ? 0 : 1) + "k";
    if (a >= 10) return v.toFixed(0);
    if (a >= 1) return v.toFixed(1).replace(/\.0$/, "");
    return v.toPrecision(2).replace(/0+$/, "").replace(/\.$/, "");
  }

  function fmtValue(v) {
    if (v === null || v === undefined || !isFinite(v)) return "–";
    return Math.abs(v) >= 100 ? String(Math.round(v)) : String(Math.round(v * 100) / 100);
  }

  //  series: [{name, color, dash, points: [[t, v|null], ...]}]; range: [t0, t1]
  //  (the snapshots' span, so every chart shares its time axis) or null.
  function drawChart(canvas, series, legendId, range) {
    var dpr = window.devicePixelRatio || 1;
    var w = canvas.clientWidth || canvas.width, h = canvas.clientHeight || canvas.height;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    var ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    ctx.font = "11px system-ui, sans-serif";

    var tMin = Infinity, tMax = -Infinity, vMax = 0, points = 0;
    series.forEach(function (s) {
      s.points.forEach(function (p) {
        if (p[1] === null || !isFinite(p[1])) return;
        tMin = Math.min(tMin, p[0]); tMax = Math.max(tMax, p[0]); vMax = Math.max(vMax, p[1]);
        points++;
      });
    });
    canvas.dataset.points = points;
    var left = 44, right = 10, top = 8, bottom = 20;
    var pw = w - left - right, ph = h - top - bottom;
    if (!points) {
      ctx.fillStyle = "#6a7385";
      ctx.textAlign = "center";
      //  The redis badge is the broker's Redis: the gateway's history may
      //  be away while it is up, and the chart says so and why.
      ctx.fillText(state.historyError ? "no history: " + state.historyError.split(":")[0]
                                      : "no snapshots yet", w / 2, h / 2);
      canvas.title = state.historyError;
      canvas.dataset.historyError = state.historyError;
      renderLegend(legendId, series);
      return;
    }
    if (range) { tMin = Math.min(tMin, range[0]); tMax = Math.max(tMax, range[1]); }
    if (tMax === tMin) { tMin -= 5000; tMax += 5000; }
    var step = niceCeil(vMax * 1.05 / 4), yMax = step * 4;
    var x = function (t) { return left + (t - tMin) / (tMax - tMin) * pw; };
    var y = function (v) { return top + ph - v / yMax * ph; };

    //  Grid and y labels: 4 steps
    ctx.strokeStyle = "#e6e9ef";
    ctx.fillStyle = "#6a7385";
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (var i = 0; i <= 4; i++) {
      var v = step * i, yy = Math.round(y(v)) + 0.5;
      ctx.beginPath(); ctx.moveTo(left, yy); ctx.lineTo(w - right, yy); ctx.stroke();
      ctx.fillText(fmtAxis(v), left - 6, yy);
    }
    //  x labels: up to 5 times
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    var ticks = Math.max(2, Math.min(5, Math.floor(pw / 110)));
    for (i = 0; i <= ticks; i++) {
      var t = tMin + (tMax - tMin) * i / ticks, d = new Date(t);
      var label = pad(d.getHours()) + ":" + pad(d.getMinutes()) + (tMax - tMin < 600000 ? ":" + pad(d.getSeconds()) : "");
      ctx.fillText(label, Math.min(Math.max(x(t), left + 20), w - right - 20), top + ph + 5);
    }
    //  Lines; a null value breaks the line
    series.forEach(function (s) {
      ctx.strokeStyle = s.color;
      ctx.fillStyle = s.color;
      ctx.lineWidth = 1.8;
      ctx.setLineDash(s.dash ? [5, 4] : []);
      ctx.beginPath();
      var drawing = false, lone = [];
      s.points.forEach(function (p, k) {
        if (p[1] === null || !isFinite(p[1])) { drawing = false; return; }
        var px = x(p[0]), py = y(p[1]);
        if (drawing) ctx.lineTo(px, py);
        else {
          ctx.moveTo(px, py);
          var next = s.points[k + 1];
          if (!next || next[1] === null || !isFinite(next[1])) lone.push([px, py]);
        }
        drawing = true;
      });
      ctx.stroke();
      ctx.setLineDash([]);
      lone.forEach(function (p) { ctx.beginPath(); ctx.arc(p[0], p[1], 2.2, 0, 2 * Math.PI); ctx.fill(); });
    });
    renderLegend(legendId, series);
  }

  function renderLegend(id, series) {
    var box = $(id);
    clear(box);
    series.forEach(function (s) {
      var last = null;
      for (var i = s.points.length - 1; i >= 0; i--)
        if (s.points[i][1] !== null && isFinite(s.points[i][1])) { last = s.points[i][1]; break; }
      box.appendChild(el("span", { "data-series": s.name },
        el("span", { "class": "swatch", style: "background:" + s.color + (s.dash ? ";opacity:.55" : "") }),
        s.name, el("span", { "class": "value", "data-value": last === null ? "" : last }, fmtValue(last))));
    });
  }

  function snapshotTypes(history) {
    var seen = {};
    history.forEach(function (snap) { Object.keys((snap && snap.types) || {}).forEach(function (t) { seen[t] = 1; }); });
    return Object.keys(seen).sort();
  }

  function perType(history, type, key) {
    return history.map(function (snap) {
      var t = snap.types && snap.types[type];
      var v = t ? t[key] : null;
      return [num(snap.t), typeof v === "number" && isFinite(v) ? v : null];
    });
  }

  function renderCharts() {
    var history = state.history.filter(function (s) { return s && typeof s.t === "number"; });
    document.body.dataset.historyPoints = history.length;
    var types = snapshotTypes(history);
    var range = history.length ? [history[0].t, history[history.length - 1].t] : null;
    drawChart($("chart-throughput"), types.map(function (t) {
      return { name: t, color: colorOf(t), points: perType(history, t, "throughput") };
    }), "legend-throughput", range);
    var q = $("latency-quantile").value;
    drawChart($("chart-latency"), types.map(function (t) {
      return { name: t + " " + q, color: colorOf(t), points: perType(history, t, q) };
    }), "legend-latency", range);
    var queue = [];
    types.forEach(function (t) {
      queue.push({ name: t + " waiting", color: colorOf(t), points: perType(history, t, "waiting") });
      queue.push({ name: t + " running", color: colorOf(t), dash: true, points: perType(history, t, "running") });
    });
    drawChart($("chart-queue"), queue, "legend-queue", range);
    //  The broker writes webhook outcomes as running totals (continued
    //  across restarts and failovers): chart the increase per snapshot (a
    //  drop means the totals were lost: no snapshot to continue from).
    var hook = function (key) {
      var previous = null;
      return history.map(function (snap) {
        var v = snap.webhook ? snap.webhook[key] : null;
        if (typeof v !== "number") { previous = null; return [snap.t, null]; }
        var delta = previous === null ? null : (v >= previous ? v - previous : v);
        previous = v;
        return [snap.t, delta];
      });
    };
    var failedPoints = hook("failed");
    drawChart($("chart-webhook"), [
      { name: "delivered", color: "#1d8a4f", points: hook("delivered") },
      { name: "failed", color: "#c53030", points: failedPoints }
    ], "legend-webhook", range);
    renderWebhookAlert(failedPoints);
  }

  //  Webhook deliveries that failed (after all their retries) within the
  //  last WEBHOOK_ALERT_MS of history: a badge on the header and on the
  //  chart, not only a spike in it.
  function renderWebhookAlert(failedPoints) {
    var badges = [$("webhook-alert"), $("webhook-chart-alert")];
    if (state.historyError && state.historyCode !== "history_unavailable") {
      //  No history to count from right now (the gateway cannot read it:
      //  Redis away): the count is unknown, which is not 0.  A gateway that
      //  keeps no history at all (history_unavailable) shows no badge.
      badges.forEach(function (badge) {
        badge.hidden = false;
        badge.textContent = "failed webhook deliveries: unknown (no history)";
        badge.dataset.failed = "unknown";
        badge.title = "the gateway cannot read the history (" + state.historyError +
                      "): deliveries that failed in the last " + Math.round(WEBHOOK_ALERT_MS / 60000) +
                      " min cannot be counted; GET /jobs?webhook=failed lists those the broker holds";
      });
      $("chart-webhook").parentNode.classList.remove("alerting");
      return;
    }
    var last = failedPoints.length ? failedPoints[failedPoints.length - 1][0] : 0;
    var failed = 0;
    failedPoints.forEach(function (p) {
      if (p[0] > last - WEBHOOK_ALERT_MS && typeof p[1] === "number") failed += p[1];
    });
    var minutes = Math.round(WEBHOOK_ALERT_MS / 60000);
    var text = failed + " webhook deliver" + (failed === 1 ? "y" : "ies") + " failed in the last " + minutes + " min";
    badges.forEach(function (badge) {
      badge.hidden = failed === 0;
      badge.textContent = failed ? text : "";
      badge.dataset.failed = String(failed);
      badge.title = failed ? "deliveries that gave up after every retry: a job's detail shows its webhook's lastError" : "";
    });
    $("chart-webhook").parentNode.classList.toggle("alerting", failed > 0);
  }

  // ------------------------------------------------------------------
  // Polling

  function showError(err) {
    var banner = $("error");
    if (!err) { banner.hidden = true; banner.textContent = ""; return; }
    banner.hidden = false;
    banner.textContent = err.message || String(err);
  }

  function refreshJobs() {
    return api("GET", jobsQuery()).then(function (body) {
      state.jobs = Array.isArray(body.jobs) ? body.jobs : [];
      renderJobs();
      state.counts.jobs++;
      document.body.dataset.jobsUpdates = state.counts.jobs;
    });
  }

  function refreshHistory() {
    state.historyAt = Date.now();
    return api("GET", "/api/history?limit=" + HISTORY_LIMIT).then(function (body) {
      state.history = Array.isArray(body.snapshots) ? body.snapshots : [];
      state.historyError = "";
      state.historyCode = "";
      renderCharts();
    }, function (err) {
      //  Charts are optional: a gateway without history still shows the rest
      if (err.status === 404 || err.status === 503) {
        state.history = [];
        state.historyError = (err.code || "") + (err.message ? ": " + err.message : "");
        state.historyCode = err.code || "";
        renderCharts();
        return;
      }
      throw err;
    });
  }

  function refresh() {
    if (state.busy || state.authNeeded) return Promise.resolve();
    state.busy = true;
    clearTimeout(state.timer);
    var work = [
      api("GET", "/stats").then(function (stats) {
        state.stats = stats;
        renderStats(stats);
        state.counts.stats++;
        document.body.dataset.statsUpdates = state.counts.stats;
      }),
      refreshJobs(),
      refreshSchedules()
    ];
    if (Date.now() - state.historyAt >= HISTORY_MS) work.push(refreshHistory());
    if (state.selected) work.push(loadDetail());
    return Promise.all(work).then(function () {
      showError(null);
      connPill("ok", "");
      $("updated").textContent = "updated " + fmtTime(Date.now());
    }, function (err) {
      if (err.status === 401) return;
      showError(err);
      connPill("error", err.status === 0 ? "unreachable" : "error");
    }).then(function () {
      state.busy = false;
      schedule();
      if (state.eventPending) { state.eventPending = false; eventRefresh(); }
    });
  }

  function poll() {
    state.counts.polls++;
    document.body.dataset.polls = state.counts.polls;
    refresh();
  }

  function schedule() {
    clearTimeout(state.timer);
    if ($("live").checked && !state.authNeeded && !document.hidden)
      state.timer = setTimeout(poll, POLL_MS);
  }

  // ------------------------------------------------------------------
  // Live events: GET /events

  function streamPill(s, text, title) {
    var pill = $("stream");
    pill.dataset.state = s;
    pill.textContent = text;
    pill.title = title;
  }

  function stopStream() {
    if (state.stream) state.stream.abort();
    state.stream = null;
    clearTimeout(state.streamRetry);
    state.streamRetry = null;
    if (state.streamLive) { state.streamLive = false; schedule(); }
  }

  //  GET /events read with fetch(), not EventSource: EventSource cannot send
  //  the X-API-Key header, and the gateway takes the key only as a header (a
  //  key in the query string would end in logs).  The body is read as it
  //  comes and parsed as Server-Sent Events: "event:" and "data:" lines, a
  //  blank line dispatches, comment lines (": keep-alive") are skipped.
  function startStream() {
    stopStream();
    if (!$("live").checked) {
      streamPill("off", "paused", "live updates are off");
      return;
    }
    if (document.hidden) {
      streamPill("off", "paused", "the page is hidden: no stream, no polls until it is shown");
      return;
    }
    if (typeof window.AbortController !== "function" || typeof window.TextDecoder !== "function" ||
        typeof window.ReadableStream !== "function") {
      streamPill("polling", "polling", "this browser cannot read a stream with fetch: the page polls every " +
                 POLL_MS / 1000 + " s");
      return;
    }
    openStream(STREAM_BACKOFF_MS);
  }

  function openStream(backoff) {
    var ctl = new AbortController();
    state.stream = ctl;
    streamPill("connecting", state.streamRetry === null ? "connecting" : "reconnecting", "opening GET /events");
    state.streamRetry = null;
    var headers = { "Accept": "text/event-stream" };
    var key = getKey() || memoryKey;
    if (key) headers["X-API-Key"] = key;

    function mine() { return state.stream === ctl; }

    function dropped(why) {       // as EventSource: try again, after a growing pause
      if (!mine()) return;
      ctl.abort();
      if (state.streamLive) { state.streamLive = false; schedule(); }
      streamPill("connecting", "reconnecting", why + "; the page polls every " + POLL_MS / 1000 +
                 " s and tries again in " + backoff / 1000 + " s");
      state.streamRetry = setTimeout(function () {
        if (mine()) openStream(Math.min(backoff * 2, STREAM_RETRY_MS));
      }, backoff);
    }

    function dispatch(name) {
      if (name === "end") { streamFailed("the gateway is stopping"); return; }
      if (EVENT_NAMES.indexOf(name) < 0) return;
      state.counts.events++;
      document.body.dataset.events = state.counts.events;
      eventRefresh();
    }

    fetch("/events", { headers: headers, cache: "no-store", signal: ctl.signal }).then(function (res) {
      if (!mine()) { ctl.abort(); return; }
      var type = res.headers.get("Content-Type") || "";
      if (!res.ok || type.indexOf("text/event-stream") !== 0 || !res.body) {
        ctl.abort();
        streamFailed("the gateway refused GET /events (HTTP " + res.status +
                     (res.status === 401 ? ", API key needed" : "") + ")");
        return;
      }
      state.streamLive = true;
      backoff = STREAM_BACKOFF_MS;
      streamPill("live", "live", "job events arrive on GET /events; polls every " +
                 POLL_MS / 1000 + " s as well");
      schedule();
      eventRefresh();       // what happened before the stream opened
      var reader = res.body.getReader(), decoder = new TextDecoder(), buf = "", name = "", data = false;
      function read() {
        return reader.read().then(function (chunk) {
          if (!mine()) return;
          if (chunk.done) { dropped("GET /events ended"); return; }
          buf += decoder.decode(chunk.value, { stream: true });
          var lines = buf.split(/\r\n|\r|\n/);
          buf = lines.pop();                      // an unfinished line waits for the rest
          for (var i = 0; i < lines.length && mine(); i++) {
            var line = lines[i];
            if (line === "") {
              if (data) dispatch(name || "message");
              name = "";
              data = false;
              continue;
            }
            var colon = line.indexOf(":");
            var field = colon < 0 ? line : line.slice(0, colon);
            var value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
            if (field === "event") name = value;
            else if (field === "data") data = true;   // the page refreshes; the JSON is not needed
            //  "id:" (nothing is replayed), "retry:", comments: nothing to do
          }
          return read();
        });
      }
      return read();
    }).catch(function (e) {
      if (mine()) dropped("GET /events dropped (" + (e && e.message || e) + ")");
    });
  }

  function streamFailed(why) {
    stopStream();
    streamPill("polling", "polling", why + ": the page polls every " + POLL_MS / 1000 +
               " s and tries the stream again in " + STREAM_RETRY_MS / 1000 + " s");
    state.streamRetry = setTimeout(startStream, STREAM_RETRY_MS);
  }

  function eventRefresh() {
    if (state.eventTimer || document.hidden) return;     // shown again: visibilitychange refreshes
    var wait = Math.max(0, state.eventAt + EVENT_DEBOUNCE_MS - Date.now());
    state.eventTimer = setTimeout(function () {
      state.eventTimer = null;
      if (state.busy) { state.eventPending = true; return; }
      state.eventAt = Date.now();
      state.counts.eventRefreshes++;
      document.body.dataset.eventRefreshes = state.counts.eventRefreshes;
      refresh();
    }, wait);
  }

  // ------------------------------------------------------------------
  // Wiring

  //  A refresh re-renders the tables (each job event asks for one): when it
  //  replaces the button or job row between a press and its release, the
  //  browser sends no click to it (none, or one to the page root).  The
  //  release then clicks what took the pressed element's place, under the
  //  pointer (the same button id, the same job's row).
  var CLICKABLE = "button[id], tr[data-job-id]";

  function clickKey(node) {
    var t = node && node.closest ? node.closest(CLICKABLE) : null;
    return t ? (t.id ? "#" + t.id : "job:" + t.dataset.jobId) : "";
  }

  function keepClicksAcrossRenders() {
    var pressed = null;
    document.addEventListener("mousedown", function (ev) {
      pressed = ev.button === 0 ? { node: ev.target, key: clickKey(ev.target) } : null;
    }, true);
    document.addEventListener("mouseup", function (ev) {
      var p = pressed;
      pressed = null;
      if (!p || !p.key || p.node.isConnected || ev.button !== 0) return;
      //  the release's own target may be stale (the page root): ask the layout
      var under = document.elementFromPoint(ev.clientX, ev.clientY);
      var t = under && under.closest ? under.closest(CLICKABLE) : null;
      if (t && clickKey(t) === p.key && !t.disabled) t.click();
    }, true);
  }

  function init() {
    keepClicksAcrossRenders();
    $("auth").addEventListener("submit", saveKey);
    $("auth-cancel").addEventListener("click", function () { $("auth").hidden = true; });
    $("key-button").addEventListener("click", function () {
      $("auth").hidden = false;
      $("auth-message").textContent = getKey() ? "A key is set; save an empty one to forget it." : "";
      $("auth-key").focus();
    });
    $("live").addEventListener("change", function () {
      startStream();
      if ($("live").checked) refresh(); else clearTimeout(state.timer);
    });
    ["filter-state", "filter-type", "filter-limit"].forEach(function (id) {
      $(id).addEventListener("change", function () { refreshJobs().catch(showError); });
    });
    $("search-id").addEventListener("input", renderJobs);
    $("search").addEventListener("submit", function (ev) { ev.preventDefault(); openJob($("search-id").value); });
    $("detail-close").addEventListener("click", closeJob);
    ACTIONS.forEach(function (a) {
      $("action-" + a).addEventListener("click", function () { runAction(a); });
    });
    $("latency-quantile").addEventListener("change", renderCharts);
    window.addEventListener("hashchange", fromHash);
    window.addEventListener("resize", renderCharts);
    document.addEventListener("visibilitychange", function () {
      startStream();        // hidden: the stream is closed; shown: opened again
      if (!document.hidden) refresh();
    });
    renderCharts();
    fromHash();
    startStream();
    refresh();
  }

  //  For tests and the console
  window.botmesh = { state: state, refresh: refresh, openJob: openJob, removeSchedule: removeSchedule };

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
