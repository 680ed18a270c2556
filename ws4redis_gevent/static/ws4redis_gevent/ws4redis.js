/*!
 * ws4redis.js: the browser client of ws4redis-gevent. No dependencies.
 *
 * As a plain script, it defines the global `WS4Redis`:
 *
 *     <script src="{% static 'ws4redis_gevent/ws4redis.js' %}"></script>
 *     <script>
 *       var ws4redis = WS4Redis({
 *         uri: "{{ WEBSOCKET_URI }}foobar?subscribe-broadcast&publish-broadcast&echo",
 *         heartbeat_msg: {{ WS4REDIS_HEARTBEAT }},
 *         receive_message: function (message) { console.log(message); }
 *       });
 *       ws4redis.send_message("Hello");
 *     </script>
 *
 * As an ES module, import `ws4redis.mjs` from the same folder (it loads this file):
 *
 *     import WS4Redis from "/static/ws4redis_gevent/ws4redis.mjs";
 *
 * With CommonJS (Node, bundlers), `require()` returns `WS4Redis`.
 *
 * Options (those of django-websocket-redis' ws4redis.js, and a few more):
 *   uri                    the websocket URL (required)
 *   connecting()           called before each connection attempt
 *   connected()            called when the websocket is open
 *   receive_message(data)  called with each message (heartbeats are not passed on)
 *   disconnected(event)    called when the websocket closed (a CloseEvent, or a
 *                          {code: 1006, reason: "missed heartbeats"} object)
 *   reconnecting(delay, attempt)  called when a reconnection is scheduled in `delay` ms
 *   heartbeat_msg          WS4REDIS_HEARTBEAT: sent every `heartbeat_interval` ms; when the
 *                          server has answered none of the last `max_missed_heartbeats`,
 *                          the connection is taken for dead and replaced (default null: off)
 *   heartbeat_interval     5000 (ms)
 *   max_missed_heartbeats  3
 *   reconnect_delay        1000 (ms): the first retry waits between half of it and all of it;
 *                          each further retry doubles that, up to `max_reconnect_delay`
 *   max_reconnect_delay    30000 (ms)
 *   WebSocket              the WebSocket class to use (default: the global one)
 *   recover                false; true asks the server for recovery (facilities with
 *                          WS4REDIS_HISTORY): the client remembers the position of the last
 *                          message of each channel and, after a reconnection, the server sends
 *                          exactly the messages missed meanwhile. receive_message then gets a
 *                          second argument {label, position}. A label is "broadcast",
 *                          "user", "session" or "group:NAME", NAME with "%", spaces and
 *                          control characters percent-encoded ("group:my%20team"):
 *                          decodeURIComponent(label.slice(6)) gives the group's name.
 *   resync(label)          called when the server cannot recover a channel ("*": all of them,
 *                          after it lost its Redis connection): reload that state another way
 *   presence               false; true asks who is present on each subscribed channel of a
 *                          facility with WS4REDIS_PRESENCE (the "presence" flag). Messages then
 *                          come with {label, position} as in recovery mode.
 *   presence_changed(label, users)  called with the users present on a channel (label as in
 *                          recovery mode: "broadcast", "user", "group:NAME"...), each
 *                          {name, anonymous, connections}, whenever the list or a count of
 *                          connections (tabs) changes
 *
 * Methods: send_message(message) -> true if sent, false when not connected;
 *          get_presence(label) -> the users present on a channel (presence mode), as above;
 *          get_state() -> the readyState (0 connecting, 1 open, 2 closing, 3 closed);
 *          close() -> closes for good (no reconnection).
 */
