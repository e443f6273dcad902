// The NeoChat web client: login, contacts with presence, private, group and
// lobby chats with history, friends, groups by role, files with progress,
// and seed-000 in-band file offers to accept or reject.
import { Session } from "./session.js";
import { upload, fileLink, FILE_TAG } from "./files.js";

const $ = (id) => document.getElementById(id);
const HISTORY_PAGE = 30;
const LOBBY = "lobby";
const PHONE = matchMedia("(max-width: 640px)"); // style.css shows one pane at a time

const session = new Session(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
const state = {
  conversations: new Map(), // key ("u:NAME", "g:GROUP", "lobby") -> conversation
  online: new Set(), friends: new Set(), incoming: new Set(),
  groups: new Map(), // group_id -> my role
  current: null,
};

// -- helpers ------------------------------------------------------------------

function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children.filter((child) => child !== null));
  return node;
}

function showError(text, where = "chat-error") {
  $(where).textContent = text || "";
  if (text) setTimeout(() => { if ($(where).textContent === text) $(where).textContent = ""; }, 6000);
}

async function op(message_type, fields) {
  const reply = await session.op(message_type, fields);
  if (!reply) showError("not connected; try again in a moment");
  else if (reply.content !== "success") showError(reply.reason || `${message_type} failed`);
  return reply && reply.content === "success" ? reply : null;
}

function conversation(key) {
  if (!state.conversations.has(key)) {
    const [kind, name] = key === LOBBY ? [LOBBY, "Lobby"] : [key[0] === "u" ? "user" : "group", key.slice(2)];
    state.conversations.set(key, { key, kind, name, messages: new Map(), unread: 0, loaded: false });
  }
  return state.conversations.get(key);
}

function keyOf(word) {
  if (word.chat_type === "private") {
    return "u:" + (word.send_user === session.account ? word.rece_user : word.send_user);
  }
  return !word.rece_user || word.rece_user === "all" ? LOBBY : "g:" + word.rece_user;
}

function target(conv) {
  return conv.kind === "user" ? ["private", conv.name] : ["normal", conv.kind === LOBBY ? "" : conv.name];
}

// -- messages -----------------------------------------------------------------

function addMessage(key, message, live) {
  const conv = conversation(key);
  if (conv.messages.has(message.id)) return;
  conv.messages.set(message.id, message);
  if (live && message.author !== session.account && (conv.key !== state.current || document.hidden)) {
    conv.unread += 1;
  }
  render(conv.key === state.current);
}

function addWord(word, { live = true } = {}) {
  addMessage(keyOf(word), { id: word.id, author: word.send_user, content: word.content, time: word.time }, live);
}

// An in-band file offer (message_type "file"), shown in the private chat.
function addOffer(offer, { live = true } = {}) {
  addMessage(keyOf({ ...offer, chat_type: "private" }),
             { id: offer.id, author: offer.send_user, time: offer.time, offer, transfer: {} }, live);
}

async function acceptOffer(message) {
  const transfer = message.transfer;
  Object.assign(transfer, { receiving: true, percent: 0 });
  render(false);
  try {
    const blob = await session.incoming.accept(message.offer, (percent) => {
      transfer.percent = percent;
      const bar = document.querySelector(`#message-list li[data-id="${message.id}"] progress`);
      if (bar) bar.value = percent;
    });
    transfer.url = URL.createObjectURL(blob);
  } catch (error) {
    showError(error.message);
  } finally {
    transfer.receiving = false;
    render(false);
  }
}

function rejectOffer(message) {
  if (session.incoming.reject(message.offer)) message.transfer.rejected = true;
  else showError("not connected; try again in a moment");
  render(false);
}

function sendText(conv, content) {
  const [chat_type, rece_user] = target(conv);
  let sent;
  try {
    sent = session.send(chat_type, rece_user, content);
  } catch (error) {
    showError(error.message);
    return;
  }
  const local = { author: session.account, content, time: Date.now(), pending: true };
  conv.messages.set(sent.client_id, local);
  render(true);
  sent.done.then((receipt) => {
    conv.messages.delete(sent.client_id);
    conv.messages.set(receipt.id, { ...local, id: receipt.id, time: receipt.time, pending: false });
  }, (error) => {
    local.pending = false;
    local.failed = error.message;
    showError(error.message);
  }).finally(() => render(false));
}

