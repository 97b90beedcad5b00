/* One live feed over a websocket that keeps itself connected, for the board and the agent's
   queue page: reconnects with jittered exponential backoff, pings so a half-open connection
   (a phone switching networks) counts as lost, reconnects at once when the tab comes back or
   the network returns, and stops for good on the server's "log in again" / "not allowed"
   close codes. Messages only name what changed: pages re-read what they show in `onOpen`,
   since anything pushed while the socket was down is lost. New in-app notifications are
   announced to the page as a `paidan:notified` event (the inbox bell listens). */
window.PaidanLive = (function () {
  "use strict";

  var PING_MS = 25 * 1000;
  var PONG_TIMEOUT_MS = 10 * 1000;
  var FIRST_BACKOFF_MS = 1000;
  // A page is stale until it reconnects, so the wait stays short: after a 30 s Redis outage a
  // 30 s cap kept boards down for up to 37 s more (tests/chaos/test_redis_down.py).
  var MAX_BACKOFF_MS = 10 * 1000;
  var FATAL_CODES = { 4401: true, 4403: true };

  /* handlers: onOpen(), onMessage(message), onLost(), onFatal(code); all optional. */
  function connect(path, handlers) {
    var socket = null;
    var backoff = FIRST_BACKOFF_MS;
    var reconnectTimer = null;
    var pingTimer = null;
    var pongTimer = null;
    var stopped = false;

    function call(name, arg) {
      if (typeof handlers[name] === "function") handlers[name](arg);
    }

    function open() {
      reconnectTimer = null;
      if (stopped || socket) return;
      var ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + path);
      socket = ws;
      ws.onopen = function () {
        backoff = FIRST_BACKOFF_MS;
        startPing(ws);
        call("onOpen");
      };
      ws.onmessage = function (event) {
        var message;
        try {
          message = JSON.parse(event.data);
        } catch (ignored) {
          return;
        }
        if (message.type === "pong") {
          clearTimeout(pongTimer);
          return;
        }
        if (message.type === "notifications.created") {
          document.dispatchEvent(new CustomEvent("paidan:notified", { detail: { ids: message.ids || [] } }));
        }
        call("onMessage", message);
      };
      ws.onclose = function (event) {
        lost(ws, event.code);
      };
    }

    function lost(ws, code) {
      if (socket !== ws) return;
      socket = null;
      ws.onopen = ws.onmessage = ws.onclose = null;
      clearInterval(pingTimer);
      clearTimeout(pongTimer);
      if (FATAL_CODES[code]) {
        // Retrying cannot help: the login is gone, or this account may not use this feed.
        stopped = true;
        call("onFatal", code);
        return;
      }
      call("onLost");
      var delay = Math.min(backoff, MAX_BACKOFF_MS) * (0.75 + Math.random() / 2);
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
      reconnectTimer = setTimeout(open, delay);
    }

    function startPing(ws) {
      clearInterval(pingTimer);
      pingTimer = setInterval(function () {
        if (ws.readyState !== WebSocket.OPEN) return;
        ws.send(JSON.stringify({ type: "ping" }));
        clearTimeout(pongTimer);
        pongTimer = setTimeout(function () {
          try {
            ws.close();
          } catch (ignored) {
            // already closing
          }
          lost(ws, 1006);
        }, PONG_TIMEOUT_MS);
      }, PING_MS);
    }

    function reconnectNow() {
      if (stopped || socket) return;
      clearTimeout(reconnectTimer);
      backoff = FIRST_BACKOFF_MS;
      open();
    }

    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "visible") reconnectNow();
    });
    window.addEventListener("online", reconnectNow);
    open();
    return {
      isOpen: function () {
        return socket !== null && socket.readyState === WebSocket.OPEN;
      },
    };
  }

  return { connect: connect };
})();
