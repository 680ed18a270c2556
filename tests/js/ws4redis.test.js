// Unit tests of ws4redis.js with Node's test runner: a fake WebSocket class, fake timers.
"use strict";

const assert = require("node:assert/strict");
const { execFileSync } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");
const { pathToFileURL } = require("node:url");
const { beforeEach, describe, test } = require("node:test");
const vm = require("node:vm");

const STATIC = path.join(__dirname, "..", "..", "ws4redis_gevent", "static", "ws4redis_gevent");
const WS4Redis = require(path.join(STATIC, "ws4redis.js"));
const URI = "ws://example.test/ws/foobar?subscribe-broadcast&publish-broadcast";
const HEARTBEAT = "--heartbeat--";

class FakeWebSocket {
  static instances = [];

  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    this.closeCalls = [];
    FakeWebSocket.instances.push(this);
  }

  send(data) {
    if (this.readyState !== 1) throw new Error("InvalidStateError");
    this.sent.push(data);
  }

  close(code, reason) {
    this.closeCalls.push([code, reason]);
    this.readyState = 2;
  }

  // What the server (or the network) does:
  open() {
    this.readyState = 1;
    if (this.onopen) this.onopen({ type: "open" });
  }

  receive(data) {
    if (this.onmessage) this.onmessage({ type: "message", data });
  }

  closed(code = 1006, reason = "") {
    this.readyState = 3;
    if (this.onclose) this.onclose({ type: "close", code, reason, wasClean: code !== 1006 });
  }

  static get last() {
    return FakeWebSocket.instances[FakeWebSocket.instances.length - 1];
  }
}

// A client whose callbacks record what happened, in order.
function makeClient(options = {}) {
  const events = [];
  const client = WS4Redis({
    uri: URI,
    WebSocket: FakeWebSocket,
    connecting: () => events.push("connecting"),
    connected: () => events.push("connected"),
    receive_message: (data) => events.push(["message", data]),
    disconnected: (event) => events.push(["disconnected", event.code, event.reason]),
    reconnecting: (delay, attempt) => events.push(["reconnecting", delay, attempt]),
    ...options,
  });
  return { client, events };
}

function useFakeTime(t, random = 0.5) {
  t.mock.timers.enable({ apis: ["setTimeout", "setInterval"] });
  t.mock.method(Math, "random", () => random);
}

beforeEach(() => {
  FakeWebSocket.instances = [];
});

describe("connecting", () => {
  test("opens the URI and reports connecting, then connected", (t) => {
    useFakeTime(t);
    const { client, events } = makeClient();
    assert.equal(FakeWebSocket.instances.length, 1);
    assert.equal(FakeWebSocket.last.url, URI);
    assert.deepEqual(events, ["connecting"]);
    assert.equal(client.get_state(), WS4Redis.CONNECTING);
    FakeWebSocket.last.open();
    assert.deepEqual(events, ["connecting", "connected"]);
    assert.equal(client.get_state(), WS4Redis.OPEN);
  });

  test("works with and without new, and refuses options without a URI", () => {
    assert.ok(new WS4Redis({ uri: URI, WebSocket: FakeWebSocket }) instanceof WS4Redis);
    assert.ok(WS4Redis({ uri: URI, WebSocket: FakeWebSocket }) instanceof WS4Redis);
    assert.throws(() => WS4Redis({}), /no websocket URI/);
    assert.throws(() => WS4Redis(), /no websocket URI/);
  });

  test("uses the global WebSocket class when none is given", () => {
    const saved = Object.getOwnPropertyDescriptor(globalThis, "WebSocket");
    globalThis.WebSocket = FakeWebSocket;
    try {
      WS4Redis({ uri: URI });
    } finally {
      if (saved) Object.defineProperty(globalThis, "WebSocket", saved);
      else delete globalThis.WebSocket;
    }
    assert.equal(FakeWebSocket.instances.length, 1);
  });
});