async function loadHistory(conv) {
  const ids = [...conv.messages.keys()].filter((id) => typeof id === "number");
  const fields = { count: HISTORY_PAGE };
  if (conv.kind === "user") fields.with_user = conv.name;
  if (conv.kind === "group") fields.group_id = conv.name;
  if (ids.length) fields.before_id = Math.min(...ids);
  const reply = await op("get_old_message", fields);
  if (!reply) return;
  conv.loaded = true;
  for (const word of reply.messages) {
    if (word.message_type === "word") addWord(word, { live: false });
    else if (word.message_type === "file") addOffer(word, { live: false });
  }
  $("older-btn").hidden = reply.messages.length < HISTORY_PAGE;
  if (!reply.messages.length) render(false);
}

// -- rendering ----------------------------------------------------------------

function people() {
  const names = new Set([...state.friends, ...state.online, ...state.incoming]);
  for (const conv of state.conversations.values()) if (conv.kind === "user") names.add(conv.name);
  names.delete(session.account);
  return [...names].sort((a, b) => (state.online.has(b) - state.online.has(a)) || a.localeCompare(b));
}

function contactItem(key, label, dotClass, extraClass = "") {
  const conv = state.conversations.get(key);
  const item = el("li", { className: key === state.current ? "open" : "" },
    el("span", { className: `dot ${dotClass}` }),
    el("span", { className: `name ${extraClass}`, textContent: label }),
    el("span", { className: "badge", textContent: conv && conv.unread ? String(conv.unread) : "" }));
  item.dataset.key = key;
  item.onclick = () => openConversation(key);
  return item;
}

function renderContacts() {
  const items = [contactItem(LOBBY, "Lobby", "group")];
  for (const group of [...state.groups.keys()].sort()) items.push(contactItem("g:" + group, "# " + group, "group"));
  for (const name of people()) {
    items.push(contactItem("u:" + name, name, state.online.has(name) ? "online" : "",
                           state.friends.has(name) ? "friend" : ""));
  }
  $("contacts").replaceChildren(...items);
  $("requests").replaceChildren(...[...state.incoming].map((name) => el("li", {},
    el("span", { textContent: `${name} wants to be friends` }),
    el("button", { textContent: "Accept", onclick: () => answerFriend(name, "friend_accept") }),
    el("button", { textContent: "Reject", onclick: () => answerFriend(name, "friend_reject") }))));
  const unread = [...state.conversations.values()].reduce((sum, conv) => sum + conv.unread, 0);
  document.title = unread ? `(${unread}) NeoChat` : "NeoChat";
}

function messageItem(message) {
  const item = el("li", { className: [message.author === session.account ? "mine" : "",
    message.pending ? "pending" : "", message.failed ? "failed" : ""].join(" ") });
  if (message.id !== undefined) item.dataset.id = message.id;
  const time = new Date(message.time).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  item.append(el("span", { className: "meta",
    textContent: `${message.author} · ${message.pending ? "sending…" : message.failed || time}` }));
  if (message.offer) {
    item.classList.add("offer");
    item.append(...offerBody(message));
    return item;
  }
  let rest = message.content;
  for (const match of message.content.matchAll(FILE_TAG)) {
    const at = rest.indexOf(match[0]);
    item.append(rest.slice(0, at), fileLink(match[1], () => session.token));
    rest = rest.slice(at + match[0].length);
  }
  item.append(rest);
  return item;
}

function offerBody(message) {
  const { offer, transfer } = message;
  const size = offer.file_length < 1024 ? `${offer.file_length} B` : `${Math.ceil(offer.file_length / 1024)} KiB`;
  const body = [el("span", { className: "offer-name", textContent: `📦 ${offer.file_name} (${size})` })];
  if (offer.send_user === session.account) return body; // ours, sent by a seed-000 client
  const button = (text, action) => el("button", { textContent: text, onclick: () => action(message) });
  if (transfer.url) body.push(el("a", { className: "save", href: transfer.url, download: offer.file_name, textContent: "Save" }));
  else if (transfer.receiving) body.push(el("progress", { max: 100, value: transfer.percent }));
  else if (transfer.rejected) body.push(el("span", { className: "note", textContent: "rejected" }));
  else body.push(button("Accept", acceptOffer), button("Reject", rejectOffer));
  return body;
}

