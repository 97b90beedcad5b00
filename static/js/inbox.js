/* The bell in the header: the unread count and the latest in-app notifications, from
   /api/notifications/. Re-read every 30 s, when the tab comes back, and at once when a page's
   socket hears `notifications.created` (the board and queue pages dispatch `paidan:notified`
   on document). The API is the truth; the push only says "look again". */
(function () {
  "use strict";

  var root = document.getElementById("inbox");
  if (!root || !window.fetch) return;

  var LATEST = 8;
  var REFRESH_MS = 30 * 1000;
  var bell = root.querySelector(".inbox-bell");
  var badge = root.querySelector(".inbox-count");
  var panel = root.querySelector(".inbox-panel");
  var list = root.querySelector(".inbox-list");
  var readAll = root.querySelector(".inbox-read-all");
  var loading = false;
  var again = false;

  function post(url) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": root.dataset.csrf, Accept: "application/json" },
    }).then(function (response) {
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.json();
    });
  }

  function readUrl(id) {
    return root.dataset.read.replace(/\/0\/read\/$/, "/" + id + "/read/");
  }

  function showCount(unread) {
    badge.textContent = unread > 99 ? "99+" : String(unread);
    badge.hidden = unread === 0;
    root.classList.toggle("inbox-has-unread", unread > 0);
  }

  function when(iso) {
    var at = new Date(iso);
    return isNaN(at) ? "" : at.toLocaleString(document.documentElement.lang || undefined, {
      month: "numeric", day: "numeric", hour: "2-digit", minute: "2-digit",
    });
  }

  function item(note) {
    var li = document.createElement("li");
    li.className = "inbox-item" + (note.is_read ? "" : " inbox-unread");
    li.dataset.id = note.id;
    var title = document.createElement("div");
    title.className = "inbox-title";
    title.textContent = note.subject || note.order_tag || note.template;
    var body = document.createElement("div");
    body.className = "inbox-body";
    body.textContent = note.body;
    var meta = document.createElement("div");
    meta.className = "inbox-meta";
    meta.textContent = [when(note.created_at), note.order_tag || ""].filter(Boolean).join(" · ");
    li.append(title, body, meta);
    li.tabIndex = 0;
    li.setAttribute("role", "link");
    function open() {
      var go = function () { if (note.url) window.location.href = note.url; };
      if (note.is_read) return go();
      post(readUrl(note.id)).then(function () {
        li.classList.remove("inbox-unread");
        note.is_read = true;
        load();
      }).catch(function () { /* still open the order; the badge catches up */ }).then(go);
    }
    li.addEventListener("click", open);
    li.addEventListener("keydown", function (event) {
      if (event.key === "Enter" || event.key === " ") { event.preventDefault(); open(); }
    });
    return li;
  }

  function message(text, className) {
    var li = document.createElement("li");
    li.className = className;
    li.textContent = text;
    list.replaceChildren(li);
  }

  function load() {
    if (loading) { again = true; return; }
    loading = true;
    fetch(root.dataset.api + "?page_size=" + LATEST, {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    }).then(function (response) {
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.json();
    }).then(function (data) {
      showCount(data.unread);
      if (!data.results.length) return message(root.dataset.empty, "inbox-empty");
      list.replaceChildren.apply(list, data.results.map(item));
    }).catch(function () {
      message(root.dataset.failed, "inbox-empty error");
    }).then(function () {
      loading = false;
      if (again) { again = false; load(); }
    });
  }

  function setOpen(open) {
    panel.hidden = !open;
    bell.setAttribute("aria-expanded", open ? "true" : "false");
    if (open) load();
  }

  bell.addEventListener("click", function () { setOpen(panel.hidden); });
  document.addEventListener("click", function (event) {
    if (!panel.hidden && !root.contains(event.target)) setOpen(false);
  });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && !panel.hidden) { setOpen(false); bell.focus(); }
  });
  readAll.addEventListener("click", function () {
    post(root.dataset.readAll).then(load).catch(load);
  });
  document.addEventListener("paidan:notified", load);
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") load();
  });
  setInterval(function () { if (document.visibilityState !== "hidden") load(); }, REFRESH_MS);
  load();
})();