describe("messages", () => {
  test("passes messages to receive_message, but not heartbeats", (t) => {
    useFakeTime(t);
    const { events } = makeClient({ heartbeat_msg: HEARTBEAT });
    FakeWebSocket.last.open();
    FakeWebSocket.last.receive("Hello");
    FakeWebSocket.last.receive(HEARTBEAT);
    FakeWebSocket.last.receive("World");
    assert.deepEqual(events.slice(2), [["message", "Hello"], ["message", "World"]]);
  });

  test("without heartbeat_msg, a message equal to a heartbeat is an ordinary message", (t) => {
    useFakeTime(t);
    const { events } = makeClient();
    FakeWebSocket.last.open();
    FakeWebSocket.last.receive(HEARTBEAT);
    assert.deepEqual(events.slice(2), [["message", HEARTBEAT]]);
  });

  test("send_message sends when open and returns false otherwise", (t) => {
    useFakeTime(t);
    const { client } = makeClient();
    assert.equal(client.send_message("too early"), false);
    FakeWebSocket.last.open();
    assert.equal(client.send_message("Hi"), true);
    assert.deepEqual(FakeWebSocket.last.sent, ["Hi"]);
    FakeWebSocket.last.closed(1006);
    assert.equal(client.send_message("too late"), false);
  });
});

describe("heartbeat", () => {
  test("sends heartbeat_msg every heartbeat_interval while the server answers", (t) => {
    useFakeTime(t);
    const { events } = makeClient({ heartbeat_msg: HEARTBEAT, heartbeat_interval: 5000 });
    const socket = FakeWebSocket.last;
    socket.open();
    t.mock.timers.tick(4999);
    assert.deepEqual(socket.sent, []);
    for (let i = 1; i <= 10; i++) {
      t.mock.timers.tick(i === 1 ? 1 : 5000);
      assert.equal(socket.sent.length, i);
      socket.receive(HEARTBEAT);
    }
    assert.ok(socket.sent.every((m) => m === HEARTBEAT));
    assert.deepEqual(socket.closeCalls, []);
    assert.ok(!events.some((e) => e[0] === "disconnected"));
  });

  test("after 3 unanswered heartbeats, drops the connection and reconnects", (t) => {
    useFakeTime(t, 0.5);
    const { client, events } = makeClient({ heartbeat_msg: HEARTBEAT, heartbeat_interval: 5000 });
    const socket = FakeWebSocket.last;
    socket.open();
    // One tick per timer: Node 20's fake timers do not run timers set during a tick.
    for (let i = 0; i < 3; i++) t.mock.timers.tick(5000);
    assert.equal(socket.sent.length, 3);
    assert.deepEqual(socket.closeCalls, []);
    t.mock.timers.tick(5000);
    assert.equal(socket.sent.length, 3);
    assert.deepEqual(socket.closeCalls, [[1000, "missed heartbeats"]]);
    assert.deepEqual(events.slice(2), [
      ["disconnected", 1006, "missed heartbeats"],
      ["reconnecting", 750, 1],
    ]);
    // A late close event of the dropped socket changes nothing.
    socket.closed(1006);
    assert.equal(events.length, 4);
    t.mock.timers.tick(750);
    assert.equal(FakeWebSocket.instances.length, 2);
    FakeWebSocket.last.open();
    assert.equal(client.get_state(), WS4Redis.OPEN);
    // The new connection has a heartbeat of its own; the old socket gets nothing more.
    t.mock.timers.tick(5000);
    assert.deepEqual(FakeWebSocket.last.sent, [HEARTBEAT]);
    assert.equal(socket.sent.length, 3);
  });

  test("any message from the server counts as an answer", (t) => {
    useFakeTime(t);
    makeClient({ heartbeat_msg: HEARTBEAT, heartbeat_interval: 1000 });
    const socket = FakeWebSocket.last;
    socket.open();
    for (let i = 0; i < 10; i++) {
      t.mock.timers.tick(1000);
      socket.receive("news");
    }
    assert.deepEqual(socket.closeCalls, []);
    assert.equal(FakeWebSocket.instances.length, 1);
  });

  test("sends no heartbeat without heartbeat_msg", (t) => {
    useFakeTime(t);
    makeClient();
    FakeWebSocket.last.open();
    t.mock.timers.tick(60000);
    assert.deepEqual(FakeWebSocket.last.sent, []);
    assert.deepEqual(FakeWebSocket.last.closeCalls, []);
  });
});