function renderMessages(stickToBottom) {
  const box = $("messages");
  const conv = state.conversations.get(state.current);
  if (!conv) return;
  const fromBottom = box.scrollHeight - box.scrollTop;
  const atBottom = fromBottom - box.clientHeight < 40;
  const ordered = [...conv.messages.values()].sort((a, b) =>
    (a.pending - b.pending) || ((a.id ?? Infinity) - (b.id ?? Infinity)) || (a.time - b.time));
  $("message-list").replaceChildren(...ordered.map(messageItem));
  if (stickToBottom || atBottom) box.scrollTop = box.scrollHeight;
  else box.scrollTop = box.scrollHeight - fromBottom;
}

function render(stickToBottom) {
  renderContacts();
  renderMessages(stickToBottom);
}

async function openConversation(key) {
  const conv = conversation(key);
  state.current = key;
  conv.unread = 0;
  $("chat-view").classList.add("in-chat");
  $("title").textContent = conv.kind === "group" ? `# ${conv.name}` : conv.name;
  $("members-btn").hidden = conv.kind !== "group";
  $("members").hidden = true;
  $("older-btn").hidden = true;
  render(true);
  if (!conv.loaded) await loadHistory(conv);
  $("text").focus();
}

// -- friends and groups ---------------------------------------------------------

async function refreshFriends() {
  const reply = await op("friend_list");
  if (!reply) return;
  state.friends = new Set(reply.friends);
  state.incoming = new Set(reply.incoming);
  for (const name of reply.online) state.online.add(name);
  renderContacts();
}

async function refreshGroups() {
  const reply = await op("group_list");
  if (!reply) return;
  state.groups = new Map(reply.groups.map((group) => [group.group_id, group.permissions]));
  renderContacts();
}

async function answerFriend(name, message_type) {
  if (await op(message_type, { friend: name })) await refreshFriends();
}

async function showMembers() {
  const conv = state.conversations.get(state.current);
  const reply = await op("group_info", { group_id: conv.name });
  if (!reply) return;
  const mine = state.groups.get(conv.name);
  const act = (message_type, fields) => async () => {
    if (await op(message_type, { group_id: conv.name, ...fields })) { await refreshGroups(); showMembers(); }
  };
  const rows = (reply.members || []).map(({ user_account: name, permissions: role }) => {
    const row = el("li", {}, el("span", { textContent: `${name} (${role})` }));
    if (name === session.account) return row;
    if (mine === "creator" && role !== "creator") {
      row.append(role === "admin" ? el("button", { textContent: "Demote", onclick: act("group_demote", { member: name }) })
                                  : el("button", { textContent: "Promote", onclick: act("group_promote", { member: name }) }));
    }
    if (mine === "creator" || (mine === "admin" && role === "member")) {
      row.append(el("button", { textContent: "Remove", onclick: act("group_remove", { member: name }) }));
    }
    return row;
  });
  const controls = el("div", { className: "row" });
  if (mine === "creator" || mine === "admin") {
    const invitee = el("input", { placeholder: "account to add", maxLength: 100 });
    controls.append(invitee, el("button", { textContent: "Add", onclick: () => act("group_invite", { member: invitee.value.trim() })() }));
  }
  if (mine === "creator") controls.append(el("button", { textContent: "Dissolve", onclick: act("group_dissolve") }));
  else if (mine) controls.append(el("button", { textContent: "Leave", onclick: act("group_leave") }));
  $("members").replaceChildren(el("p", { textContent: reply.introduction || "" }), el("ul", {}, ...rows), controls);
  $("members").hidden = false;
}

// -- pushed messages ----------------------------------------------------------------

const GROUP_NOTICES = new Set(["group_join", "group_leave", "group_remove", "group_role", "group_transfer", "group_dissolve"]);

