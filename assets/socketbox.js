/*
 * socketbox.js: the browser client for the SocketBox protocol, version 1.
 *
 * This is the seed tutorial's `SocketBox` object, corrected. It keeps the
 * seed's names (init, pingInvake, sysInvake, messageInvake, sendData,
 * sendPeerTextMessage, openInvake, closeInvake) so a page written for the
 * seed can load this file instead, and it still calls the page's global
 * answerTextMessage(body) for peer messages when the page defines one.
 *
 * What changed from the seed, and why:
 * - The seed kept its WebSocket in an accidental global `socket` but cleared
 *   and closed `SocketBox.socket`, which was always null. The socket now
 *   lives in `SocketBox.socket` only.
 * - The seed ran eval() on every server message, which executes whatever
 *   arrives. Messages are now read with JSON.parse.
 * - The seed wrapped JSON.stringify output in single quotes by hand, so a
 *   text with an apostrophe broke the message. Every message is now built
 *   with JSON.stringify and is strict JSON.
 * - The seed gave up when the connection closed. The client now reconnects
 *   with exponential backoff and jitter, and authenticates again.
 * - The seed treated every ERROR as the end of the session. In the protocol
 *   only a rejected authentication is fatal; other errors go to onError.
 * - The seed answered a PONG with a PONG. Only the server's PING (476) is
 *   answered, with {"code":10016}.
 *
 * Hooks the page may set (each is optional; errors they throw are logged):
 *   SocketBox.onStateChange(state, detail)  "connecting", "authenticating",
 *       "online", "reconnecting" (detail: code, reason, delayMs, attempt),
 *       "closed" or "rejected"
 *   SocketBox.onAuth(ok)                    SYSTEM 20002
 *   SocketBox.onUserCount(n)                SYSTEM 20001
 *   SocketBox.onNotice(text)                SYSTEM 20003
 *   SocketBox.onMessage(body)               MESSAGE: {type, from, to, data, time, seq}
 *   SocketBox.onError(extend)               ERROR or AUTH: {code, mess}
 *
 * Who is online (PRESENCE, 10004):
 *   SocketBox.onPresence(fn)  asks the server for the online list after
 *       every login (and at once when already logged in), and calls
 *       fn(ids, detail) with the ids sorted by code point each time the list
 *       changes: SYSTEM 20004 gives the whole list, each 20005 its net
 *       change, applied here. When more ids are online than the server's
 *       --presence-list-max, fn(null, {truncated: true, online: N}) says the
 *       list is not available; the server sends a fresh list once it fits
 *       again (if the refusal came as ERROR 40003, the next login asks
 *       again). SocketBox.online holds the last list (null when none).
 *       onPresence(null) stops calling fn (the server keeps sending until
 *       the next login).
 */

/** Message codes shared with the server (PROTOCOL.md, "The client's constants"). */
var MessageCode = {
  AUTH: 10000, MESS_CODE: 10002, BROADCAST: 10003, PRESENCE: 10004, PING: 10015, PONG: 10016,
  PEER_MESSAGE: 30001, BROADCAST_MESSAGE: 30002, PUSH_MESSAGE: 30003
};

