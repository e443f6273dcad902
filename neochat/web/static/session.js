// One NeoChat session over the WebSocket gateway: the JSON dialect, one
// object per message.  It logs in with acks, acknowledges every message it
// hands on, drops messages it has already seen (by id), and keeps what the
// user sent in an outbox, resent with the same client_id after a reconnect
// until the server's receipt, so nothing is lost or doubled.  In-band files
// offered to it arrive as binary messages (incoming.js).
import { IncomingFiles } from "./incoming.js";

const MAX_SEEN = 20000; // remembered message ids, oldest forgotten first
const MAX_OUTBOX = 1000;
const BACKOFF_FIRST = 500, BACKOFF_MAX = 30000; // ms
const KEEPALIVE = 240000; // ms between pings: the server closes a socket idle for idle_timeout (600 s)

export class Session extends EventTarget {
  constructor(url) {
    super();
    this.url = url;
    this.account = null;
    this.token = null; // for /files, from web_token
    this.outbox = []; // {client_id, frame} awaiting the server's receipt
    this.seen = new Set();
    this.waiting = new Map(); // message_type -> [resolve] in request order
    this.socket = null;
    this.credentials = null;
    this.backoff = BACKOFF_FIRST;
    this.stopped = true;
    this.counter = 0;
    this.incoming = new IncomingFiles(this);
    setInterval(() => { if (!this.stopped) this.sendFrame({ message_type: "ping" }); }, KEEPALIVE);
  }

  emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }

  // -- connecting -------------------------------------------------------

  open() {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(this.url);
      this.socket = socket;
      socket.binaryType = "arraybuffer";
      socket.onopen = () => resolve();
      socket.onmessage = (event) => {
        if (typeof event.data === "string") this.received(JSON.parse(event.data));
        else this.incoming.bytes(event.data);
      };
      socket.onclose = () => {
        if (this.socket !== socket) return;
        this.socket = null;
        this.incoming.lost();
        for (const queue of this.waiting.values()) queue.splice(0).forEach((done) => done(null));
        reject(new Error("cannot reach the server"));
        this.emit("status", { online: false });
        if (!this.stopped) this.retryLater();
      };
    });
  }

  async register(account, password) {
    await this.ensureOpen();
    return this.request({ message_type: "register", username: account, password });
  }

  async login(account, password) {
    await this.ensureOpen();
    const reply = await this.request({ message_type: "login", username: account, password, acks: true });
    if (reply && reply.content === "success") {
      this.account = account;
      this.credentials = { account, password };
      this.stopped = false;
      this.backoff = BACKOFF_FIRST;
      await this.afterLogin();
    }
    return reply;
  }

  async ensureOpen() {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN) await this.open();
  }

  async afterLogin() {
    const token = await this.request({ message_type: "web_token" });
    if (token && token.token) this.token = token.token;
    for (const item of this.outbox) this.transmit(item);
    this.emit("status", { online: true });
  }

  retryLater() {
    const delay = this.backoff * (0.5 + Math.random() / 2);
    this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX);
    setTimeout(() => this.reconnect(), delay);
  }

  async reconnect() {
    if (this.stopped || this.socket) return;
    try {
      await this.open();
    } catch (error) {
      return; // onclose schedules the next try
    }
    const { account, password } = this.credentials;
    const reply = await this.request({ message_type: "login", username: account, password, acks: true });
    if (reply && reply.content === "success") {
      this.backoff = BACKOFF_FIRST;
      await this.afterLogin();
      this.emit("reconnected", {});
    } else if (reply) {
      this.stop(reply.reason || "login refused");
    }
  }

  stop(reason) {
    this.stopped = true;
    this.emit("stopped", { reason });
    if (this.socket) this.socket.close();
  }

  logout() {
    this.sendFrame({ message_type: "leave_message", username: this.account });
    this.outbox = [];
    this.stop("logged out");
  }

  // -- requests and replies ---------------------------------------------

  sendFrame(frame) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  // Replies come in request order, so each waits in a queue per message_type.
  request(frame) {
    return new Promise((resolve) => {
      const queue = this.waiting.get(frame.message_type) || [];
      queue.push(resolve);
      this.waiting.set(frame.message_type, queue);
      if (!this.sendFrame(frame)) {
        queue.splice(queue.indexOf(resolve), 1);
        resolve(null);
      }
    });
  }

  op(message_type, fields = {}) { return this.request({ message_type, ...fields }); }

  static isReply(message) {
    return (message.content === "success" || message.content === "fail") && !("send_user" in message);
  }

  received(message) {
    const type = message.message_type;
    if (type === "file-data") return this.incoming.header(message);
    if (type === "file" && message.content === "fail" && this.incoming.failed(message)) return;
    if (Session.isReply(message)) {
      const queue = this.waiting.get(type) || this.waiting.get("error");
      if (queue && queue.length) queue.shift()(message);
      else if (message.content === "fail") this.emit("error", message);
      return;
    }
    if (type === "error") {
      this.emit("error", message);
      return;
    }
    if (typeof message.id === "number") {
      this.sendFrame({ message_type: "ack", id: [message.id] });
      if (this.seen.has(message.id)) return;
      this.remember(message.id);
    }
    if (type === "kicked") this.stop(message.reason || "logged in elsewhere");
    this.emit("message", message);
  }

  remember(id) {
    this.seen.add(id);
    if (this.seen.size > MAX_SEEN) this.seen.delete(this.seen.values().next().value);
  }

  // -- sending messages ---------------------------------------------------

  // A private message (chat_type "private") or one to a group or the lobby
  // ("normal").  Returns its client_id and a promise of the receipt.
  send(chat_type, rece_user, content) {
    if (this.outbox.length >= MAX_OUTBOX) throw new Error("too many unsent messages");
    const client_id = `w${Date.now().toString(36)}-${(this.counter++).toString(36)}`;
    const frame = { message_type: "word", chat_type, send_user: this.account, rece_user, content, client_id };
    const item = { client_id, frame };
    const done = new Promise((resolve, reject) => { item.resolve = resolve; item.reject = reject; });
    this.outbox.push(item);
    this.transmit(item);
    return { client_id, done };
  }

  // Without a reply (the connection dropped) the item stays in the outbox
  // and goes again after the next login.
  async transmit(item) {
    const reply = await this.request(item.frame);
    if (reply === null || !this.outbox.includes(item)) return;
    this.outbox.splice(this.outbox.indexOf(item), 1);
    if (reply.content === "success") {
      this.remember(reply.id);
      item.resolve(reply);
    } else {
      item.reject(new Error(reply.reason || "not sent"));
    }
  }
}
