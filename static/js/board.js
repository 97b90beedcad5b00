/* The supervisors' board: columns of order cards kept live over /ws/board/.
   The page arrives with the first page of every column; this script pages further on scroll,
   moves cards by drag and drop (the server's state machine and the user's role decide; a
   refused move snaps back with the reason), opens an order's timeline in a drawer, and shows
   red-flag alerts as toasts. The socket only names ids; cards are re-read through the
   visibility-checked API, and after a reconnect everything shown is read again, because
   messages can be lost while the socket is down or past the channel layer's capacity. */
(function () {
  "use strict";

  var root = document.getElementById("board");
  if (!root) return;

  var API = root.dataset.api;
  var CSRF = root.dataset.csrf;
  var ORDER_PAGE = root.dataset.orderPage;
  var PAGE_SIZE = Number(root.dataset.pageSize) || 50;
  var MAX_DEPTH = 500; // a reconnect re-reads a column this deep at most (the API's limit)
  var seesAlerts = root.dataset.alerts === "1";
  var labels = JSON.parse(document.getElementById("b-labels").textContent);
  var initial = JSON.parse(document.getElementById("b-initial").textContent);
  var strings = document.getElementById("b-strings").dataset;

  var STUCK_MS = 2 * 60 * 60 * 1000; // red after two hours in one stage (seed 001)
  var SAFETY_REFRESH_MS = 60 * 1000; // re-read what is shown, in case a push was lost
  var REFRESH_DELAY_MS = 60; // ids arriving together are read together
  var TOAST_MS = 20 * 1000;

  var filters = initial.filters || {};

  function fill(text, values) {
    return String(text).replace(/\{(\w+)\}/g, function (whole, key) {
      return Object.prototype.hasOwnProperty.call(values, key) ? String(values[key]) : whole;
    });
  }

  function stageLabel(code) {
    return labels.stage[code] || code;
  }

  // --- Messages ------------------------------------------------------------------------------
  var messageBox = document.getElementById("b-message");
  var messageTimer = null;

  function say(text, kind) {
    messageBox.querySelector(".b-message-text").textContent = text;
    messageBox.className = "b-message " + (kind === "ok" ? "b-ok" : "b-error");
    messageBox.hidden = false;
    clearTimeout(messageTimer);
    // Confirmations fade; refusals stay until dismissed or replaced.
    if (kind === "ok") messageTimer = setTimeout(function () { messageBox.hidden = true; }, 5000);
  }

  messageBox.querySelector(".b-dismiss").addEventListener("click", function () {
    messageBox.hidden = true;
  });

  // --- The API -------------------------------------------------------------------------------
  // Server time minus this device's, so countdowns match the server's due times. The Date
  // header has whole seconds: only a real skew counts.
  var clockOffset = 0;

  function noteServerTime(serverMs) {
    if (isNaN(serverMs)) return;
    var offset = serverMs - Date.now();
    clockOffset = Math.abs(offset) > 2000 ? offset : 0;
  }

  function serverNow() {
    return Date.now() + clockOffset;
  }

  function errorText(status, data) {
    if (data && typeof data.detail === "string") return data.detail;
    return fill(strings.failed, { code: status });
  }

  function api(method, path, body) {
    var options = { method: method, credentials: "same-origin", headers: { Accept: "application/json" } };
    if (method !== "GET") {
      options.headers["Content-Type"] = "application/json";
      options.headers["X-CSRFToken"] = CSRF;
      options.body = JSON.stringify(body || {});
    }
    return fetch(API + path, options).then(
      function (response) {
        noteServerTime(Date.parse(response.headers.get("Date") || ""));
        return response
          .json()
          .catch(function () { return null; })
          .then(function (data) {
            if (response.ok) return data;
            var error = new Error(response.status === 401 ? strings.session : errorText(response.status, data));
            error.status = response.status;
            error.code = data && data.code;
            throw error;
          });
      },
      function () {
        var error = new Error(strings.network);
        error.status = 0;
        throw error;
      }
    );
  }

  function query(extra) {
    var params = new URLSearchParams();
    Object.keys(filters).forEach(function (key) {
      if (filters[key]) params.set(key, filters[key]);
    });
    Object.keys(extra || {}).forEach(function (key) {
      if (extra[key] !== null && extra[key] !== undefined && extra[key] !== "") params.set(key, extra[key]);
    });
    var text = params.toString();
    return text ? "?" + text : "";
  }

  // --- Columns and cards ---------------------------------------------------------------------
  var columns = {}; // stage → {list, more, empty, count, next, loading}
  var elements = {}; // order id → its card element

  Array.prototype.forEach.call(root.querySelectorAll(".b-col"), function (section) {
    var stage = section.dataset.stage;
    columns[stage] = {
      stage: stage,
      section: section,
      scroll: section.querySelector(".b-scroll"),
      list: section.querySelector(".b-cards"),
      more: section.querySelector(".b-more"),
      empty: section.querySelector(".b-empty"),
      count: section.querySelector(".b-count"),
      next: null,
      loading: false,
    };
  });

  // Open columns: most urgent due time first, none last; done: latest first.
  function before(stage, a, b) {
    if (stage === "done") {
      var ea = Date.parse(a.stage_entered_at), eb = Date.parse(b.stage_entered_at);
      return ea !== eb ? ea > eb : a.id > b.id;
    }
    var da = a.due_at ? Date.parse(a.due_at) : Infinity;
    var db = b.due_at ? Date.parse(b.due_at) : Infinity;
    return da !== db ? da < db : a.id < b.id;
  }

  function money(card) {
    var n = Number(card.amount);
    var text = isNaN(n) ? card.amount : n.toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
    return (card.currency === "CNY" ? "¥" : card.currency + " ") + text;
  }

  function flagClass(code) {
    return code === "risk" || code === "delivery_at_risk" || code.indexOf("rule:") === 0 ? "b-flag b-flag-risk" : "b-flag";
  }

  function makeCard() {
    var li = document.getElementById("t-card").content.firstElementChild.cloneNode(true);
    li.addEventListener("click", function () {
      if (!li.classList.contains("b-moving")) openDrawer(Number(li.dataset.id));
    });
    li.addEventListener("keydown", function (event) {
      if (event.key === "Enter") openDrawer(Number(li.dataset.id));
    });
    return li;
  }

  function renderCard(li, card) {
    li._card = card;
    li.dataset.id = card.id;
    li.dataset.stage = card.stage;
    li.dataset.due = card.due_at ? Date.parse(card.due_at) : "";
    li.dataset.entered = Date.parse(card.stage_entered_at);
    li.querySelector(".b-tag").textContent = card.tag;
    li.querySelector(".b-vip").hidden = !card.vip;
    li.querySelector(".b-expedited").hidden = card.urgency !== "expedited";
    li.querySelector(".b-customer").textContent = card.customer || strings.none;
    li.querySelector(".b-amount").textContent = money(card);
    var owner = li.querySelector(".b-owner");
    owner.textContent = card.owner || strings.unassigned;
    owner.classList.toggle("muted", !card.owner);
    li.querySelector(".b-channel").textContent = card.channel_name;
    var exception = li.querySelector(".b-exception");
    exception.hidden = !card.exception || !card.exception.type;
    if (card.exception) {
      li.querySelector(".b-exc-type").textContent = card.exception.type || "";
      li.querySelector(".b-exc-owner").textContent = card.exception.owner || card.exception.team || strings.unassigned;
    }
    var flags = li.querySelector(".b-flags");
    flags.textContent = "";
    (card.flags || []).forEach(function (code) {
      var badge = document.createElement("span");
      badge.className = flagClass(code);
      badge.title = code;
      badge.textContent = labels.flag[code] || code;
      flags.appendChild(badge);
    });
    li.classList.toggle("b-flagged", (card.flags || []).length > 0);
    tickCard(li, serverNow());
  }

  function removeCard(id) {
    var li = elements[id];
    if (!li) return;
    delete elements[id];
    li.remove();
  }

  // Put a card where it sorts in its column; a card that sorts past the loaded part of a
  // column that has more pages is left for scrolling to bring.
  function placeCard(card) {
    var column = columns[card.stage];
    var li = elements[card.id];
    if (!column) {
      removeCard(card.id);
      return;
    }
    if (li && li.classList.contains("b-moving")) return; // the move's own answer settles it
    var children = column.list.children;
    var anchor = null;
    for (var i = 0; i < children.length; i++) {
      var other = children[i];
      if (other !== li && other._card && before(card.stage, card, other._card)) {
        anchor = other;
        break;
      }
    }
    if (!anchor && column.next) {
      removeCard(card.id);
      return;
    }
    if (!li) {
      li = makeCard();
      elements[card.id] = li;
    }
    renderCard(li, card);
    if (li.parentNode !== column.list || li.nextSibling !== anchor) column.list.insertBefore(li, anchor);
  }

  // Replace a column's cards with a fresh read, reusing elements by id (focus survives).
  function fillColumn(stage, cards, next) {
    var column = columns[stage];
    var keep = {};
    cards.forEach(function (card) { keep[card.id] = true; });
    Array.prototype.slice.call(column.list.children).forEach(function (li) {
      if (!keep[li.dataset.id] && !li.classList.contains("b-moving")) removeCard(Number(li.dataset.id));
    });
    cards.forEach(function (card) {
      var li = elements[card.id];
      if (li && li.parentNode !== column.list && li.classList.contains("b-moving")) return;
      if (!li) {
        li = makeCard();
        elements[card.id] = li;
      }
      renderCard(li, card);
      column.list.appendChild(li);
    });
    column.next = next;
    columnState(column);
  }

  function appendColumn(stage, cards, next) {
    var column = columns[stage];
    cards.forEach(function (card) {
      if (elements[card.id]) return;
      var li = makeCard();
      elements[card.id] = li;
      renderCard(li, card);
      column.list.appendChild(li);
    });
    column.next = next;
    columnState(column);
  }

  function columnState(column) {
    column.empty.hidden = column.list.children.length > 0 || Boolean(column.next);
    column.more.hidden = !column.next;
  }

  function setCounts(counts) {
    var total = 0;
    Object.keys(columns).forEach(function (stage) {
      var n = counts[stage] || 0;
      if (stage !== "done") total += n;
      columns[stage].count.textContent = n;
    });
    document.getElementById("b-total").textContent = fill(strings.total, { n: total });
    Object.keys(columns).forEach(function (stage) { columnState(columns[stage]); });
  }

  // --- Reading ---------------------------------------------------------------------------------
  var reloading = null;
  var reloadAgain = false;

  // Every column again, as deep as it was scrolled, and the counts.
  function reloadAll() {
    if (reloading) {
      reloadAgain = true;
      return reloading;
    }
    var depths = {};
    var deep = false;
    Object.keys(columns).forEach(function (stage) {
      var n = Math.min(MAX_DEPTH, Math.max(PAGE_SIZE, columns[stage].list.children.length));
      depths[stage] = n;
      if (n > PAGE_SIZE) deep = true;
    });
    var read;
    if (!deep) {
      read = api("GET", "board/" + query()).then(function (data) {
        Object.keys(data.columns).forEach(function (stage) {
          if (columns[stage]) fillColumn(stage, data.columns[stage].cards, data.columns[stage].next);
        });
        setCounts(data.counts);
      });
    } else {
      read = Promise.all(
        Object.keys(columns).map(function (stage) {
          return api("GET", "board/" + query({ stage: stage, limit: depths[stage] }));
        })
      ).then(function (answers) {
        answers.forEach(function (data) { fillColumn(data.stage, data.cards, data.next); });
        setCounts(answers[answers.length - 1].counts);
      });
    }
    reloading = read
      .catch(function (error) { say(error.message); })
      .then(function () {
        reloading = null;
        if (reloadAgain) {
          reloadAgain = false;
          reloadAll();
        }
      });
    return reloading;
  }

  function loadMore(column) {
    if (!column.next || column.loading) return;
    column.loading = true;
    api("GET", "board/" + query({ stage: column.stage, cursor: column.next }))
      .then(function (data) {
        appendColumn(column.stage, data.cards, data.next);
        setCounts(data.counts);
      })
      .catch(function (error) { say(error.message); })
      .then(function () {
        column.loading = false;
        // Still in view (a short page, a tall screen): keep going.
        if (column.next && isVisible(column)) loadMore(column);
      });
  }

  function isVisible(column) {
    var box = column.scroll.getBoundingClientRect();
    var more = column.more.getBoundingClientRect();
    return !column.more.hidden && more.top < box.bottom + 200;
  }

  if ("IntersectionObserver" in window) {
    Object.keys(columns).forEach(function (stage) {
      var column = columns[stage];
      new IntersectionObserver(
        function (entries) {
          if (entries.some(function (e) { return e.isIntersecting; })) loadMore(column);
        },
        { root: column.scroll, rootMargin: "200px" }
      ).observe(column.more);
    });
  } else {
    Object.keys(columns).forEach(function (stage) {
      var column = columns[stage];
      column.scroll.addEventListener("scroll", function () {
        if (isVisible(column)) loadMore(column);
      });
    });
  }

  // Live updates name ids; they are read together, a moment later.
  var pendingIds = {};
  var refreshTimer = null;

  function refreshIds(ids) {
    ids.forEach(function (id) { pendingIds[id] = true; });
    if (!refreshTimer) refreshTimer = setTimeout(flushRefresh, REFRESH_DELAY_MS);
  }

  function flushRefresh() {
    refreshTimer = null;
    var ids = Object.keys(pendingIds).map(Number);
    pendingIds = {};
    var reads = [];
    for (var start = 0; start < ids.length; start += 500) {
      reads.push(readCards(ids.slice(start, start + 500)));
    }
    if (!ids.length) reads.push(api("GET", "board/counts/" + query()).then(function (data) {
      setCounts(data.counts);
      if (data.open_alerts !== null && data.open_alerts !== undefined) setAlertCount(data.open_alerts);
    }));
    return Promise.all(reads).catch(function (error) { say(error.message); });
  }

  function readCards(ids) {
    return api("GET", "board/cards/" + query({ ids: ids.join(",") })).then(function (data) {
      var found = {};
      data.cards.forEach(function (card) {
        found[card.id] = true;
        placeCard(card);
      });
      ids.forEach(function (id) {
        if (!found[id] && elements[id] && !elements[id].classList.contains("b-moving")) removeCard(id);
      });
      setCounts(data.counts);
      if (drawerId && ids.indexOf(drawerId) >= 0) loadDrawer(drawerId);
    });
  }

  function shownIds() {
    return Object.keys(elements).map(Number);
  }

  // --- The countdown -------------------------------------------------------------------------
  function pad(n) {
    return (n < 10 ? "0" : "") + n;
  }

  function duration(ms) {
    var seconds = Math.floor(Math.abs(ms) / 1000);
    var days = Math.floor(seconds / 86400);
    seconds -= days * 86400;
    var text = pad(Math.floor(seconds / 3600)) + ":" + pad(Math.floor((seconds % 3600) / 60)) + ":" + pad(seconds % 60);
    return days ? fill(strings.days, { n: days }) + " " + text : text;
  }

  function tickCard(li, now) {
    var clock = li.querySelector(".b-clock");
    var entered = Number(li.dataset.entered);
    if (li.dataset.stage === "done") {
      clock.textContent = fill(strings.doneAt, {
        time: new Date(entered).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }),
      });
      li.classList.remove("b-late");
      clock.classList.remove("b-clock-late");
      return;
    }
    var stuck = now - entered > STUCK_MS;
    var due = li.dataset.due ? Number(li.dataset.due) : NaN;
    var overdue = !isNaN(due) && due < now;
    if (isNaN(due)) clock.textContent = fill(strings.inStage, { time: duration(now - entered) });
    else clock.textContent = fill(overdue ? strings.overdue : strings.left, { time: duration(due - now) });
    clock.classList.toggle("b-clock-late", overdue);
    li.classList.toggle("b-late", overdue || stuck);
    li.title = stuck && !overdue ? strings.stuck : "";
  }

  function tick() {
    var now = serverNow();
    Array.prototype.forEach.call(root.querySelectorAll(".b-card"), function (li) { tickCard(li, now); });
  }

  // --- Moving cards ----------------------------------------------------------------------------
  function refusal(error, card, from, to) {
    var values = { tag: card.tag, from: stageLabel(from), to: stageLabel(to) };
    if (error.code === "illegal_transition") {
      if (from === "exception" && card.held_stage && to !== "cancelled" && to !== card.held_stage) {
        return fill(strings.held, { tag: card.tag, held: stageLabel(card.held_stage), to: stageLabel(to) });
      }
      var allowed = labels.transitions[from] || [];
      if (!allowed.length) return fill(strings.final, values);
      values.allowed = allowed.map(stageLabel).join(strings.separator);
      return fill(strings.illegal, values);
    }
    if (error.code === "role_forbidden") return fill(strings.forbidden, values);
    if (error.status === 404) return fill(strings.gone, values);
    return error.message;
  }

  function move(event) {
    var li = event.item;
    var card = li._card;
    var from = event.from.dataset.stage;
    var to = event.to.dataset.stage;
    li.classList.add("b-moving");
    columnState(columns[from]);
    columnState(columns[to]);
    api("POST", "orders/" + card.id + "/transition/", { to: to, reason: "" })
      .then(function () {
        li.classList.remove("b-moving");
        say(fill(strings.moved, { tag: card.tag, stage: stageLabel(to) }), "ok");
      })
      .catch(function (error) {
        // Snap back to where it was, and say why in the page's language.
        var home = columns[from].list;
        home.insertBefore(li, home.children[event.oldIndex] || null);
        li.classList.remove("b-moving");
        li.classList.add("b-refused");
        setTimeout(function () { li.classList.remove("b-refused"); }, 1500);
        columnState(columns[from]);
        columnState(columns[to]);
        say(refusal(error, card, from, to));
      })
      .then(function () {
        refreshIds([card.id]);
      });
  }

  if (window.Sortable) {
    Object.keys(columns).forEach(function (stage) {
      window.Sortable.create(columns[stage].list, {
        group: "board",
        sort: false, // a column's order is its due times, not a hand ordering
        draggable: ".b-card",
        filter: ".b-moving",
        animation: 120,
        // Pointer events instead of the browser's native drag: the same on touch screens.
        forceFallback: true,
        fallbackTolerance: 4,
        ghostClass: "b-ghost",
        chosenClass: "b-chosen",
        dragClass: "b-dragging",
        onEnd: function (event) {
          if (event.from !== event.to) move(event);
        },
      });
    });
  }

  // --- The drawer ------------------------------------------------------------------------------
  var drawer = document.getElementById("b-drawer");
  var drawerId = null;

  function setText(selector, value) {
    drawer.querySelector(selector).textContent = value === null || value === undefined || value === "" ? strings.none : value;
  }

  function when(iso) {
    return iso ? new Date(iso).toLocaleString() : strings.none;
  }

  function openDrawer(id) {
    drawerId = id;
    drawer.hidden = false;
    drawer.querySelector(".b-drawer-loading").hidden = false;
    drawer.querySelector(".b-drawer-content").hidden = true;
    var li = elements[id];
    drawer.querySelector("#b-drawer-title").textContent = li ? li._card.tag : "";
    loadDrawer(id);
  }

  function loadDrawer(id) {
    api("GET", "orders/" + id + "/timeline/")
      .then(function (data) {
        if (drawerId !== id) return;
        var o = data.order;
        drawer.querySelector("#b-drawer-title").textContent = o.tag;
        var stage = drawer.querySelector(".b-drawer-stage");
        stage.textContent = "";
        var badge = document.createElement("span");
        badge.className = "stage stage-" + o.stage;
        badge.textContent = o.stage_label;
        stage.appendChild(badge);
        stage.appendChild(document.createTextNode(" " + o.channel_name + " · " + o.kind_label + " · " + o.urgency_label));
        setText(".b-d-customer", (o.customer || "") + (o.vip ? " · VIP" : ""));
        setText(".b-d-phone", [o.phone, o.phone_city].filter(Boolean).join(" "));
        setText(".b-d-address", o.address);
        setText(".b-d-amount", money(o));
        setText(".b-d-items", (o.items || []).map(function (i) { return i.name + " × " + i.qty; }).join("; "));
        setText(".b-d-note", o.note);
        setText(".b-d-channel", o.channel_name);
        setText(".b-d-owner", o.owner || strings.unassigned);
        setText(".b-d-due", o.due_at ? when(o.due_at) : "");
        setText(".b-d-entered", when(o.stage_entered_at));
        setText(".b-d-exception", o.exception ? [o.exception.type, o.exception.owner || o.exception.team, o.exception.note].filter(Boolean).join(" · ") : "");
        setText(".b-d-flags", o.flags.map(function (f) { return f.label; }).join(strings.separator));
        setText(".b-d-risk", o.risk_score ? String(o.risk_score) : "");
        drawer.querySelector(".b-d-due").classList.toggle("error", o.late);
        drawer.querySelector(".b-d-link").href = ORDER_PAGE + o.id + "/";
        var list = drawer.querySelector(".b-timeline");
        list.textContent = "";
        data.events.forEach(function (e) {
          var item = document.createElement("li");
          var time = document.createElement("time");
          time.dateTime = e.at;
          time.textContent = when(e.at);
          var kind = document.createElement("b");
          kind.textContent = " " + e.kind_label + " ";
          item.appendChild(time);
          item.appendChild(kind);
          item.appendChild(document.createTextNode(e.actor));
          if (e.from_stage || e.to_stage) {
            var stages = document.createElement("span");
            stages.className = "muted";
            stages.textContent = " " + (e.from_label || "") + " → " + (e.to_label || "");
            item.appendChild(stages);
          }
          if (e.reason) {
            var reason = document.createElement("div");
            reason.textContent = e.reason;
            item.appendChild(reason);
          }
          list.appendChild(item);
        });
        drawer.querySelector(".b-drawer-loading").hidden = true;
        drawer.querySelector(".b-drawer-content").hidden = false;
      })
      .catch(function (error) {
        if (drawerId !== id) return;
        closeDrawer();
        say(error.status === 404 ? fill(strings.gone, { tag: elements[id] ? elements[id]._card.tag : "#" + id }) : error.message);
      });
  }

  function closeDrawer() {
    drawerId = null;
    drawer.hidden = true;
  }

  drawer.querySelector(".b-close").addEventListener("click", closeDrawer);
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape") closeDrawer();
  });

  // --- Alerts ------------------------------------------------------------------------------------
  var alertPanel = document.getElementById("b-alerts");
  var alertButton = document.getElementById("b-alerts-toggle");
  var toasts = document.getElementById("b-toasts");
  var toasted = {};

  function setAlertCount(n) {
    var badge = document.getElementById("b-alert-count");
    if (!badge) return;
    badge.textContent = n;
    badge.classList.toggle("b-zero", !n);
  }

  function makeAlert(alert, asToast) {
    var li = document.getElementById("t-alert").content.firstElementChild.cloneNode(true);
    li.dataset.id = alert.id;
    li.classList.add("b-level-" + Math.min(3, Math.max(1, alert.level)));
    li.querySelector(".b-alert-kind").textContent = alert.kind_label + " · " + fill(strings.level, { n: alert.level });
    var time = li.querySelector(".b-alert-time");
    time.dateTime = alert.created_at;
    time.textContent = new Date(alert.created_at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    li.querySelector(".b-alert-message").textContent = alert.message;
    var link = li.querySelector(".b-alert-order");
    if (alert.order) {
      link.textContent = fill(strings.openOrder, { tag: alert.order.tag });
      link.href = ORDER_PAGE + alert.order.id + "/";
      link.addEventListener("click", function (event) {
        event.preventDefault();
        openDrawer(alert.order.id);
      });
    } else {
      link.remove();
    }
    li.querySelector(".b-ack").addEventListener("click", function (event) {
      event.target.disabled = true;
      acknowledge(alert.id);
    });
    var close = li.querySelector(".b-toast-close");
    if (asToast) {
      close.hidden = false;
      close.addEventListener("click", function () { li.remove(); });
    }
    return li;
  }

  function renderAlerts(results) {
    if (!alertPanel) return;
    var list = alertPanel.querySelector(".b-alert-list");
    list.textContent = "";
    results
      .filter(function (a) { return !a.acknowledged_at; })
      .forEach(function (a) { list.appendChild(makeAlert(a, false)); });
    alertPanel.querySelector(".b-alerts-empty").hidden = list.children.length > 0;
  }

  function loadAlerts() {
    if (!seesAlerts) return Promise.resolve();
    return api("GET", "alerts/?open=1")
      .then(function (data) {
        renderAlerts(data.results);
        setAlertCount(data.open_count);
      })
      .catch(function (error) { say(error.message); });
  }

  function toast(alert) {
    if (toasted[alert.id]) return;
    toasted[alert.id] = true;
    var li = makeAlert(alert, true);
    li.classList.add("b-toast");
    toasts.insertBefore(li, toasts.firstChild);
    // A red flag of the highest level stays until someone deals with it.
    if (alert.level < 3) setTimeout(function () { li.remove(); }, TOAST_MS);
  }

  function alertsRaised(ids) {
    if (!seesAlerts || !ids.length) return;
    api("GET", "alerts/?ids=" + ids.join(","))
      .then(function (data) {
        data.results.forEach(function (a) {
          if (!a.acknowledged_at) toast(a);
        });
        setAlertCount(data.open_count);
        return loadAlerts();
      })
      .catch(function (error) { say(error.message); });
  }

  function dropAlert(id) {
    Array.prototype.forEach.call(root.querySelectorAll('.b-alert[data-id="' + id + '"]'), function (li) { li.remove(); });
    if (alertPanel) alertPanel.querySelector(".b-alerts-empty").hidden = alertPanel.querySelector(".b-alert-list").children.length > 0;
  }

  function acknowledge(id) {
    api("POST", "alerts/" + id + "/ack/")
      .then(function () {
        dropAlert(id);
        say(strings.acknowledged, "ok");
      })
      .catch(function (error) {
        if (error.status === 409) dropAlert(id); // someone else did: it is handled
        say(error.message);
      })
      .then(loadAlerts);
  }

  if (alertButton) {
    alertButton.addEventListener("click", function () {
      alertPanel.hidden = !alertPanel.hidden;
      alertButton.setAttribute("aria-expanded", String(!alertPanel.hidden));
      if (!alertPanel.hidden) loadAlerts();
    });
    alertPanel.querySelector(".b-close").addEventListener("click", function () {
      alertPanel.hidden = true;
      alertButton.setAttribute("aria-expanded", "false");
    });
  }

  // --- Filters ------------------------------------------------------------------------------------
  var form = document.getElementById("b-filters");

  function formFilters() {
    var values = {};
    new FormData(form).forEach(function (value, key) {
      if (String(value).trim()) values[key] = String(value).trim();
    });
    return values;
  }

  function showFilters(values) {
    Array.prototype.forEach.call(form.elements, function (field) {
      if (!field.name) return;
      if (field.type === "checkbox") field.checked = values[field.name] === field.value;
      else field.value = values[field.name] || "";
    });
  }

  function applyFilters(values, push) {
    filters = values;
    if (push) {
      var url = location.pathname + query();
      history.pushState({ filters: values }, "", url);
    }
    // A new filter starts every column from its top.
    Object.keys(columns).forEach(function (stage) {
      Array.prototype.slice.call(columns[stage].list.children).forEach(function (li) {
        removeCard(Number(li.dataset.id));
      });
      columns[stage].next = null;
    });
    messageBox.hidden = true;
    Array.prototype.forEach.call(root.querySelectorAll(".b-filter-errors"), function (e) { e.remove(); });
    return reloadAll();
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    applyFilters(formFilters(), true);
  });
  Array.prototype.forEach.call(form.querySelectorAll("select, input[type=checkbox]"), function (field) {
    field.addEventListener("change", function () { applyFilters(formFilters(), true); });
  });
  document.getElementById("b-clear").addEventListener("click", function (event) {
    event.preventDefault();
    showFilters({});
    applyFilters({}, true);
  });
  window.addEventListener("popstate", function () {
    var values = {};
    new URLSearchParams(location.search).forEach(function (value, key) { values[key] = value; });
    showFilters(values);
    applyFilters(values, false);
  });

  // --- The socket (static/js/live.js keeps it connected) -----------------------------------------
  var banner = document.getElementById("b-reconnecting");
  var live = null;

  function startLive() {
    live = window.PaidanLive.connect(root.dataset.ws, {
      onOpen: function () {
        banner.hidden = true;
        root.classList.add("b-connected");
        // Subscribed first, read second: whatever changed before now (while the page loaded,
        // or while the socket was down) is in this read; what changes after is pushed.
        reloadAll();
        loadAlerts();
      },
      onMessage: function (message) {
        if (message.type === "orders.changed") refreshIds(message.ids || []);
        else if (message.type === "alerts.raised") alertsRaised(message.ids || []);
        else if (message.type === "alerts.acknowledged") {
          (message.ids || []).forEach(dropAlert);
          loadAlerts();
        }
      },
      onLost: function () {
        root.classList.remove("b-connected");
        banner.hidden = false;
      },
      onFatal: function () {
        root.classList.remove("b-connected");
        banner.hidden = false;
      },
    });
  }

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") tick();
  });

  // --- Start ---------------------------------------------------------------------------------------
  noteServerTime(Date.parse(initial.server_time));
  Object.keys(initial.columns).forEach(function (stage) {
    if (columns[stage]) fillColumn(stage, initial.columns[stage].cards, initial.columns[stage].next);
  });
  setCounts(initial.counts);
  setInterval(tick, 1000);
  setInterval(function () {
    if (live && live.isOpen()) refreshIds(shownIds());
  }, SAFETY_REFRESH_MS);
  startLive();
})();