describe("reconnecting", () => {
  test("backs off exponentially up to max_reconnect_delay", (t) => {
    useFakeTime(t, 0.999999);
    const { events } = makeClient({ reconnect_delay: 1000, max_reconnect_delay: 10000 });
    const delays = [];
    for (let attempt = 1; attempt <= 7; attempt++) {
      FakeWebSocket.last.closed(1006);
      const [kind, delay, number] = events[events.length - 1];
      assert.equal(kind, "reconnecting");
      assert.equal(number, attempt);
      delays.push(Math.round(delay));
      t.mock.timers.tick(delay - 1);
      assert.equal(FakeWebSocket.instances.length, attempt);
      t.mock.timers.tick(1);
      assert.equal(FakeWebSocket.instances.length, attempt + 1);
    }
    assert.deepEqual(delays, [1000, 2000, 4000, 8000, 10000, 10000, 10000]);
  });

  test("jitter spreads each delay between half of its ceiling and all of it", (t) => {
    useFakeTime(t, 0);
    const low = makeClient({ reconnect_delay: 1000 });
    FakeWebSocket.last.closed(1006);
    FakeWebSocket.last.onclose = null;
    t.mock.timers.tick(500);
    FakeWebSocket.last.closed(1006);
    assert.deepEqual(
      low.events.filter((e) => e[0] === "reconnecting"),
      [["reconnecting", 500, 1], ["reconnecting", 1000, 2]],
    );
  });

  test("a successful connection resets the backoff", (t) => {
    useFakeTime(t, 0.5);
    const { events } = makeClient({ reconnect_delay: 1000 });
    FakeWebSocket.last.closed(1006);
    t.mock.timers.tick(750);
    FakeWebSocket.last.closed(1006);
    t.mock.timers.tick(1500);
    FakeWebSocket.last.open();
    FakeWebSocket.last.closed(1012, "server restarting");
    const reconnects = events.filter((e) => e[0] === "reconnecting");
    assert.deepEqual(reconnects, [
      ["reconnecting", 750, 1], ["reconnecting", 1500, 2], ["reconnecting", 750, 1],
    ]);
    assert.ok(events.some((e) => e[0] === "disconnected" && e[1] === 1012));
  });

  test("a WebSocket constructor that throws is retried", (t) => {
    useFakeTime(t, 0.5);
    let calls = 0;
    class Refusing extends FakeWebSocket {
      constructor(url) {
        calls += 1;
        if (calls === 1) throw new Error("SecurityError");
        super(url);
      }
    }
    const { events } = makeClient({ WebSocket: Refusing });
    assert.deepEqual(events[1][0], "disconnected");
    t.mock.timers.tick(750);
    FakeWebSocket.last.open();
    assert.equal(events[events.length - 1], "connected");
  });
});

describe("close", () => {
  test("closes for good: no reconnection, no heartbeat", (t) => {
    useFakeTime(t);
    const { client, events } = makeClient({ heartbeat_msg: HEARTBEAT });
    const socket = FakeWebSocket.last;
    socket.open();
    client.close();
    assert.deepEqual(socket.closeCalls, [[1000, undefined]]);
    socket.closed(1000);
    assert.deepEqual(events.slice(2), [["disconnected", 1000, ""]]);
    t.mock.timers.tick(120000);
    assert.equal(FakeWebSocket.instances.length, 1);
    assert.deepEqual(socket.sent, []);
  });

  test("close() during a reconnection delay cancels it", (t) => {
    useFakeTime(t);
    const { client } = makeClient();
    FakeWebSocket.last.closed(1006);
    client.close();
    t.mock.timers.tick(120000);
    assert.equal(FakeWebSocket.instances.length, 1);
    assert.equal(client.get_state(), WS4Redis.CLOSED);
  });
});

