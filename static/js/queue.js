/* The agent's queue page: offers with a countdown, my orders, my exceptions and my inquiries, kept live
   over /ws/agent/. The socket only says "something changed"; the page then re-reads all of
   it from the API, so a dropped message or a reconnect never leaves the page stale. */
(function () {
  "use strict";

  var root = document.getElementById("queue");
  if (!root) return;

  var API = root.dataset.api;
  var CSRF = root.dataset.csrf;
  var labels = JSON.parse(document.getElementById("q-labels").textContent);
  var strings = document.getElementById("q-strings").dataset;

  var URGENT_MS = 60 * 1000;
  var SAFETY_REFRESH_MS = 30 * 1000; // in case a push was lost and the socket never noticed

  var sections = {
    offers: document.getElementById("q-offers"),
    orders: document.getElementById("q-orders"),
    exceptions: document.getElementById("q-exceptions"),
    reviews: document.getElementById("q-reviews"),
    inquiries: document.getElementById("q-inquiries"),
  };
  var state = { agent: null, offers: [], accepted: [], inquiries: [], exceptions: [] };

  function fill(text, values) {
    return text.replace(/\{(\w+)\}/g, function (whole, key) {
      return Object.prototype.hasOwnProperty.call(values, key) ? String(values[key]) : whole;
    });
  }

  // --- The message area ------------------------------------------------------------------
  var messageBox = document.getElementById("q-message");
  var messageTimer = null;

  function say(text, kind) {
    messageBox.querySelector(".q-message-text").textContent = text;
    messageBox.className = "q-message " + (kind === "ok" ? "q-ok" : "q-error");
    messageBox.hidden = false;
    clearTimeout(messageTimer);
    // Confirmations fade; errors stay until dismissed or replaced.
    if (kind === "ok") {
      messageTimer = setTimeout(function () { messageBox.hidden = true; }, 6000);
    }
  }

  messageBox.querySelector(".q-dismiss").addEventListener("click", function () {
    messageBox.hidden = true;
  });

  // --- The API -----------------------------------------------------------------------------
  // Server time minus this device's; phones' clocks can be minutes off, and the countdown
  // must match the server's expiry. The Date header has whole seconds: only a real skew counts.
  var clockOffset = 0;

  function noteServerTime(response) {
    var server = Date.parse(response.headers.get("Date") || "");
    if (isNaN(server)) return;
    var offset = server - Date.now();
    clockOffset = Math.abs(offset) > 2000 ? offset : 0;
  }

  function serverNow() {
    return Date.now() + clockOffset;
  }

  function errorText(status, data) {
    if (data && typeof data.detail === "string") return data.detail;
    if (data && typeof data === "object") {
      // DRF field errors: {"reason": ["…"]}
      var parts = Object.keys(data).map(function (key) {
        var value = data[key];
        return Array.isArray(value) ? value.join(" ") : String(value);
      });
      if (parts.length) return parts.join(" ");
    }
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
        noteServerTime(response);
        return response
          .json()
          .catch(function () { return null; })
          .then(function (data) {
            if (response.ok) return data;
            var error = new Error(response.status === 401 ? strings.session : errorText(response.status, data));
            error.status = response.status;
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

  function results(data) {
    return data && Array.isArray(data.results) ? data.results : data || [];
  }

  // --- Re-reading everything ----------------------------------------------------------------
  var inFlight = null;
  var again = false;

  function refresh() {
    // One read at a time; a request during a read runs once more after it, with fresh data.
    if (inFlight) {
      again = true;
      return inFlight;
    }
    inFlight = Promise.all([
      api("GET", "agents/me/"),
      api("GET", "assignments/?mine=1&state=offered"),
      api("GET", "assignments/?mine=1&state=accepted"),
      api("GET", "inquiries/"),
      api("GET", "exceptions/?status=open&mine=true"),
    ])
      .then(function (answers) {
        state.agent = answers[0];
        state.offers = results(answers[1]);
        state.accepted = results(answers[2]);
        state.inquiries = results(answers[3]);
        state.exceptions = results(answers[4]);
        render();
        if (!messageBox.hidden && messageBox.querySelector(".q-message-text").textContent === strings.network) {
          messageBox.hidden = true;
        }
      })
      .catch(function (error) {
        say(error.message);
      })
      .then(function () {
        inFlight = null;
        if (again) {
          again = false;
          refresh();
        }
      });
    return inFlight;
  }

  // --- Rendering -------------------------------------------------------------------------
  function clone(id) {
    return document.getElementById(id).content.firstElementChild.cloneNode(true);
  }

  function setFact(card, name, value) {
    var dd = card.querySelector(".q-" + name);
    var empty = value === null || value === undefined || value === "";
    dd.textContent = empty ? "" : String(value);
    dd.hidden = empty;
    if (dd.previousElementSibling) dd.previousElementSibling.hidden = empty;
  }

  // Update lists in place, keyed by id: a card being answered (a half-typed reason, focus)
  // survives every re-read.
  function reconcile(section, items, make, update) {
    var list = section.querySelector(".q-list");
    var existing = {};
    Array.prototype.forEach.call(list.children, function (card) {
      existing[card.dataset.key] = card;
    });
    var keep = {};
    items.forEach(function (item, index) {
      var key = String(item.key);
      keep[key] = true;
      var card = existing[key] || make(item);
      card.dataset.key = key;
      update(card, item);
      if (list.children[index] !== card) list.insertBefore(card, list.children[index] || null);
    });
    Object.keys(existing).forEach(function (key) {
      if (!keep[key]) existing[key].remove();
    });
    counts(section);
  }

  function counts(section) {
    var n = section.querySelector(".q-list").children.length;
    section.querySelector(".q-empty").hidden = n > 0;
    section.querySelector(".q-count").textContent = n ? "(" + n + ")" : "";
  }

  function expiresAt(offer) {
    return offer.expires_at ? Date.parse(offer.expires_at) : Infinity;
  }

  function offerName(offer) {
    if (offer.review) return fill(strings.review, { tag: offer.review_order_tag });
    return offer.order_tag || fill(strings.inquiry, { id: offer.inquiry });
  }

  function why(offer) {
    var parts = [];
    if (offer.score !== null && offer.score !== undefined) {
      parts.push(fill(strings.score, { score: Number(offer.score).toFixed(2) }));
    }
    var breakdown = offer.breakdown || {};
    Object.keys(breakdown)
      .filter(function (key) { return breakdown[key] >= 0.005; }) // what shows as 0.00 says nothing
      .sort(function (a, b) { return breakdown[b] - breakdown[a]; })
      .slice(0, 3)
      .forEach(function (key) {
        parts.push((labels.criterion[key] || key) + " " + Number(breakdown[key]).toFixed(2));
      });
    return parts.join(" · ");
  }

  function makeOffer(offer) {
    var card = clone("t-offer");
    var form = card.querySelector(".q-reject-form");
    var input = form.querySelector("input[name=reason]");
    var actions = card.querySelector(".q-actions");
    card.querySelector(".q-accept").addEventListener("click", function () {
      answer(card, "accept", {});
    });
    card.querySelector(".q-reject").addEventListener("click", function () {
      actions.hidden = true;
      form.hidden = false;
      input.focus();
    });
    card.querySelector(".q-cancel").addEventListener("click", function () {
      form.hidden = true;
      actions.hidden = false;
      form.querySelector(".q-field-error").hidden = true;
    });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var reason = input.value.trim();
      form.querySelector(".q-field-error").hidden = Boolean(reason);
      if (!reason) {
        input.focus();
        return;
      }
      answer(card, "reject", { reason: reason });
    });
    return card;
  }

  function updateOffer(card, offer) {
    var summary = offer.order_summary || {};
    card.dataset.id = offer.id;
    card.dataset.name = offerName(offer);
    card.dataset.expires = expiresAt(offer);
    card.querySelector(".q-tag").textContent = offerName(offer);
    card.querySelector(".q-expedited").hidden = summary.urgency !== "expedited";
    setFact(card, "customer", summary.customer);
    setFact(card, "address", summary.address);
    setFact(card, "category", summary.category);
    setFact(card, "amount", summary.amount ? "¥" + summary.amount : "");
    setFact(card, "note", summary.note);
    setFact(card, "text", offer.inquiry_text);
    setFact(card, "distance", offer.distance_km === null || offer.distance_km === undefined ? "" : offer.distance_km + " km");
    setFact(card, "why", why(offer));
    tickCard(card, serverNow());
  }

  function answer(card, verb, body) {
    var buttons = card.querySelectorAll("button");
    Array.prototype.forEach.call(buttons, function (b) { b.disabled = true; });
    api("POST", "assignments/" + card.dataset.id + "/" + verb + "/", body)
      .then(function () {
        say(fill(verb === "accept" ? strings.accepted : strings.rejected, { tag: card.dataset.name }), "ok");
        card.remove();
        counts(sections.offers);
      })
      .catch(function (error) {
        say(error.message);
        Array.prototype.forEach.call(buttons, function (b) { b.disabled = false; });
      })
      .then(refresh);
  }

  function makeOrder() {
    return clone("t-order");
  }

  function updateOrder(card, a) {
    var summary = a.order_summary || {};
    var link = card.querySelector(".q-tag");
    link.textContent = a.order_tag;
    link.href = "/orders/" + a.order + "/";
    var stage = card.querySelector(".q-stage");
    stage.textContent = labels.stage[summary.stage] || summary.stage || "";
    stage.className = "stage q-stage stage-" + (summary.stage || "");
    card.querySelector(".q-expedited").hidden = summary.urgency !== "expedited";
    setFact(card, "customer", summary.customer);
    setFact(card, "address", summary.address);
    setFact(card, "category", summary.category);
    setFact(card, "note", summary.note);
  }

  function makeReview() {
    return clone("t-review");
  }

  function updateReview(card, a) {
    var summary = a.order_summary || {};
    var link = card.querySelector(".q-tag");
    link.textContent = offerName(a);
    link.href = root.dataset.reviews + a.review + "/";
    var stage = card.querySelector(".q-stage");
    stage.textContent = labels.stage[summary.stage] || summary.stage || "";
    stage.className = "stage q-stage stage-" + (summary.stage || "");
    setFact(card, "customer", summary.customer);
    setFact(card, "address", summary.address);
    setFact(card, "amount", summary.amount ? "¥" + summary.amount : "");
  }

  function makeException() {
    var card = clone("t-exception");
    var form = card.querySelector(".q-resolve-form");
    var input = form.querySelector("input[name=resolution]");
    var actions = card.querySelector(".q-actions");
    var problem = form.querySelector(".q-field-error");
    card.querySelector(".q-resolve").addEventListener("click", function () {
      actions.hidden = true;
      form.hidden = false;
      input.focus();
    });
    form.querySelector(".q-cancel").addEventListener("click", function () {
      form.hidden = true;
      actions.hidden = false;
      problem.hidden = true;
    });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var resolution = input.value.trim();
      problem.hidden = Boolean(resolution);
      if (!resolution) {
        input.focus();
        return;
      }
      var buttons = form.querySelectorAll("button");
      Array.prototype.forEach.call(buttons, function (b) { b.disabled = true; });
      api("POST", "exceptions/" + card.dataset.key + "/resolve/", { resolution: resolution })
        .then(function () {
          say(fill(strings.exceptionResolved, { tag: card.dataset.name }), "ok");
          card.remove();
          counts(sections.exceptions);
        })
        .catch(function (error) {
          say(error.message);
          Array.prototype.forEach.call(buttons, function (b) { b.disabled = false; });
        })
        .then(refresh);
    });
    return card;
  }

  function updateException(card, item) {
    card.dataset.name = item.order_tag;
    var link = card.querySelector(".q-tag");
    link.textContent = item.order_tag;
    link.href = "/orders/" + item.order + "/";
    card.querySelector(".q-type").textContent = item.type_name;
    var since = card.querySelector(".q-since");
    since.textContent = item.raised_at ? new Date(item.raised_at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "";
    since.dateTime = item.raised_at || "";
    setFact(card, "note", item.note);
    setFact(card, "held", labels.stage[item.held_stage] || item.held_stage);
    setFact(card, "raised-by", item.raised_by);
  }

  function makeInquiry() {
    var card = clone("t-inquiry");
    var button = card.querySelector(".q-close");
    button.addEventListener("click", function () {
      button.disabled = true;
      api("POST", "inquiries/" + card.dataset.key + "/close/")
        .then(function () {
          say(fill(strings.closed, { id: card.dataset.key }), "ok");
          card.remove();
          counts(sections.inquiries);
        })
        .catch(function (error) {
          say(error.message);
          button.disabled = false;
        })
        .then(refresh);
    });
    return card;
  }

  function updateInquiry(card, item) {
    card.querySelector(".q-tag").textContent = fill(strings.inquiry, { id: item.key });
    card.querySelector(".q-vip").hidden = !item.is_vip;
    var since = card.querySelector(".q-since");
    since.textContent = item.created_at ? new Date(item.created_at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "";
    since.dateTime = item.created_at || "";
    setFact(card, "customer", item.customer_name);
    setFact(card, "channel", item.channel);
    setFact(card, "text", item.text);
  }

  function heldInquiries() {
    // The inquiries I hold: my accepted inquiry assignments, with the details the inquiry
    // list has (it is paged; an assignment outside its first page still shows its text).
    var details = {};
    state.inquiries.forEach(function (q) { details[q.id] = q; });
    var held = {};
    state.accepted.forEach(function (a) {
      if (a.inquiry) held[a.inquiry] = details[a.inquiry] || { id: a.inquiry, text: a.inquiry_text, created_at: a.offered_at };
    });
    state.inquiries.forEach(function (q) {
      if (q.state === "assigned" && state.agent && q.agent === state.agent.id) held[q.id] = q;
    });
    return Object.keys(held)
      .map(function (id) { var q = held[id]; q.key = id; return q; })
      .sort(function (a, b) { return String(a.created_at).localeCompare(String(b.created_at)); });
  }

  function render() {
    var now = serverNow();
    var offers = state.offers
      .filter(function (o) { return expiresAt(o) > now; })
      .sort(function (a, b) { return expiresAt(a) - expiresAt(b); })
      .map(function (o) { o.key = o.id; return o; });
    reconcile(sections.offers, offers, makeOffer, updateOffer);
    var orders = state.accepted
      .filter(function (a) { return a.order; })
      .map(function (a) { a.key = a.id; return a; });
    reconcile(sections.orders, orders, makeOrder, updateOrder);
    var exceptions = state.exceptions
      .slice()
      .sort(function (a, b) { return String(a.raised_at).localeCompare(String(b.raised_at)); })
      .map(function (c) { c.key = c.id; return c; });
    reconcile(sections.exceptions, exceptions, makeException, updateException);
    sections.exceptions.hidden = exceptions.length === 0;
    var reviews = state.accepted
      .filter(function (a) { return a.review; })
      .map(function (a) { a.key = a.id; return a; });
    reconcile(sections.reviews, reviews, makeReview, updateReview);
    sections.reviews.hidden = reviews.length === 0;
    reconcile(sections.inquiries, heldInquiries(), makeInquiry, updateInquiry);
    renderAgent();
    var updated = document.getElementById("q-updated");
    updated.textContent = new Date().toLocaleTimeString();
    updated.dateTime = new Date().toISOString();
  }

  function renderAgent() {
    var agent = state.agent;
    if (!agent) return;
    Array.prototype.forEach.call(root.querySelectorAll(".q-status button"), function (button) {
      button.setAttribute("aria-pressed", String(button.dataset.status === agent.status));
    });
    Array.prototype.forEach.call(root.querySelectorAll("#q-status-hint [data-for]"), function (hint) {
      hint.hidden = hint.dataset.for !== agent.status;
    });
    document.getElementById("q-load").textContent = state.offers.length + state.accepted.length + " / " + agent.capacity;
  }

  // --- The countdown -------------------------------------------------------------------------
  function pad(n) {
    return (n < 10 ? "0" : "") + n;
  }

  // Returns false when the offer ran out: the card goes, and the server is asked what is left.
  function tickCard(card, now) {
    var left = Number(card.dataset.expires) - now;
    var clock = card.querySelector(".q-countdown");
    if (!isFinite(left)) {
      clock.textContent = "";
      return true;
    }
    if (left <= 0) {
      card.remove();
      say(fill(strings.expired, { tag: card.dataset.name }));
      return false;
    }
    var seconds = Math.ceil(left / 1000);
    clock.textContent = pad(Math.floor(seconds / 60)) + ":" + pad(seconds % 60);
    clock.classList.toggle("q-urgent", left < URGENT_MS);
    card.classList.toggle("q-urgent-card", left < URGENT_MS);
    return true;
  }

  function tick() {
    var now = serverNow();
    var expired = false;
    Array.prototype.forEach.call(sections.offers.querySelectorAll(".q-list > .q-offer"), function (card) {
      if (!tickCard(card, now)) expired = true;
    });
    if (expired) {
      counts(sections.offers);
      refresh();
    }
  }

  // --- Status ------------------------------------------------------------------------------
  Array.prototype.forEach.call(root.querySelectorAll(".q-status button"), function (button) {
    button.addEventListener("click", function () {
      if (state.agent && state.agent.status === button.dataset.status) return;
      button.disabled = true;
      api("POST", "agents/me/status/", { status: button.dataset.status })
        .then(function (agent) {
          state.agent = agent;
          renderAgent();
          say(fill(strings.statusSet, { status: labels.status[agent.status] || agent.status }), "ok");
        })
        .catch(function (error) { say(error.message); })
        .then(function () {
          button.disabled = false;
          return refresh();
        });
    });
  });

  // --- The socket (static/js/live.js keeps it connected) ------------------------------------
  var banner = document.getElementById("q-reconnecting");

  function startLive() {
    window.PaidanLive.connect(root.dataset.ws, {
      onOpen: function () {
        banner.hidden = true;
        root.classList.add("q-live");
        refresh(); // whatever was pushed while we were away is lost: read it all
      },
      onMessage: function (message) {
        // A new notification may be a task of mine too.
        if (message.type === "agent.changed" || message.type === "notifications.created") refresh();
      },
      onLost: function () {
        root.classList.remove("q-live");
        banner.hidden = false;
      },
      onFatal: function (code) {
        root.classList.remove("q-live");
        banner.hidden = true;
        say(code === 4401 ? strings.session : strings.noAgent);
      },
    });
  }

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState !== "visible") return;
    tick();
    refresh();
  });

  setInterval(tick, 1000);
  setInterval(refresh, SAFETY_REFRESH_MS);
  refresh();
  startLive();
})();
