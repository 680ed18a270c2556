// The demo's chat page: one websocket (ws4redis.js) for the four audiences.
(function () {
  "use strict";

  var config = window.DEMO_CHAT;
  var seen = new Set(); // message ids: the stored last messages come again after a reconnect
  var stateBadge = document.getElementById("ws-state");
  var errorLine = document.getElementById("error");

  function setState(state, detail) {
    stateBadge.dataset.state = state;
    stateBadge.textContent = detail ? state + " " + detail : state;
  }

  function showError(text) {
    errorLine.textContent = text;
    errorLine.hidden = !text;
  }

  function parse(data) {
    try {
      var message = JSON.parse(data);
      if (message && typeof message === "object" && message.kind) {
        return message;
      }
    } catch (error) { /* not JSON: someone published plain text */ }
    return { kind: "broadcast", text: String(data) };
  }

  function show(message) {
    if (message.id) {
      if (seen.has(message.id)) {
        return;
      }
      seen.add(message.id);
    }
    var list = document.querySelector("#panel-" + message.kind + " .messages");
    if (!list) {
      return;
    }
    var item = document.createElement("li");
    var meta = document.createElement("span");
    meta.className = "meta";
    var when = message.at ? new Date(message.at).toLocaleTimeString() : "";
    var who = message.from ? message.from + (message.to ? " → " + message.to : "") : "";
    meta.textContent = [when, who].filter(Boolean).join(" · ");
    var text = document.createElement("span");
    text.className = "text";
    text.textContent = message.text;
    item.append(meta, text);
    list.append(item);
    list.scrollTop = list.scrollHeight;
  }

  function newId() {
    if (window.crypto && window.crypto.randomUUID) {
      return window.crypto.randomUUID().replace(/-/g, "");
    }
    return Date.now().toString(16) + Math.random().toString(16).slice(2);
  }

  function showOnline(users) {
    var list = document.querySelector("#panel-online .online");
    list.replaceChildren();
    users.forEach(function (user) {
      var item = document.createElement("li");
      item.textContent = user.anonymous ? "a visitor" : user.name;
      if (user.connections > 1) {
        var tabs = document.createElement("small");
        tabs.textContent = " (" + user.connections + " tabs)";
        item.append(tabs);
      }
      list.append(item);
    });
  }

  var client = WS4Redis({
    uri: config.uri,
    presence: config.presence,
    presence_changed: function (label, users) {
      if (label === "broadcast") showOnline(users);
    },
    heartbeat_msg: config.heartbeat,
    connecting: function () { setState("connecting"); },
    connected: function () { setState("connected"); showError(""); },
    reconnecting: function (delay) {
      setState("reconnecting", "in " + (delay / 1000).toFixed(1) + " s");
    },
    receive_message: function (data) { show(parse(data)); } // (data, {label}) with presence
  });

  var roomForm = document.getElementById("room-form");
  if (roomForm) {
    roomForm.addEventListener("submit", function (event) {
      event.preventDefault();
      var input = roomForm.elements.text;
      var message = {
        id: newId(), kind: "broadcast", from: config.user, to: "everyone",
        text: input.value, at: new Date().toISOString()
      };
      if (client.send_message(JSON.stringify(message))) {
        input.value = "";
        showError("");
      } else {
        showError("Not connected: try again in a moment.");
      }
    });
  }

  document.querySelectorAll("form[data-fetch]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      fetch(form.action, {
        method: "POST", body: new FormData(form), credentials: "same-origin",
        headers: { Accept: "application/json" }
      }).then(function (response) {
        return response.json().then(function (data) {
          if (!response.ok) {
            throw new Error(data.error || response.statusText);
          }
          form.elements.text.value = "";
          showError("");
        });
      }).catch(function (error) { showError("Not sent: " + error.message); });
    });
  });
})();