describe("module formats", () => {
  test("as a plain <script>, it defines the global WS4Redis", () => {
    const source = fs.readFileSync(path.join(STATIC, "ws4redis.js"), "utf8");
    const window = { WebSocket: FakeWebSocket };
    window.globalThis = window;
    vm.runInNewContext(source, window, { filename: "ws4redis.js" });
    assert.equal(typeof window.WS4Redis, "function");
    const client = window.WS4Redis({ uri: URI });
    assert.equal(FakeWebSocket.last.url, URI);
    assert.equal(typeof client.send_message, "function");
  });

  test("as an ES module, ws4redis.mjs exports WS4Redis", () => {
    // --experimental-default-type=module loads ws4redis.js the way a browser's
    // <script type="module"> does: as an ES module, without CommonJS' `module`.
    const mjs = pathToFileURL(path.join(STATIC, "ws4redis.mjs")).href;
    const code = `import WS4Redis, { WS4Redis as named } from ${JSON.stringify(mjs)};
      if (typeof WS4Redis !== "function" || named !== WS4Redis) process.exit(3);
      console.log(typeof WS4Redis.OPEN);`;
    const output = execFileSync(process.execPath, [
      "--experimental-default-type=module", "--no-warnings", "--input-type=module", "-e", code,
    ], { encoding: "utf8" });
    assert.equal(output.trim(), "number");
  });

  test("as an ES module, it parses group labels with spaces too", () => {
    const mjs = pathToFileURL(path.join(STATIC, "ws4redis.mjs")).href;
    const code = `import WS4Redis from ${JSON.stringify(mjs)};
      let socket = null;
      class FakeWebSocket { constructor(url) { socket = this; } send() {} close() {} }
      const seen = [];
      WS4Redis({ uri: "ws://x/ws/f?subscribe-group", recover: true, WebSocket: FakeWebSocket,
                 receive_message: (data, meta) => seen.push([data, meta.label, meta.position]) });
      socket.onopen();
      socket.onmessage({ data: "group:my team e1:2-0\\nhi there" });
      socket.onmessage({ data: "group:my%20team e1:3-0\\nagain" });
      console.log(JSON.stringify(seen));`;
    const output = execFileSync(process.execPath, [
      "--experimental-default-type=module", "--no-warnings", "--input-type=module", "-e", code,
    ], { encoding: "utf8" });
    assert.deepEqual(JSON.parse(output), [
      ["hi there", "group:my team", "e1:2-0"],
      ["again", "group:my%20team", "e1:3-0"],
    ]);
  });
});