(function (root, factory) {
  "use strict";
  var WS4Redis = factory(root);
  if (typeof module === "object" && module && module.exports) {
    module.exports = WS4Redis;
  } else {
    root.WS4Redis = WS4Redis;
  }
})(typeof globalThis !== "undefined" ? globalThis : this, function (root) {
  "use strict";

  var CONNECTING = 0;
  var OPEN = 1;
  var CLOSED = 3;

  var DEFAULTS = {
    uri: null,
    connecting: null,
    connected: null,
    receive_message: null,
    disconnected: null,
    reconnecting: null,
    heartbeat_msg: null,
    heartbeat_interval: 5000,
    max_missed_heartbeats: 3,
    reconnect_delay: 1000,
    max_reconnect_delay: 30000,
    WebSocket: null,
    recover: false,
    resync: null,
    presence: false,
    presence_changed: null
  };

  var PRESENCE_HEAD = "!presence ";

  // Recovery mode: each message arrives as "LABEL POSITION\nPAYLOAD"; "!resync LABEL" asks the
  // page to reload the state of that channel.
  function withRecovery(uri, positions) {
    var parts = [uri.indexOf("?") < 0 ? "?recover" : "&recover"];
    for (var label in positions) {
      if (Object.prototype.hasOwnProperty.call(positions, label)) {
        parts.push("&since=" + encodeURIComponent(label + "@" + positions[label]));
      }
    }
    return uri + parts.join("");
  }

  function withFlag(uri, flag) {
    return uri + (uri.indexOf("?") < 0 ? "?" : "&") + flag;
  }

  // Presence of one channel: the list the server sent, then join/leave events applied when
  // newer (by version "v") than what is known of that user, whatever order they arrive in.
  function PresenceList() {
    this.version = 0;
    this.users = {};
  }

  PresenceList.prototype.reset = function (event) {
    this.version = event.v || 0;
    this.users = {};
    for (var i = 0; i < (event.users || []).length; i++) {
      var user = event.users[i];
      this.users[userKey(user)] = {
        name: user.name, anonymous: !!user.anonymous, connections: user.connections,
        v: this.version, present: true
      };
    }
  };

  PresenceList.prototype.apply = function (items, present) {
    var changed = false;
    for (var i = 0; i < (items || []).length; i++) {
      var item = items[i];
      var key = userKey(item);
      var known = this.users[key];
      if (item.v <= (known ? known.v : this.version)) continue;  // older than what we know
      var connections = present ? (item.connections || 1) : 0;
      // Kept when absent too: older events about that user stay ignored.
      this.users[key] = {
        name: item.name, anonymous: !!item.anonymous, connections: connections, v: item.v,
        present: present
      };
      var was = known && known.present ? known.connections : 0;
      changed = changed || was !== connections;
    }
    return changed;
  };

  PresenceList.prototype.list = function () {
    var found = [];
    for (var key in this.users) {
      if (Object.prototype.hasOwnProperty.call(this.users, key) && this.users[key].present) {
        var user = this.users[key];
        found.push({ name: user.name, anonymous: user.anonymous, connections: user.connections });
      }
    }
    found.sort(function (a, b) {
      if (a.anonymous !== b.anonymous) return a.anonymous ? 1 : -1;
      return a.name < b.name ? -1 : (a.name > b.name ? 1 : 0);
    });
    return found;
  };

  function userKey(user) {
    return (user.anonymous ? "a:" : "u:") + user.name;
  }

  function splitTagged(data) {
    var newline, head;
    if (typeof data === "string") {
      newline = data.indexOf("\n");
      if (newline < 0) return null;
      head = data.slice(0, newline);
      return { head: head, payload: data.slice(newline + 1) };
    }
    var bytes = new Uint8Array(data);
    newline = bytes.indexOf(10);
    if (newline < 0) return null;
    head = new TextDecoder().decode(bytes.subarray(0, newline));
    return { head: head, payload: data.slice(newline + 1) };
  }

  function WS4Redis(options) {
    if (!(this instanceof WS4Redis)) {
      return new WS4Redis(options);
    }
    if (!options || !options.uri) {
      throw new Error("WS4Redis: no websocket URI in options");
    }
    var opts = {};
    var name;
    for (name in DEFAULTS) {
      opts[name] = options[name] === undefined ? DEFAULTS[name] : options[name];
    }
    var WebSocketClass = opts.WebSocket || root.WebSocket;
    var self = this;
    var ws = null;
    var attempts = 0;
    var reconnectTimer = null;
    var heartbeatTimer = null;
    var missedHeartbeats = 0;
    var closedForGood = false;
    var positions = {};
    var presence = {};
    var tagged = opts.recover || opts.presence;

    function notify(callback) {
      if (typeof opts[callback] === "function") {
        return opts[callback].apply(self, Array.prototype.slice.call(arguments, 1));
      }
    }

    function connect() {
      reconnectTimer = null;
      notify("connecting");
      try {
        var uri = opts.presence ? withFlag(opts.uri, "presence") : opts.uri;
        ws = new WebSocketClass(opts.recover ? withRecovery(uri, positions) : uri);
        if (tagged) {
          ws.binaryType = "arraybuffer";
        }
      } catch (error) {
        // e.g. a port the browser blocks; retrying with backoff is all we can do
        ws = null;
        notify("disconnected", { code: 1006, reason: String(error), wasClean: false });
        scheduleReconnect();
        return;
      }
      ws.onopen = onOpen;
      ws.onmessage = onMessage;
      ws.onclose = onClose;
      ws.onerror = null; // a close event always follows an error event
    }

    function onOpen() {
      attempts = 0;
      startHeartbeat();
      notify("connected");
    }

    function onMessage(event) {
      missedHeartbeats = 0; // whatever the server sends shows that the connection is alive
      if (opts.heartbeat_msg !== null && event.data === opts.heartbeat_msg) {
        return;
      }
      if (tagged) {
        onTagged(event.data);
        return;
      }
      notify("receive_message", event.data);
    }

    function onTagged(data) {
      if (typeof data === "string" && data.indexOf(PRESENCE_HEAD) === 0) {
        onPresence(data);
        return;
      }
      if (typeof data === "string" && data.indexOf("!resync ") === 0) {
        var channel = data.slice(8);
        if (channel === "*") {
          positions = {};
        } else {
          delete positions[channel];
        }
        notify("resync", channel);
        return;
      }
      var tagged = splitTagged(data);
      if (tagged === null) {
        notify("receive_message", data, { label: null, position: null });
        return;
      }
      // The position is the head's last word: it never holds a space, and the server encodes
      // the spaces of group names in labels ("group:my%20team").
      var space = tagged.head.lastIndexOf(" ");
      var label = tagged.head.slice(0, space);
      var position = tagged.head.slice(space + 1);
      if (position !== "-") {
        positions[label] = position;
      }
      notify("receive_message", tagged.payload, { label: label, position: position });
    }

    function onPresence(data) {
      var newline = data.indexOf("\n");
      var label = data.slice(PRESENCE_HEAD.length, newline < 0 ? data.length : newline);
      var event;
      try {
        event = JSON.parse(data.slice(newline + 1));
      } catch (error) {
        return; // not from our server: ignored
      }
      var list = presence[label] || (presence[label] = new PresenceList());
      var changed = true;
      if (event.users) {
        list.reset(event);
      } else {
        changed = list.apply(event.joined, true);
        changed = list.apply(event.updated, true) || changed;
        changed = list.apply(event.left, false) || changed;
      }
      if (changed) {
        notify("presence_changed", label, list.list());
      }
    }

    function onClose(event) {
      detach();
      disconnected(event);
    }

    function disconnected(event) {
      stopHeartbeat();
      notify("disconnected", event);
      if (!closedForGood) {
        scheduleReconnect();
      }
    }

    function detach() {
      // Events of a socket we gave up on must not reach the next one.
      if (ws !== null) {
        ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      }
    }

    function scheduleReconnect() {
      if (reconnectTimer !== null || closedForGood) {
        return;
      }
      attempts += 1;
      var delay = backoff(attempts);
      notify("reconnecting", delay, attempts);
      reconnectTimer = setTimeout(connect, delay);
    }

    function backoff(attempt) {
      // Exponential backoff with jitter, so that clients dropped together by a restarting
      // server do not all come back at the same moment.
      var ceiling = Math.min(opts.max_reconnect_delay,
                             opts.reconnect_delay * Math.pow(2, attempt - 1));
      return ceiling / 2 + Math.random() * ceiling / 2;
    }

    function startHeartbeat() {
      stopHeartbeat();
      missedHeartbeats = 0;
      if (opts.heartbeat_msg !== null && opts.heartbeat_msg !== undefined) {
        heartbeatTimer = setTimeout(sendHeartbeat, opts.heartbeat_interval);
      }
    }

    function stopHeartbeat() {
      if (heartbeatTimer !== null) {
        clearTimeout(heartbeatTimer);
        heartbeatTimer = null;
      }
    }

    function sendHeartbeat() {
      heartbeatTimer = null;
      if (missedHeartbeats >= opts.max_missed_heartbeats) {
        // A dead connection (a sleeping laptop, a lost network) can take the browser minutes
        // to notice: give up on it now and connect again.
        var dead = ws;
        detach();
        ws = null;
        try {
          dead.close(1000, "missed heartbeats");
        } catch (error) { /* closing a broken socket may throw; it is gone either way */ }
        disconnected({ code: 1006, reason: "missed heartbeats", wasClean: false });
        return;
      }
      missedHeartbeats += 1;
      try {
        ws.send(opts.heartbeat_msg);
      } catch (error) { /* counted as missed */ }
      heartbeatTimer = setTimeout(sendHeartbeat, opts.heartbeat_interval);
    }

    this.send_message = function (message) {
      if (ws === null || ws.readyState !== OPEN) {
        return false;
      }
      ws.send(message);
      return true;
    };

    /** The last position seen on each channel (recovery mode), as {label: position}. */
    this.get_positions = function () {
      var copy = {};
      for (var label in positions) {
        if (Object.prototype.hasOwnProperty.call(positions, label)) copy[label] = positions[label];
      }
      return copy;
    };

    /** The users present on a channel (presence mode): [{name, anonymous, connections}]. */
    this.get_presence = function (label) {
      return presence[label] ? presence[label].list() : [];
    };

    this.get_state = function () {
      return ws === null ? CLOSED : ws.readyState;
    };

    this.close = function () {
      closedForGood = true;
      stopHeartbeat();
      if (reconnectTimer !== null) {
        clearTimeout(reconnectTimer);
        reconnectTimer = null;
      }
      if (ws !== null && ws.readyState <= OPEN) {
        ws.close(1000);
      }
    };

    connect();
  }

  WS4Redis.CONNECTING = CONNECTING;
  WS4Redis.OPEN = OPEN;
  WS4Redis.CLOSING = 2;
  WS4Redis.CLOSED = CLOSED;
  return WS4Redis;
});