session.addEventListener("message", ({ detail: message }) => {
  const type = message.message_type;
  if (type === "word") addWord(message);
  else if (type === "file") addOffer(message);
  else if (type === "update_online_user") { state.online = new Set(message.online_user); renderContacts(); }
  else if (type === "leave_message" || type === "friend_offline") {
    state.online.delete(message.username || message.friend); renderContacts();
  } else if (type === "friend_online") { state.online.add(message.friend); renderContacts(); }
  else if (type.startsWith("friend_")) refreshFriends();
  else if (GROUP_NOTICES.has(type)) {
    refreshGroups();
    if (state.current === "g:" + message.group_id && !$("members").hidden) showMembers();
  }
});
session.addEventListener("status", ({ detail }) => {
  $("status").textContent = detail.online ? "online" : "reconnecting…";
  $("status").className = detail.online ? "status" : "status offline";
  $("conn-banner").hidden = detail.online || $("chat-view").hidden;
});
session.addEventListener("reconnected", () => { refreshFriends(); refreshGroups(); });
session.addEventListener("error", ({ detail }) => showError(detail.reason));
session.addEventListener("stopped", ({ detail }) => {
  $("chat-view").hidden = true;
  $("conn-banner").hidden = true;
  $("login-view").hidden = false;
  showError(detail.reason === "logged out" ? "" : detail.reason, "login-error");
});

// -- the forms ------------------------------------------------------------------------

async function enter(register) {
  const account = $("login-user").value.trim(), password = $("login-pass").value;
  if (!account || !password) return showError("account and password, please", "login-error");
  try {
    if (register) {
      const reply = await session.register(account, password);
      if (!reply || reply.content !== "success") return showError(reply ? reply.reason : "not connected", "login-error");
    }
    const reply = await session.login(account, password);
    if (!reply || reply.content !== "success") return showError(reply ? reply.reason : "not connected", "login-error");
  } catch (error) {
    return showError(error.message, "login-error");
  }
  showError("", "login-error");
  $("me").textContent = account;
  $("login-view").hidden = true;
  $("chat-view").hidden = false;
  await Promise.all([refreshFriends(), refreshGroups()]);
  if (!PHONE.matches) openConversation(LOBBY); // a phone starts on the contact list
}

$("login-form").onsubmit = (event) => { event.preventDefault(); enter(false); };
$("register-btn").onclick = () => enter(true);
$("logout-btn").onclick = () => { session.logout(); state.conversations.clear(); state.current = null; };
$("back-btn").onclick = () => { $("chat-view").classList.remove("in-chat"); state.current = null; renderContacts(); };
$("older-btn").onclick = () => loadHistory(state.conversations.get(state.current));
$("messages").onscroll = () => { // scrolling to the top loads the page before it
  if ($("messages").scrollTop === 0 && !$("older-btn").hidden && !state.loading) {
    state.loading = true;
    loadHistory(state.conversations.get(state.current)).finally(() => { state.loading = false; });
  }
};
$("members-btn").onclick = () => ($("members").hidden ? showMembers() : ($("members").hidden = true));
$("composer").onsubmit = (event) => {
  event.preventDefault();
  const text = $("text").value;
  if (!text.trim() || !state.current) return;
  $("text").value = "";
  sendText(state.conversations.get(state.current), text);
};
$("add-form").onsubmit = async (event) => {
  event.preventDefault();
  const name = $("add-name").value.trim(), kind = $("add-kind").value;
  if (kind === "chat") openConversation("u:" + name);
  else if (kind === "friend" && await op("friend_request", { friend: name })) refreshFriends();
  else if ((kind === "join" && await op("group_join", { group_id: name }))
           || (kind === "create" && await op("group_create", { group_id: name }))) {
    await refreshGroups();
    openConversation("g:" + name);
  } else return;
  $("add-name").value = "";
};
$("file-input").onchange = async () => {
  const file = $("file-input").files[0];
  $("file-input").value = "";
  const conv = state.conversations.get(state.current);
  if (!file || !conv) return;
  if (conv.kind === LOBBY) return showError("files go to a person or a group, not the lobby");
  $("upload").hidden = false;
  $("upload-name").textContent = file.name;
  try {
    const stored = await upload(file, session.token, (percent) => { $("progress").value = percent; });
    sendText(conv, `<file>${stored.name}</file>`);
  } catch (error) {
    showError(error.message);
  } finally {
    $("upload").hidden = true;
    $("progress").value = 0;
  }
};
document.addEventListener("visibilitychange", () => {
  const conv = state.conversations.get(state.current);
  if (!document.hidden && conv) { conv.unread = 0; renderContacts(); }
});