describe("recovery", () => {
  function recoveringClient(t) {
    useFakeTime(t);
    const received = [];
    const resyncs = [];
    const { client, events } = makeClient({
      recover: true,
      receive_message: (data, meta) => received.push([data, meta]),
      resync: (label) => resyncs.push(label),
    });
    return { client, events, received, resyncs };
  }

  test("asks for recovery and passes payloads with their label and position", (t) => {
    const { client, received } = recoveringClient(t);
    assert.equal(FakeWebSocket.last.url, URI + "&recover");
    FakeWebSocket.last.open();
    FakeWebSocket.last.receive("broadcast e1:100-0\nhello");
    FakeWebSocket.last.receive("group:chatters e2:7-1\nline one\nline two");
    assert.deepEqual(received, [
      ["hello", { label: "broadcast", position: "e1:100-0" }],
      ["line one\nline two", { label: "group:chatters", position: "e2:7-1" }],
    ]);
    assert.deepEqual(client.get_positions(), { broadcast: "e1:100-0", "group:chatters": "e2:7-1" });
  });

  test("reconnects from the last position of each channel", (t) => {
    recoveringClient(t);
    FakeWebSocket.last.open();
    FakeWebSocket.last.receive("broadcast e1:100-0\na");
    FakeWebSocket.last.receive("broadcast e1:101-0\nb");
    FakeWebSocket.last.receive("user -\nno position");
    FakeWebSocket.last.closed(1006);
    t.mock.timers.tick(30000);
    assert.equal(FakeWebSocket.instances.length, 2);
    assert.equal(
      FakeWebSocket.last.url,
      URI + "&recover&since=" + encodeURIComponent("broadcast@e1:101-0"),
    );
  });

  test("a resync forgets the position and tells the page", (t) => {
    const { client, resyncs } = recoveringClient(t);
    FakeWebSocket.last.open();
    FakeWebSocket.last.receive("broadcast e1:100-0\na");
    FakeWebSocket.last.receive("user e1:5-0\nb");
    FakeWebSocket.last.receive("!resync broadcast");
    assert.deepEqual(client.get_positions(), { user: "e1:5-0" });
    FakeWebSocket.last.receive("!resync *");
    assert.deepEqual(client.get_positions(), {});
    assert.deepEqual(resyncs, ["broadcast", "*"]);
  });

  test("group labels with spaces: the server encodes them, positions and since follow", (t) => {
    const { client, received, resyncs } = recoveringClient(t);
    FakeWebSocket.last.open();
    FakeWebSocket.last.receive("group:my%20team e2:7-1\nhello world\nsecond line");
    assert.deepEqual(received, [
      ["hello world\nsecond line", { label: "group:my%20team", position: "e2:7-1" }],
    ]);
    assert.equal(decodeURIComponent(received[0][1].label.slice(6)), "my team");
    FakeWebSocket.last.closed(1006);
    t.mock.timers.tick(30000);
    assert.equal(
      FakeWebSocket.last.url,
      URI + "&recover&since=" + encodeURIComponent("group:my%20team@e2:7-1"),
    );
    FakeWebSocket.last.open();
    FakeWebSocket.last.receive("!resync group:my%20team");
    assert.deepEqual(client.get_positions(), {});
    assert.deepEqual(resyncs, ["group:my%20team"]);
  });

  test("the position is the head's last word, whatever spaces the label holds", (t) => {
    // A server that does not encode labels (before 2026-12) sent "group:my team POSITION".
    const { client, received } = recoveringClient(t);
    FakeWebSocket.last.open();
    FakeWebSocket.last.receive("group:my team e2:8-0\npayload with spaces");
    assert.deepEqual(received, [
      ["payload with spaces", { label: "group:my team", position: "e2:8-0" }],
    ]);
    assert.deepEqual(client.get_positions(), { "group:my team": "e2:8-0" });
    const frame = new Uint8Array([...Buffer.from("group:a b c e3:1-0\n"), 0xff, 0x20]);
    FakeWebSocket.last.receive(frame.buffer);
    assert.deepEqual(received[1][1], { label: "group:a b c", position: "e3:1-0" });
    assert.deepEqual([...new Uint8Array(received[1][0])], [0xff, 0x20]);
  });

  test("binary payloads keep their bytes after the header", (t) => {
    const { received } = recoveringClient(t);
    FakeWebSocket.last.open();
    assert.equal(FakeWebSocket.last.binaryType, "arraybuffer");
    const frame = new Uint8Array([...Buffer.from("broadcast e1:9-0\n"), 0xff, 0x00, 0x01]);
    FakeWebSocket.last.receive(frame.buffer);
    const [payload, meta] = received[0];
    assert.deepEqual([...new Uint8Array(payload)], [0xff, 0x00, 0x01]);
    assert.deepEqual(meta, { label: "broadcast", position: "e1:9-0" });
  });
});