var SocketBox = {
  /** Codes of the server's envelopes: (kind << 8) | 220, as in the seed. */
  ServerCode: {
    PING: 1 << 8 | 220, PONG: 2 << 8 | 220, SYSTEM: 3 << 8 | 220,
    ERROR: 4 << 8 | 220, AUTH: 5 << 8 | 220, MESSAGE: 6 << 8 | 220
  },
  /** Codes inside `extend` of SYSTEM and ERROR envelopes. */
  SystemCode: {
    USER_COUNT: 20001, AUTH_RESULT: 20002, NOTICE: 20003, ONLINE_LIST: 20004, ONLINE_CHANGES: 20005
  },
  ErrorCode: {
    NOT_JSON: 40000, UNKNOWN_CODE: 40001, BAD_FIELD: 40002, LIST_TOO_LONG: 40003, NOT_AUTHENTICATED: 40100,
    AUTH_REJECTED: 40101, NOT_ONLINE: 40400, ID_CONFLICT: 40900, TOO_BIG: 41300,
    RATE_LIMITED: 42900
  },

  socket: null,
  isAuth: false,
  fromId: null,
  token: null,
  url: null,
  userCount: 0,
  /** The online ids, sorted, while onPresence is in use; null otherwise. */
  online: null,
  state: "idle",
  /** Seq of the last MESSAGE this session received (it restarts at 1 per session). */
  lastSeq: 0,

  /** Offered subprotocols; set to [] before init() to offer none. */
  protocols: ["socketbox.v1"],
  reconnect: true,
  reconnectBaseMs: 500,
  reconnectMaxMs: 15000,
  reconnectAttempts: 0,
  /**
   * Silence after which the client probes with a PING, and twice that after
   * which it gives the connection up and reconnects: a server that vanished
   * without closing (a cable pulled, a laptop asleep) is otherwise never noticed.
   */
  watchdogMs: 45000,

  onStateChange: null,
  onAuth: null,
  onUserCount: null,
  onNotice: null,
  onMessage: null,
  onError: null,

  _stopped: true,
  _rejected: false,
  _retryTimer: null,
  _watchdogTimer: null,
  _lastHeard: 0,
  _resumeOnShow: false,
  _presenceHook: null,

  /**
   * Connects as user `fromId` to `url` (default: /ws on this page's host)
   * and keeps the connection up until close(). `options.token` is sent with
   * the AUTH when the server requires tokens. Returns false when the browser
   * has no WebSocket.
   */
  init: function (fromId, url, options) {
    if (typeof window.WebSocket !== "function") {
      SocketBox._call("onError", { code: 0, mess: "this browser has no WebSocket" });
      return false;
    }
    SocketBox.close();
    SocketBox.fromId = fromId;
    SocketBox.url = url || SocketBox.defaultUrl();
    SocketBox.token = options && options.token != null ? options.token : null;
    SocketBox.reconnectAttempts = 0;
    SocketBox._stopped = false;
    SocketBox._rejected = false;
    SocketBox._connect();
    return true;
  },

  /** ws://host/ws for a page served over http, wss:// for https. */
  defaultUrl: function () {
    var scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    return scheme + "//" + window.location.host + "/ws";
  },

  _connect: function () {
    var ws;
    SocketBox._retryTimer = null;
    SocketBox._setState("connecting", { attempt: SocketBox.reconnectAttempts });
    try {
      ws = SocketBox.protocols && SocketBox.protocols.length
        ? new WebSocket(SocketBox.url, SocketBox.protocols)
        : new WebSocket(SocketBox.url);
    } catch (e) {
      // A malformed URL throws at once; retrying cannot fix it.
      SocketBox._stopped = true;
      SocketBox._call("onError", { code: 0, mess: "cannot connect to " + SocketBox.url + ": " + e.message });
      SocketBox._setState("closed", { code: 0, reason: e.message });
      return;
    }
    SocketBox.socket = ws;
    SocketBox.isAuth = false;
    SocketBox.lastSeq = 0;

    // Every handler first checks that its socket is still the current one,
    // so events from a socket already given up on change nothing.
    ws.onopen = function (event) {
      if (ws !== SocketBox.socket) return;
      SocketBox._heard();
      SocketBox._startWatchdog();
      SocketBox._setState("authenticating", {});
      SocketBox.openInvake(SocketBox.fromId, event);
    };
    ws.onmessage = function (event) {
      if (ws !== SocketBox.socket) return;
      SocketBox._heard();
      SocketBox._dispatch(event.data);
    };
    ws.onerror = function () {
      // The browser tells nothing here; the close event that follows has the code.
    };
    ws.onclose = function (event) {
      if (ws !== SocketBox.socket) return;
      SocketBox.closeInvake(event);
    };
  },

  _dispatch: function (text) {
    var data;
    try {
      data = JSON.parse(text);
    } catch (e) {
      console.warn("SocketBox: ignoring a message that is not JSON:", text);
      return;
    }
    if (!data || typeof data !== "object") return;
    var c = SocketBox.ServerCode;
    switch (data.code) {
      case c.PING:
      case c.PONG:
        SocketBox.pingInvake(data);
        break;
      case c.SYSTEM:
        SocketBox.sysInvake(data);
        break;
      case c.ERROR:
      case c.AUTH: // a PEER or BROADCAST sent before AUTH: dropped by the server
        SocketBox.errorInvake(data);
        break;
      case c.MESSAGE:
        SocketBox.messageInvake(data);
        break;
      default:
        console.warn("SocketBox: unknown message code", data.code);
    }
  },

  /** Answers the server's heartbeat PING; a PONG (to our probe) needs nothing. */
  pingInvake: function (data) {
    if (data && data.code === SocketBox.ServerCode.PING) {
      SocketBox.sendData(true, { code: MessageCode.PONG });
    }
  },

  sysInvake: function (data) {
    var extend = data.extend || {};
    switch (extend.code) {
      case SocketBox.SystemCode.USER_COUNT:
        SocketBox.userCount = Number(extend.mess) || 0;
        SocketBox._call("onUserCount", SocketBox.userCount);
        break;
      case SocketBox.SystemCode.AUTH_RESULT:
        SocketBox.isAuth = extend.mess === true;
        if (SocketBox.isAuth) {
          SocketBox.reconnectAttempts = 0;
          SocketBox._setState("online", { id: SocketBox.fromId });
          if (SocketBox._presenceHook) SocketBox.sendData(true, { code: MessageCode.PRESENCE });
        } else {
          // The server follows with ERROR 40101 and Close 1008; retrying
          // with the same id and token would only be refused again.
          SocketBox._reject();
        }
        SocketBox._call("onAuth", SocketBox.isAuth);
        break;
      case SocketBox.SystemCode.NOTICE:
        SocketBox._call("onNotice", extend.mess);
        break;
      case SocketBox.SystemCode.ONLINE_LIST:
        SocketBox._onlineList(extend.mess || {});
        break;
      case SocketBox.SystemCode.ONLINE_CHANGES:
        SocketBox._onlineChanges(extend.mess || {});
        break;
      default:
        console.warn("SocketBox: unknown system code", extend.code);
    }
  },

  /**
   * Keeps the online list with `fn(sortedIds, detail)` (see the header); a
   * function replaces the previous one, null stops.
   */
  onPresence: function (fn) {
    SocketBox._presenceHook = typeof fn === "function" ? fn : null;
    if (SocketBox._presenceHook && SocketBox.isAuth) {
      SocketBox.sendData(true, { code: MessageCode.PRESENCE });
    }
  },

  /** SYSTEM 20004: the whole list. */
  _onlineList: function (mess) {
    var users = Array.isArray(mess.users) ? mess.users.map(String) : [];
    SocketBox.online = users.sort(SocketBox._byCodePoint);
    SocketBox._presence({ online: SocketBox.online.length });
  },

  /** SYSTEM 20005: the net change since the last 20004 or 20005. */
  _onlineChanges: function (mess) {
    if (mess.truncated === true) {
      SocketBox.online = null;
      SocketBox._presence({ truncated: true, online: mess.online });
      return;
    }
    if (!SocketBox.online) return; // no list to change: a fresh 20004 comes first
    var ids = {};
    SocketBox.online.forEach(function (id) { ids[id] = true; });
    (mess.left || []).forEach(function (id) { delete ids[String(id)]; });
    (mess.joined || []).forEach(function (id) { ids[String(id)] = true; });
    SocketBox.online = Object.keys(ids).sort(SocketBox._byCodePoint);
    SocketBox._presence({ online: SocketBox.online.length, joined: mess.joined || [], left: mess.left || [] });
  },

  _presence: function (detail) {
    var hook = SocketBox._presenceHook;
    if (!hook) return;
    try {
      hook(SocketBox.online ? SocketBox.online.slice() : null, detail);
    } catch (e) {
      console.error("SocketBox.onPresence's function threw:", e);
    }
  },

  /** Ids are ASCII, so comparing UTF-16 units is comparing code points. */
  _byCodePoint: function (a, b) {
    return a < b ? -1 : a > b ? 1 : 0;
  },

  /** ERROR (1244) and AUTH (1500) envelopes: reported, fatal only for 40101. */
  errorInvake: function (data) {
    var extend = data.extend || { code: 0, mess: "error without details" };
    if (extend.code === SocketBox.ErrorCode.AUTH_REJECTED) {
      SocketBox._reject();
    }
    if (extend.code === SocketBox.ErrorCode.LIST_TOO_LONG) {
      SocketBox.online = null;
      SocketBox._presence({ truncated: true });
    }
    SocketBox._call("onError", extend);
  },

  messageInvake: function (data) {
    var body = data.body;
    if (!body || typeof body !== "object") return;
    if (typeof body.seq === "number") {
      if (SocketBox.lastSeq && body.seq !== SocketBox.lastSeq + 1) {
        console.warn("SocketBox: expected seq", SocketBox.lastSeq + 1, "got", body.seq);
      }
      SocketBox.lastSeq = body.seq;
    }
    if (body.type === MessageCode.PEER_MESSAGE && typeof window.answerTextMessage === "function") {
      try {
        window.answerTextMessage(body);
      } catch (e) {
        console.error(e);
      }
    }
    SocketBox._call("onMessage", body);
  },

  /**
   * Sends `mess` (an object, sent as JSON, or a string sent as it is) if the
   * socket is open, and returns whether it did. `auth` is kept from the
   * seed's signature and ignored: the socket's ordering already puts the
   * AUTH ahead of everything sent after it.
   */
  sendData: function (auth, mess) {
    var ws = SocketBox.socket;
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      return false;
    }
    ws.send(typeof mess === "string" ? mess : JSON.stringify(mess));
    return true;
  },

  /** Sends a peer message; `data.to` is the recipient's id. */
  sendPeerTextMessage: function (data) {
    return SocketBox.sendData(true, { code: MessageCode.MESS_CODE, data: data });
  },

  /** Sends `data` to every other authenticated session. */
  sendBroadcast: function (data) {
    return SocketBox.sendData(true, { code: MessageCode.BROADCAST, data: data });
  },

  /** Asks the server for a PONG (732). */
  sendPing: function () {
    return SocketBox.sendData(true, { code: MessageCode.PING });
  },

  /** The socket opened: authenticate (again, after a reconnect). */
  openInvake: function (fromId, event) {
    var auth = { code: MessageCode.AUTH, id: fromId };
    if (SocketBox.token != null) auth.token = SocketBox.token;
    SocketBox.sendData(true, auth);
  },

  /** The socket closed: retry later unless the close was wanted or fatal. */
  closeInvake: function (event) {
    var code = event && event.code ? event.code : 1006;
    var reason = event && event.reason ? event.reason : "";
    SocketBox.socket = null;
    SocketBox.isAuth = false;
    SocketBox._stopWatchdog();
    if (SocketBox._stopped || !SocketBox.reconnect) {
      SocketBox._setState(SocketBox._rejected ? "rejected" : "closed", { code: code, reason: reason });
      return;
    }
    var ceiling = Math.min(SocketBox.reconnectMaxMs, SocketBox.reconnectBaseMs * Math.pow(2, SocketBox.reconnectAttempts));
    // Jitter spreads the reconnects of many clients after a server restart.
    var delay = Math.round(ceiling / 2 + Math.random() * ceiling / 2);
    SocketBox.reconnectAttempts += 1;
    SocketBox._setState("reconnecting", { code: code, reason: reason, delayMs: delay, attempt: SocketBox.reconnectAttempts });
    SocketBox._retryTimer = setTimeout(SocketBox._connect, delay);
  },

  /** Skips the backoff wait and tries now (e.g. when the network comes back). */
  reconnectNow: function () {
    if (SocketBox._stopped || SocketBox._retryTimer === null) return;
    clearTimeout(SocketBox._retryTimer);
    SocketBox._connect();
  },

  /** Closes the connection for good (until the next init). */
  close: function () {
    var ws = SocketBox.socket;
    SocketBox._stopped = true;
    if (SocketBox._retryTimer !== null) {
      clearTimeout(SocketBox._retryTimer);
      SocketBox._retryTimer = null;
    }
    SocketBox._stopWatchdog();
    SocketBox.socket = null;
    SocketBox.isAuth = false;
    if (ws) {
      try {
        ws.close(1000, "bye");
      } catch (e) {
        // Already closing.
      }
    }
    if (SocketBox.state !== "idle" && SocketBox.state !== "closed" && SocketBox.state !== "rejected") {
      SocketBox._setState("closed", { code: 1000, reason: "closed by the page" });
    }
  },

  _reject: function () {
    SocketBox._stopped = true;
    if (!SocketBox._rejected) {
      SocketBox._rejected = true;
      SocketBox._setState("rejected", {});
    }
  },

  _heard: function () {
    SocketBox._lastHeard = Date.now();
  },

  _startWatchdog: function () {
    SocketBox._stopWatchdog();
    if (!(SocketBox.watchdogMs > 0)) return;
    SocketBox._watchdogTimer = setInterval(function () {
      var silence = Date.now() - SocketBox._lastHeard;
      if (silence >= 2 * SocketBox.watchdogMs) {
        var ws = SocketBox.socket;
        console.warn("SocketBox: no word from the server for", silence, "ms; reconnecting");
        SocketBox.closeInvake({ code: 1006, reason: "server silent" });
        if (ws) {
          try {
            ws.close();
          } catch (e) {
            // Nothing more to do with a dead socket.
          }
        }
      } else if (silence >= SocketBox.watchdogMs) {
        SocketBox.sendPing();
      }
    }, Math.max(1000, Math.round(SocketBox.watchdogMs / 3)));
  },

  _stopWatchdog: function () {
    if (SocketBox._watchdogTimer !== null) {
      clearInterval(SocketBox._watchdogTimer);
      SocketBox._watchdogTimer = null;
    }
  },

  _setState: function (state, detail) {
    SocketBox.state = state;
    SocketBox._call("onStateChange", state, detail || {});
  },

  _call: function (name, a, b) {
    var hook = SocketBox[name];
    if (typeof hook !== "function") return;
    try {
      hook(a, b);
    } catch (e) {
      console.error("SocketBox." + name + " threw:", e);
    }
  }
};

// Leaving the page closes the socket cleanly (the seed tried this with the
// always-null SocketBox.socket); a page restored from the back/forward cache
// connects again.
if (typeof window !== "undefined" && window.addEventListener) {
  window.addEventListener("pagehide", function () {
    SocketBox._resumeOnShow = !SocketBox._stopped;
    if (SocketBox._resumeOnShow) SocketBox.close();
  });
  window.addEventListener("pageshow", function (event) {
    if (event.persisted && SocketBox._resumeOnShow) {
      SocketBox._resumeOnShow = false;
      SocketBox._stopped = false;
      SocketBox.reconnectAttempts = 0;
      SocketBox._connect();
    }
  });
  window.addEventListener("online", SocketBox.reconnectNow);
}
