// The Review grid: the toolbar, the class keys and the cards, drawn in the browser.
//
// Why a component: a decision redraws only the cards whose data changed, instead of Streamlit
// redrawing some 200 widgets, so a click shows its result in a fraction of the time.
//
// No decision is ever lost. Every action goes into an outbox of operations numbered in order
// (this grid's instance id plus a sequence number), and the whole unacknowledged outbox is sent
// as the component's state. A newer state carries every older operation that the server has
// not yet acknowledged, so a rerun that Streamlit merges or drops loses nothing; unanswered, the
// outbox is sent again, less and less often. The server applies each operation once, in order,
// and returns the last sequence number it applied; the outbox then drops those. Unacknowledged
// decisions are also kept in sessionStorage, so a reload sends them again (a decision names its
// items and its new state, so applying it twice changes nothing).
//
// All text from the project (class names, notes) is set with textContent, never as HTML.
//
// The review actions (their names, keys, buttons, colours) come with the data, from stcore's one
// table (stcore/actions.py): those that need no class get a toolbar button, a card button and a
// key each; the one that needs a class gets the class keys, the list of classes and the Fix button.

const STORE_KEY = "stcore-review-unacked";
const RESEND_MS = 3000;      // send the unacknowledged operations again after this long, then twice as long...
const RESEND_MAX_MS = 30000; // ...up to this: a slow server is not kept busy restarting its runs
const STALE_MS = 10000;      // then say that decisions are waiting
const KEEP_MS = 600000;      // a decision kept for a reload expires after ten minutes
const REPEATING = ["ArrowLeft", "ArrowRight", "j", "J", "k", "K"]; // keys that may repeat when held
const grids = new Set();     // the mounted grids; the keyboard drives the newest one
const REMEMBERED = 100;      // this grid's latest decisions, to find the card an undo gives back
// A whole-page rerun (the first label changes what the page shows) takes the grid down and puts a
// new one up; on a busy machine that can take seconds. A key pressed in between waits for the new
// grid (within WAIT_MS of the old one going), instead of being lost.
const WAIT_MS = 5000;
const waiting = [];          // {key, at}: keys pressed while no grid was up
let goneAt = 0;              // when the last grid went down
// A click on the page focuses Streamlit's main container (it scrolls, so it takes the focus), and
// after a key Chrome draws its focus ring, a grey frame over the whole page, through the title.
// The keys go to the grid, whose cue is the marked card: the frame goes while a grid is shown.
const NO_FRAME_ID = "stcore-grid-no-main-focus-frame";
const NO_FRAME_CSS = 'main[data-testid="stMain"]:focus-visible::before { box-shadow: none !important; }';

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function button(label, cls, title, onClick) {
  const b = el("button", "btn " + (cls || ""), label);
  b.type = "button";
  if (title) b.title = title;
  b.addEventListener("click", (ev) => { ev.stopPropagation(); onClick(ev); });
  return b;
}

function keyHint(k) {
  return el("kbd", "", k);
}