describe("presence", () => {
  function presenceClient(t, options = {}) {
    useFakeTime(t);
    const received = [];
    const lists = [];
    const { client } = makeClient({
      presence: true,
      receive_message: (data, meta) => received.push([data, meta]),
      presence_changed: (label, users) => lists.push([label, users.map((u) => u.name)]),
      ...options,
    });
    FakeWebSocket.last.open();
    return { client, received, lists };
  }

  const snapshot = (users, v) =>
    "!presence broadcast\n" + JSON.stringify({ users, v });
  const event = (joined, left, updated = []) =>
    "!presence broadcast\n" + JSON.stringify({ joined, left, updated });
  const user = (name, v, anonymous = false) => ({ name, anonymous, v });

  test("asks with the presence flag, and reads tagged messages", (t) => {
    const { received } = presenceClient(t);
    assert.equal(FakeWebSocket.last.url, URI + "&presence");
    assert.equal(FakeWebSocket.last.binaryType, "arraybuffer");
    FakeWebSocket.last.receive("broadcast -\nhello");
    assert.deepEqual(received, [["hello", { label: "broadcast", position: "-" }]]);
  });

  test("the flag goes after ? when the URI has no query", (t) => {
    useFakeTime(t);
    WS4Redis({ uri: "ws://example.test/ws/chat", WebSocket: FakeWebSocket, presence: true });
    assert.equal(FakeWebSocket.last.url, "ws://example.test/ws/chat?presence");
  });

  test("keeps the list, applies newer joins and leaves, reports changes", (t) => {
    const { client, lists, received } = presenceClient(t);
    FakeWebSocket.last.receive(
      snapshot([{ name: "john", anonymous: false, connections: 2 }], 100),
    );
    FakeWebSocket.last.receive(event([user("mary", 101)], [user("john", 102)]));
    assert.deepEqual(client.get_presence("broadcast"), [
      { name: "mary", anonymous: false, connections: 1 },
    ]);
    assert.deepEqual(lists, [["broadcast", ["john"]], ["broadcast", ["mary"]]]);
    assert.deepEqual(received, []); // presence frames are not messages
    assert.deepEqual(client.get_presence("group:x"), []);
  });

  test("events older than what is known are ignored, in any order", (t) => {
    const { client, lists } = presenceClient(t);
    FakeWebSocket.last.receive(snapshot([{ name: "john", anonymous: false, connections: 1 }], 50));
    FakeWebSocket.last.receive(event([], [user("john", 40)])); // before the list was read
    FakeWebSocket.last.receive(event([], [user("ann", 60)]));
    FakeWebSocket.last.receive(event([user("ann", 55)], [])); // arrived late from elsewhere
    assert.deepEqual(client.get_presence("broadcast").map((u) => u.name), ["john"]);
    assert.equal(lists.length, 1);
  });

  test("updated counts of connections are applied", (t) => {
    const { client, lists } = presenceClient(t);
    FakeWebSocket.last.receive(event([user("john", 5)], []));
    FakeWebSocket.last.receive(event([], [], [{ ...user("john", 6), connections: 3 }]));
    assert.deepEqual(client.get_presence("broadcast"), [
      { name: "john", anonymous: false, connections: 3 },
    ]);
    assert.equal(lists.length, 2);
  });

  test("anonymous visitors come after users; a malformed frame is ignored", (t) => {
    const { client } = presenceClient(t);
    FakeWebSocket.last.receive(event([user("3fa2", 5, true), user("zoe", 6)], []));
    FakeWebSocket.last.receive("!presence broadcast\nnot json");
    assert.deepEqual(client.get_presence("broadcast"), [
      { name: "zoe", anonymous: false, connections: 1 },
      { name: "3fa2", anonymous: true, connections: 1 },
    ]);
  });
});