function cap(text) {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function tinted(e, color) {
  // A status's or an action's colour from the table: the CSS mixes it into the theme's colours.
  e.classList.add("tinted");
  e.style.setProperty("--tint", color);
  return e;
}

function typing(ev) {
  // Keys typed into a field, or arrows on a slider or a list elsewhere on the page, are theirs.
  const t = ev.composedPath ? ev.composedPath()[0] : ev.target;
  return !!t && !!t.tagName && (t.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(t.tagName)
    || !!t.closest("[role=slider], [role=listbox], [role=combobox], [role=option], [role=dialog]"));
}

function onKey(ev) {
  if (ev.defaultPrevented || ev.ctrlKey || ev.metaKey || ev.altKey || typing(ev)) return;
  if (ev.repeat && !REPEATING.includes(ev.key)) return;  // a held A must not decide card after card
  const g = [...grids].pop();
  if (!g && Date.now() - goneAt < WAIT_MS && ev.key.length === 1) {
    waiting.push({key: ev.key, at: Date.now()});
    ev.preventDefault();
    return;
  }
  if (g && g.key(ev.key)) ev.preventDefault();
}

class Grid {
  constructor(root) {
    this.root = root;
    this.instance = Math.random().toString(36).slice(2, 10) + Date.now().toString(36);
    this.seq = 0;
    this.outbox = [];   // unacknowledged operations, oldest first
    this.keepAfter = 0; // decisions after this sequence number are kept for a reload
    this.focusId = null;
    this.focusSlot = null;
    this.decided = [];  // {id, before}: the card's status before each decision, oldest first
    this.undos = [];    // sequence numbers of undos sent, not yet seen applied
    this.data = null;
    this.sentAt = 0;
    this.delay = RESEND_MS;
    this.renders = 0;
    this.build();
    this.timer = setInterval(() => this.resend(), 1000);
  }

  // ------------------------------------------------------------------ the outbox
  push(op) {
    op.seq = ++this.seq;
    op.at = Date.now();
    // After an undo, a reload must not replay the decisions before it: undo may have reverted them.
    if (op.kind === "undo") this.keepAfter = op.seq;
    this.outbox.push(op);
    this.keep();
    this.send();
  }

  send() {
    this.sentAt = Date.now();
    this.setStateValue("ops", {instance: this.instance, ops: this.outbox, at: this.sentAt});
  }

  resend() {
    if (this.outbox.length && Date.now() - this.sentAt > this.delay) {
      this.delay = Math.min(2 * this.delay, RESEND_MAX_MS);
      this.send();
    }
    this.drawMessage();
  }

  acknowledge(ack) {
    const done = (ack || {})[this.instance];
    if (done === undefined || done === null) return;
    const before = this.outbox.length;
    this.outbox = this.outbox.filter((op) => op.seq > done);
    if (this.outbox.length < before) this.delay = RESEND_MS;  // the server answers again
    this.keep();
  }

  keep() {
    // Decisions not yet acknowledged survive a reload of the tab.
    try {
      const decisions = this.outbox.filter((op) => op.kind === "decide" && op.seq > this.keepAfter)
        .map((op) => ({...op, instance: this.instance}));
      if (decisions.length) sessionStorage.setItem(STORE_KEY, JSON.stringify({project: this.project, ops: decisions}));
      else sessionStorage.removeItem(STORE_KEY);
    } catch (e) { /* storage off: the outbox still holds them for this page's life */ }
  }

  replay(ack) {
    // Decisions an earlier grid of this tab sent but saw no answer to. The server's record of
    // what it applied lasts as long as the session, so those it already has are not sent again.
    let saved = null;
    try { saved = JSON.parse(sessionStorage.getItem(STORE_KEY) || "null"); } catch (e) { saved = null; }
    if (!saved || saved.project !== this.project || !Array.isArray(saved.ops)) return;
    const fresh = saved.ops.filter((op) => Date.now() - (op.at || 0) < KEEP_MS
      && !((ack || {})[op.instance] >= op.seq));
    for (const op of fresh) {
      this.push({kind: "decide", ids: op.ids, action: op.action, label: op.label, new_class: op.new_class,
                 expect: op.expect});
    }
    if (!fresh.length) this.keep();
  }

  inFlight(id) {
    return this.outbox.some((op) => op.kind === "decide" && op.ids.includes(id));
  }

  // ------------------------------------------------------------------ actions
  decide(c, action, label, newClass) {
    this.push({kind: "decide", ids: [c.id], action: action, label: label === undefined ? null : label,
               new_class: newClass || null,  // a class typed into the class list, added if new
               expect: this.actions[action].needs_prediction ? c.pred : null});  // accept what this card shows
    this.decided.push({id: c.id, before: c.status});
    if (this.decided.length > REMEMBERED) this.decided.shift();
    this.drawCards();
    if (c.id === this.focusId) this.moveFocus(1, c.pending);
    this.refresh();
  }

  focused() {
    return this.data && this.data.cards.find((c) => c.id === this.focusId && c.slot === this.focusSlot);
  }

  onFocused(action, label) {
    const c = this.focused();
    if (!c) return false;
    if (!c.can[action]) return false;
    this.decide(c, action, label);
    return true;
  }

  undoLast() {
    if (!this.data || !this.data.toolbar.undo) return;
    const op = {kind: "undo"};
    this.push(op);
    this.undos.push(op.seq);  // once applied, the mark goes to the card it gave back (see render)
  }

  restored(cards) {
    // The card of this grid's newest decision that shows its status from before it again: the
    // one an undo gave back. A decision made elsewhere (a bulk action) is not in the list, and
    // its undo finds no card here.
    for (let k = this.decided.length - 1; k >= 0; k--) {
      const d = this.decided[k];
      const c = cards.find((x) => x.id === d.id && x.status === d.before && this.decidable(x));
      if (c) {
        this.decided.splice(k, 1);
        return c;
      }
    }
    return null;
  }

  turn(delta) {
    const t = this.data.toolbar;
    const page = Math.min(Math.max(1, t.page + delta), t.n_pages);
    if (page !== t.page) this.push({kind: "page", page: page});
  }

  key(k) {
    if (!this.data) return false;
    const lower = k.toLowerCase();
    const keys = this.data.number_keys;
    const c = this.focused();
    const act = this.direct.find((a) => a.key === lower);
    if (act) return this.onFocused(act.name) || true;
    if (lower === "f") { if (c && c.fix) this.decide(c, this.withClass.name, c.fix.k); return true; }
    if (lower === "s") { if (c && c.can_similar) this.push({kind: "similar", id: c.id}); return true; }
    if (lower === "n") { this.turn(1); return true; }
    if (lower === "p") { this.turn(-1); return true; }
    if (lower === "u") { this.undoLast(); return true; }
    if (k === "ArrowRight" || lower === "j") { this.moveFocus(1, false); return true; }
    if (k === "ArrowLeft" || lower === "k") { this.moveFocus(-1, false); return true; }
    if (keys && keys.includes(k) && keys.indexOf(k) < this.keyOrder().length) {
      return this.onFocused(this.withClass.name, this.keyOrder()[keys.indexOf(k)]) || true;
    }
    if (lower === this.withClass.key) { this.openPicker(false); return true; }
    if (k === "+") { this.openPicker(true); return true; }
    return false;
  }

  // ------------------------------------------------------------------ the mark
  decidable(c) {
    return Object.values(c.can).some(Boolean);
  }

  firstFocus() {
    const cards = this.data.cards;
    return cards.find((c) => c.pending && !this.inFlight(c.id)) || cards.find((c) => this.decidable(c)) || null;
  }

  moveFocus(step, pendingOnly) {
    // The next card left to decide (pendingOnly), or the next that can be decided at all; with
    // none, a pending-only move clears the mark (the next data puts it on the first card left).
    const cards = this.data ? this.data.cards : [];
    let i = cards.findIndex((c) => c.id === this.focusId && c.slot === this.focusSlot);
    for (i += step; i >= 0 && i < cards.length; i += step) {
      const c = cards[i];
      if (pendingOnly ? c.pending && !this.inFlight(c.id) : this.decidable(c)) { this.setFocus(c); return; }
    }
    if (pendingOnly) this.setFocus(null);
  }

  setFocus(c) {
    this.focusId = c ? c.id : null;
    this.focusSlot = c ? c.slot : null;
    for (const card of this.cardsEl.children) {
      const on = c !== null && card.dataset.slot === String(c.slot);
      card.classList.toggle("focus", on);
      if (on) card.scrollIntoView({block: "nearest"});
    }
    this.refresh();
  }

  // ------------------------------------------------------------------ drawing
  build() {
    this.bar = el("div", "bar");
    this.actionButtons = {};  // the toolbar's action buttons, by action name: drawn with the first data
    this.undo = button("↶ Undo", "", "", () => this.undoLast());
    this.undo.append(keyHint("U"));
    this.count = el("span", "count");
    this.prev = button("‹ Previous", "", "Previous page (P)", () => this.turn(-1));
    this.prev.append(keyHint("P"));
    this.next = button("Next ›", "", "Next page (N)", () => this.turn(1));
    this.next.append(keyHint("N"));
    this.page = el("input", "page");
    this.page.type = "number";
    this.page.min = 1;
    this.page.title = "Page: type a number, then Enter";
    this.page.setAttribute("aria-label", "Page");
    this.page.addEventListener("keydown", (ev) => {
      if (ev.key !== "Enter") return;
      const t = this.data.toolbar;
      const p = Math.min(Math.max(1, parseInt(this.page.value, 10) || 1), t.n_pages);
      if (p !== t.page) this.push({kind: "page", page: p});
    });
    this.pages = el("span", "pages");
    this.bar.append(this.undo, el("span", "gap"), this.count, this.prev, this.page, this.pages, this.next);
    this.keysRow = el("div", "keys");
    this.legend = el("div", "legend");
    this.message = el("div", "message");
    this.message.setAttribute("role", "status");
    this.pickerRow = el("div", "picker hidden");
    this.cardsEl = el("div", "cards");
    this.root.replaceChildren(this.bar, this.keysRow, this.legend, this.message, this.pickerRow, this.cardsEl);
  }

  drawActions(actions) {
    // The review actions, from the table: those that decide with no class, and the one that takes a class.
    this.actions = Object.fromEntries(actions.map((a) => [a.name, a]));
    this.direct = actions.filter((a) => !a.needs_class);
    this.withClass = actions.find((a) => a.needs_class);
    const buttons = this.direct.map((a, i) => {
      const b = button(`${a.symbol} ${a.label}`, (i === 0 ? "primary " : "") + a.name,
        `${cap(a.help)}, for the marked card (${a.key.toUpperCase()})`, () => this.onFocused(a.name));
      b.append(keyHint(a.key.toUpperCase()));
      this.actionButtons[a.name] = b;
      return b;
    });
    this.bar.prepend(...buttons);
  }

  render(data) {
    const first = this.data === null;
    if (first) this.drawActions(data.actions);
    const keysChanged = first || JSON.stringify([data.classes, data.number_keys, data.key_order]) !==
      JSON.stringify([this.data.classes, this.data.number_keys, this.data.key_order]) || data.cards.some((c) => c.fix) !== this.hasFix;
    this.project = data.project;
    this.data = data;
    this.acknowledge(data.ack);
    if (first) this.replay(data.ack);
    // Each undo the server has applied gave a card back: the mark goes to it (the last one's),
    // when it is on this page.
    const applied = (data.ack || {})[this.instance];
    while (this.undos.length && applied !== undefined && applied !== null && this.undos[0] <= applied) {
      this.undos.shift();
      const back = this.restored(data.cards);
      if (back) {
        this.focusId = back.id;
        this.focusSlot = back.slot;
      }
    }
    const focus = this.focused();
    // The mark stays on its card while that card is on the page and undecided, even if new data
    // moves it (the default order interleaves classes): a key always acts on the card marked.
    if (!focus || !(focus.pending ? !this.inFlight(focus.id) : this.decidable(focus))) {
      const f = this.firstFocus();
      this.focusId = f ? f.id : null;
      this.focusSlot = f ? f.slot : null;
    }
    if (keysChanged) this.drawKeys();
    this.drawMessage();
    this.drawCards();
    this.refresh();
  }

  refresh() {
    // What the toolbar and the class keys offer, for the data and the marked card now.
    if (!this.data) return;
    const t = this.data.toolbar;
    const c = this.focused();
    for (const [name, b] of Object.entries(this.actionButtons)) b.disabled = !c || !c.can[name];
    this.undo.disabled = !t.undo;
    this.undo.title = t.undo ? `Revert the last decision: ${t.undo} (U)` : "Nothing to undo yet";
    this.prev.disabled = t.page <= 1;
    this.next.disabled = t.page >= t.n_pages;
    this.page.max = t.n_pages;
    if (this.page.getRootNode().activeElement !== this.page) this.page.value = t.page;  // not while typed into
    this.pages.textContent = `of ${t.n_pages.toLocaleString("en-US")}`;
    const waiting = this.outbox.filter((op) => op.kind === "decide").length;
    this.count.textContent = `${t.total.toLocaleString("en-US")} item${t.total === 1 ? "" : "s"}`
      + (waiting ? ` · saving ${waiting}…` : "");
    for (const b of this.keysRow.querySelectorAll("button")) b.disabled = !c || !c.can[this.withClass.name];
  }

  // The class of each number key, in order: the data's key_order (a split offers its parts
  // first), else the classes by id.
  keyOrder() {
    return this.data.key_order || this.data.classes.map((_, k) => k);
  }

  drawKeys() {
    const keys = this.data.number_keys;
    this.hasFix = this.data.cards.some((c) => c.fix);
    this.keysRow.replaceChildren();
    const w = this.withClass;
    const n = this.direct.length;
    const parts = [...this.direct.map((a) => `${a.key.toUpperCase()} ${a.name}`),
                   "←/→ move the mark", "S similar", "N next page", "P previous page", "U undo"];
    if (this.hasFix) parts.splice(n, 0, "F fix");
    if (keys) {
      this.keysRow.append(el("span", "label", `${w.label} to:`));
      this.keyOrder().slice(0, keys.length).forEach((k, i) => {
        const name = this.data.classes[k];
        const b = button("", "class", `Key ${keys[i]}: ${w.name} the marked card to ${name}`, () => this.onFocused(w.name, k));
        b.append(keyHint(keys[i]), el("span", "", name));
        this.keysRow.append(b);
      });
      const more = this.data.classes.length > keys.length;
      parts.splice(n, 0, `1-9, 0 ${w.name} to ${more ? `one of the first ${keys.length} classes` : "a class"}`);
    }
    const key = w.key.toUpperCase();
    const pick = button(keys ? "Other…" : `${w.label} to a class…`, "",
      `Choose the class of the marked card, or type a new one (${key})`, () => this.openPicker(false));
    pick.append(keyHint(key));
    const add = button("New class…", "", "Give the marked card a class the project does not have yet (+)",
      () => this.openPicker(true));
    add.append(keyHint("+"));
    this.keysRow.append(pick, add);
    parts.splice(n + (keys ? 1 : 0), 0, `${key} find a class`, "+ new class");
    this.legend.textContent = "Keyboard: " + parts.join(" · ") + ". The marked card (▶) is the next to decide.";
  }

  drawMessage() {
    if (!this.data) return;
    const oldest = this.outbox.find((op) => op.kind === "decide");
    if (oldest && Date.now() - oldest.at > STALE_MS) {
      // The server has not answered for a while (a lost connection, a page run that went wrong).
      const n = this.outbox.filter((op) => op.kind === "decide").length;
      this.message.className = "message error";
      this.message.textContent = `${n} decision${n === 1 ? " is" : "s are"} not saved yet: still sending. `
        + "They are kept in this tab; reloading the page sends them again.";
      return;
    }
    const m = this.data.message;
    this.message.className = "message" + (m ? " " + m.kind : "");
    this.message.textContent = m ? m.text : "";
  }

  openPicker(adding) {
    // The class list: type to find a class, or a name the project lacks to add it (adding: the
    // new class comes first, so that Enter adds what was typed).
    const c = this.focused();
    const w = this.withClass;
    if (!c || !c.can[w.name]) return;
    const row = this.pickerRow;
    row.replaceChildren();
    row.classList.remove("hidden");
    const input = el("input", "find");
    input.maxLength = 100;
    input.placeholder = adding ? `New class for #${c.id}: type its name, Enter adds it`
      : `Class of #${c.id}: type to find it, Enter picks the first (a new name: click + New class)`;
    const list = el("div", "options");
    const close = () => { row.classList.add("hidden"); row.replaceChildren(); };
    const norm = (name) => name.trim().replace(/\s+/g, " ").toLowerCase();
    let enter = null;  // what Enter does: the first class found, or (adding) the new class typed
    const show = () => {
      const typed = input.value.trim().replace(/\s+/g, " ");
      const q = typed.toLowerCase();
      list.replaceChildren();
      // an exact name first, then the names that contain what was typed, in class order
      const matches = this.data.classes.map((name, k) => [name, k]).filter(([name]) => norm(name).includes(q))
        .sort(([a], [b]) => (norm(b) === q) - (norm(a) === q)).slice(0, 30);
      const found = matches.map(([name, k]) => button(name, "class", `${w.label} #${c.id} to ${name}`,
        () => { close(); this.decide(c, w.name, k); }));
      const exact = matches.length && norm(matches[0][0]) === q;
      const add = typed && !exact ? [button(`+ New class “${typed}”`, "class new", `Add the class ${typed} and give it to #${c.id}`,
        () => { close(); this.decide(c, w.name, null, typed); })] : [];
      list.append(...(adding ? [...add, ...found] : [...found, ...add]));
      // Enter never adds a class by accident: only in the + mode, and never an empty name;
      // there an existing class of that name is taken instead.
      enter = adding ? (exact ? found[0] : add[0] || null) : (found[0] || null);
    };
    input.addEventListener("input", show);
    input.addEventListener("keydown", (ev) => {
      if (ev.isComposing) return;  // an input method's Enter confirms the characters, nothing else
      if (ev.key === "Escape") close();
      if (ev.key === "Enter" && enter) enter.click();
    });
    row.append(input, button("Cancel", "", "Close (Esc)", close), list);
    show();
    input.focus();
  }

  drawCards() {
    // A card whose data is unchanged keeps its element, and an element already in its place is
    // not moved: an open class list or the keyboard focus inside a card survives new data.
    const have = new Map([...this.cardsEl.children].map((e) => [e.dataset.slot, e]));
    const order = this.data.cards.map((c) => {
      let e = have.get(String(c.slot));
      const sig = JSON.stringify(c);
      if (!e || e.__sig !== sig) {
        e = this.drawCard(c);
        e.__sig = sig;
      }
      e.classList.toggle("saving", this.inFlight(c.id));
      e.classList.toggle("focus", c.id === this.focusId && c.slot === this.focusSlot);
      return e;
    });
    order.forEach((e, i) => {
      if (this.cardsEl.children[i] !== e) this.cardsEl.insertBefore(e, this.cardsEl.children[i] || null);
    });
    while (this.cardsEl.children.length > order.length) this.cardsEl.lastChild.remove();
  }

  drawCard(c) {
    const card = el("div", "card");
    card.dataset.id = c.id;
    card.dataset.slot = c.slot;
    card.dataset.status = c.status;
    card.addEventListener("click", () => { if (this.decidable(c)) this.setFocus(c); });
    const img = el("img", "thumb");
    img.src = c.img;
    img.alt = `#${c.id}`;
    card.append(img);
    const title = el("div", "title");
    title.append(el("strong", "", c.title));
    if (c.badge) {
      const badge = el("span", "badge " + (c.badge.color || ""), c.badge.text);
      title.append(c.badge.tint ? tinted(badge, c.badge.tint) : badge);
    }
    card.append(title);
    const sub = el("div", "sub");
    if (c.sub_status) sub.append(tinted(el("span", "status", c.sub_status.text), c.sub_status.tint), " · ");
    sub.append(c.sub);
    sub.append(el("span", "mark", " · ▶ next"));
    card.append(sub);
    if (c.who) {
      const who = el("div", "note who", c.who.text);
      who.title = c.who.title;  // the whole of it, where the card cuts it short
      card.append(who);
    }
    if (c.note) card.append(el("div", "note", c.note));
    if (c.fix) {
      card.append(button(`Fix: ${c.fix.name}`, "primary wide fix", "Give this item the class its neighbours say (F)",
        () => { this.setFocus(c); this.decide(c, this.withClass.name, c.fix.k); }));
    }
    if (c.split === "test") return card;
    const row = el("div", "actions");
    // One button per action with no class, in the table's order, then Similar (twice as wide).
    row.style.gridTemplateColumns = `repeat(${this.direct.length}, 1fr) 2fr`;
    for (const a of this.direct) {
      const b = tinted(button(a.symbol, a.name, `${cap(a.help)} (${a.key.toUpperCase()})`,
        () => { this.setFocus(c); this.decide(c, a.name); }), a.color);
      b.disabled = !c.can[a.name];
      b.setAttribute("aria-label", `${a.label} #${c.id}`);
      row.append(b);
    }
    const sim = button("Similar", "similar", c.can_similar ? "The images nearest to this one (S)"
      : "Similar needs an embedding (Train page, Embed)", () => this.push({kind: "similar", id: c.id}));
    sim.disabled = !c.can_similar;
    row.append(sim);
    card.append(row);
    const w = this.withClass;
    const pick = el("select", "pick " + w.name);
    pick.setAttribute("aria-label", `${w.label} #${c.id} to`);
    pick.append(el("option", "", `${w.label} to…`));
    pick.options[0].value = "";
    this.data.classes.forEach((name, k) => { const o = el("option", "", name); o.value = k; pick.append(o); });
    pick.disabled = !c.can[w.name];
    pick.addEventListener("click", (ev) => ev.stopPropagation());
    pick.addEventListener("change", () => {
      if (pick.value === "") return;
      const k = parseInt(pick.value, 10);
      pick.value = "";
      this.setFocus(c);
      this.decide(c, w.name, k);
    });
    card.append(pick);
    return card;
  }

  destroy() {
    clearInterval(this.timer);
    grids.delete(this);
    this.root.remove();
    if (!grids.size) {
      goneAt = Date.now();  // the listener stays a moment: a new grid may be on its way (WAIT_MS)
      setTimeout(() => {
        if (grids.size) return;
        document.removeEventListener("keydown", onKey);
        document.getElementById(NO_FRAME_ID)?.remove();
        waiting.length = 0;
      }, WAIT_MS);
    }
  }
}

export default function (component) {
  const { data, parentElement, setStateValue } = component;
  let g = parentElement.__stcoreGrid;
  if (!g) {
    const root = el("div", "grid-root");
    parentElement.append(root);
    g = parentElement.__stcoreGrid = new Grid(root);
    if (!grids.size) {
      document.addEventListener("keydown", onKey);
      if (!document.getElementById(NO_FRAME_ID)) {
        const style = el("style");
        style.id = NO_FRAME_ID;
        style.textContent = NO_FRAME_CSS;
        document.head.append(style);
      }
    }
    grids.add(g);
  }
  g.setStateValue = setStateValue;
  g.render(data);
  // keys pressed while the page put this grid up act on it now, in order
  for (const w of waiting.splice(0)) if (Date.now() - w.at < WAIT_MS) g.key(w.key);
  // Streamlit keeps the newest render's cleanup for the unmount, and may call an older one late
  // (a render still loading when the next began): only the newest may take the grid down.
  const mine = ++g.renders;
  return () => {
    if (g.renders === mine && parentElement.__stcoreGrid === g) {
      g.destroy();
      parentElement.__stcoreGrid = null;
    }
  };
}
