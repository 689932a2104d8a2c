// batchkit review page. Inline in the page, run under a CSP that allows only this script (by its hash).
// Every value from the data is put in the page with textContent or as an attribute, never as HTML.
"use strict";

(() => {
  const PAGE_SIZE = 60; // cards rendered at a time; more as the reviewer scrolls
  const FORMAT = "batchkit-review/1";
  const FIXED_CSV = ["request_id", "decision", "note", "outcome", "build"];
  const FORMULA = /^[=+\-@\t\r]/;
  const NUMBER = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;

  const $ = (selector, root = document) => root.querySelector(selector);
  const data = JSON.parse($("#review-data").textContent);
  if (data.format !== FORMAT) {
    throw new Error(`review data is ${data.format}, this page reads ${FORMAT}`);
  }
  const grouped = data.each.length > 0;
  const numberFormat = new Intl.NumberFormat();
  const count = (n) => numberFormat.format(n);

  // -- the cards, as objects ------------------------------------------------------------------------------

  const cards = data.cards.map((row, index) => {
    const card = { index };
    data.columns.forEach((name, i) => { card[name] = row[i]; });
    card.fields = data.groups[card.group];
    card.text = [card.request_id, card.outcome, card.error_code, card.error_message, ...card.each, ...card.fields]
      .filter((v) => v != null)
      .join("\n")
      .toLowerCase();
    return card;
  });
  const ids = [...new Set(cards.map((c) => c.request_id).filter((id) => id != null))];

  // -- decisions, kept in this browser per build ----------------------------------------------------------

  const storageKey = `batchkit-review:${data.build}`;
  const decisions = new Map(); // request_id → {decision: "approved" | "rejected" | "undecided", note}
  let storageWorks = true;

  function loadDecisions() {
    try {
      const saved = JSON.parse(localStorage.getItem(storageKey) || "null");
      if (saved && saved.v === 1 && saved.d && typeof saved.d === "object") {
        for (const [id, entry] of Object.entries(saved.d)) {
          if (!Array.isArray(entry) || !["approved", "rejected", "undecided"].includes(entry[0])) continue;
          decisions.set(id, { decision: entry[0], note: typeof entry[1] === "string" ? entry[1] : "" });
        }
      }
    } catch (error) {
      storageWorks = false;
    }
  }

  function saveDecisions() {
    const d = {};
    for (const [id, { decision, note }] of decisions) {
      if (decision === "undecided" && !note) continue;
      Object.defineProperty(d, id, { value: [decision, note], enumerable: true }); // even an id "__proto__"
    }
    try {
      localStorage.setItem(storageKey, JSON.stringify({ v: 1, d }));
      storageWorks = true;
    } catch (error) {
      storageWorks = false;
    }
    showTally();
  }

  const entryOf = (card) => (card.request_id == null ? undefined : decisions.get(card.request_id));
  const decisionOf = (card) => entryOf(card)?.decision || "undecided";
  const noteOf = (card) => entryOf(card)?.note || "";

  function decide(card, decision) {
    if (card.request_id == null) return;
    const entry = decisions.get(card.request_id) || { decision: "undecided", note: "" };
    decisions.set(card.request_id, { ...entry, decision });
  }

  // -- filters --------------------------------------------------------------------------------------------

  const state = { outcomes: new Set(data.outcomes), each: data.each.map(() => ""), decision: "all", text: "" };
  let shown = [];

  function tallyBy(key) {
    const counts = new Map();
    for (const card of cards) counts.set(key(card), (counts.get(key(card)) || 0) + 1);
    return counts;
  }

  function buildFilters() {
    const outcomes = tallyBy((c) => c.outcome);
    const box = $("#filter-outcome");
    for (const outcome of data.outcomes) {
      const label = document.createElement("label");
      label.className = "chip";
      label.dataset.outcome = outcome;
      const input = document.createElement("input");
      input.type = "checkbox";
      input.checked = input.defaultChecked = true; // "Reset" checks it again
      input.value = outcome;
      input.name = "outcome";
      const text = document.createElement("span");
      text.textContent = `${outcome} ${count(outcomes.get(outcome) || 0)}`;
      label.append(input, text);
      box.append(label);
    }
    if (data.outcomes.length === 0) box.hidden = true;
    data.each.forEach((name, i) => {
      const values = tallyBy((c) => c.each[i]);
      const label = document.createElement("label");
      label.className = "select";
      const caption = document.createElement("span");
      caption.textContent = name;
      const select = document.createElement("select");
      select.dataset.each = String(i);
      select.append(new Option(`All (${count(cards.length)})`, ""));
      for (const [value, n] of values) {
        if (value != null) select.append(new Option(`${value} (${count(n)})`, `=${value}`));
      }
      label.append(caption, select);
      $("#filter-each").append(label);
    });
  }

  function matches(card) {
    if (!state.outcomes.has(card.outcome) && card.outcome != null) return false;
    for (let i = 0; i < state.each.length; i++) {
      if (state.each[i] !== "" && `=${card.each[i]}` !== state.each[i]) return false;
    }
    if (state.decision !== "all" && decisionOf(card) !== state.decision) return false;
    return state.text === "" || card.text.includes(state.text);
  }

  function readFilters() {
    state.outcomes = new Set([...document.querySelectorAll('#filter-outcome input:checked')].map((i) => i.value));
    for (const select of document.querySelectorAll("#filter-each select")) {
      state.each[Number(select.dataset.each)] = select.value;
    }
    state.decision = $("#filter-decision").value;
    state.text = $("#filter-text").value.trim().toLowerCase();
  }

  function applyFilters() {
    shown = cards.filter(matches);
    window.scrollTo({ top: 0 }); // from the first card again (and not at the end, loading more at once)
    renderFrom(0);
  }

  // -- rendering, a page at a time ------------------------------------------------------------------------

  const list = $("#cards");
  const groupTemplate = $("#group-template").content.firstElementChild;
  const cardTemplate = $("#card-template").content.firstElementChild;
  const elements = new Map(); // card index → its element, while rendered
  let rendered = 0;
  let openGroup = null; // {group, grid}: the group the next card may join

  function renderFrom(start) {
    if (start === 0) {
      list.replaceChildren();
      elements.clear();
      openGroup = null;
      rendered = 0;
    }
    const end = Math.min(shown.length, rendered + PAGE_SIZE);
    const fragment = document.createDocumentFragment();
    for (let i = rendered; i < end; i++) {
      const card = shown[i];
      const element = cardElement(card);
      elements.set(card.index, element);
      if (!grouped) {
        fragment.append(element);
        continue;
      }
      if (openGroup === null || openGroup.group !== card.group) {
        const section = groupElement(card);
        openGroup = { group: card.group, grid: $(".grid", section) };
        fragment.append(section);
      }
      openGroup.grid.append(element);
    }
    list.append(fragment);
    list.classList.toggle("flat", !grouped);
    rendered = end;
    $("#more").hidden = rendered >= shown.length;
    $("#more").textContent = `Show more (${count(shown.length - rendered)} left)`;
    $("#empty").hidden = shown.length > 0;
    showCounts();
  }

  function fieldList(dl, values, skip = -1) {
    dl.replaceChildren();
    data.fields.forEach((name, i) => {
      if (i === skip || values[i] == null || values[i] === "") return;
      const item = document.createElement("div");
      const dt = document.createElement("dt");
      dt.textContent = name;
      const dd = document.createElement("dd");
      dd.textContent = values[i];
      item.append(dt, dd);
      dl.append(item);
    });
    dl.hidden = dl.childElementCount === 0;
  }

  function groupElement(card) {
    const section = groupTemplate.cloneNode(true);
    // The first field with a value names the group (a video_id, say); the others are listed beside it.
    const first = card.fields.findIndex((v) => v != null && v !== "");
    $(".group-title", section).textContent = first < 0 ? `Source row ${card.group + 1}` : card.fields[first];
    fieldList($(".fields", section), card.fields, first);
    section.setAttribute("aria-label", `Source row: ${$(".group-title", section).textContent}`);
    return section;
  }

  const httpUrl = (url) => typeof url === "string" && /^https?:\/\//i.test(url);
  const videoOf = (card) => card.file || (httpUrl(card.output_url) ? card.output_url : null);

  function cardElement(card) {
    const element = cardTemplate.cloneNode(true);
    element.dataset.index = String(card.index);
    element.dataset.outcome = card.outcome || "";
    if (card.request_id != null) element.dataset.requestId = card.request_id;
    const heading = $(".rid", element);
    heading.id = `card-${card.index}`;
    heading.textContent = card.request_id == null ? "(no request_id)" : card.request_id;
    element.setAttribute("aria-labelledby", heading.id);

    const badge = $(".badge", element);
    badge.textContent = card.outcome || "unknown";
    badge.dataset.outcome = card.outcome || "";
    const each = $(".each", element);
    data.each.forEach((name, i) => {
      if (i > 0) each.append(" · ");
      const value = document.createElement("b");
      value.textContent = card.each[i] == null ? "—" : card.each[i];
      each.append(`${name} `, value);
    });

    if (card.error_code != null || card.error_message != null) {
      $(".error", element).hidden = false;
      $(".code", element).textContent = card.error_code || "";
      $(".message", element).textContent = card.error_message || "";
    }
    if (!grouped) fieldList($(".fields", element), card.fields);

    const meta = $(".meta", element);
    if (typeof card.output_duration === "number") {
      const span = document.createElement("span");
      span.textContent = `${card.output_duration.toFixed(1)} s`;
      meta.append(span);
    }
    const video = videoOf(card);
    if (video) {
      const link = document.createElement("a");
      link.href = video;
      link.target = "_blank";
      link.rel = "noopener noreferrer";
      link.textContent = card.file ? "Open the file" : "Open the URL";
      meta.append(link);
    }
    if (video) {
      const where = document.createElement("span");
      where.textContent = card.file ? "fetched" : "not fetched";
      meta.append(where);
    }

    if (card.poster) {
      const img = $(".poster", element);
      img.src = card.poster;
      img.alt = `Poster of ${heading.textContent}`;
      img.hidden = false;
      $(".placeholder", element).hidden = true;
    } else {
      $(".placeholder span", element).textContent = video ? "No preview" : `No video (${card.outcome || "unknown"})`;
    }
    const play = $(".play", element);
    if (video) {
      play.hidden = false;
      play.setAttribute("aria-label", `Play ${heading.textContent}`);
    }

    $(".decide", element).setAttribute("aria-label", `Decision on ${heading.textContent}`);
    const note = $(".note input", element);
    note.value = noteOf(card);
    if (card.request_id == null) {
      for (const control of element.querySelectorAll(".decide button, .decide input")) control.disabled = true;
    }
    paintDecision(element, card);
    return element;
  }

  function paintDecision(element, card) {
    const decision = decisionOf(card);
    element.classList.toggle("approved", decision === "approved");
    element.classList.toggle("rejected", decision === "rejected");
    $(".approve", element).setAttribute("aria-pressed", String(decision === "approved"));
    $(".reject", element).setAttribute("aria-pressed", String(decision === "rejected"));
  }

  function repaint() {
    for (const [index, element] of elements) {
      const card = cards[index];
      paintDecision(element, card);
      $(".note input", element).value = noteOf(card);
    }
  }

  function play(element, card) {
    const media = $(".media", element);
    const video = document.createElement("video");
    video.controls = true;
    video.preload = "metadata";
    video.playsInline = true;
    if (card.poster) video.poster = card.poster;
    video.addEventListener("error", () => {
      const message = document.createElement("p");
      message.className = "media-error";
      message.textContent = card.file
        ? "Cannot play the fetched file: it moved, or the page moved without it."
        : "Cannot play the URL: the link may have expired. Fetch the videos and write the page again.";
      media.replaceChildren(message);
    });
    video.src = videoOf(card);
    media.replaceChildren(video);
    video.focus();
    video.play().catch(() => {});
  }

  // -- counts and messages --------------------------------------------------------------------------------

  function showSummary() {
    const outcomes = tallyBy((c) => c.outcome);
    const parts = data.outcomes.map((o) => `${count(outcomes.get(o) || 0)} ${o}`);
    const groups = grouped ? ` in ${count(data.groups.length)} source rows` : "";
    $("#summary").textContent = `${count(cards.length)} requests${groups}: ${parts.join(" · ")}`;
  }

  function showTally() {
    let approved = 0;
    let rejected = 0;
    for (const id of ids) {
      const decision = (decisions.get(id) || {}).decision;
      if (decision === "approved") approved++;
      else if (decision === "rejected") rejected++;
    }
    const undecided = ids.length - approved - rejected;
    const saved = storageWorks ? "kept in this browser" : "NOT kept: this browser refuses storage, download them";
    const tally = `${count(approved)} approved · ${count(rejected)} rejected · ${count(undecided)} undecided`;
    $("#tally").textContent = `${tally} (${saved})`;
  }

  function showCounts() {
    const total = shown.length === cards.length ? "" : ` (of ${count(cards.length)})`;
    $("#shown").textContent = `${count(shown.length)} shown${total}`;
    const decidable = shown.some((c) => c.request_id != null);
    for (const id of ["#bulk-approve", "#bulk-reject", "#bulk-clear"]) $(id).disabled = !decidable;
  }

  function notify(message) {
    $("#notice").textContent = message;
  }

  // -- bulk decisions, with one step of undo --------------------------------------------------------------

  let undo = null; // the decisions a bulk action replaced: Map request_id → entry | undefined

  function bulk(decision) {
    const before = new Map();
    for (const card of shown) {
      if (card.request_id == null || before.has(card.request_id)) continue;
      before.set(card.request_id, decisions.get(card.request_id));
      decide(card, decision);
    }
    undo = before;
    $("#undo").disabled = false;
    saveDecisions();
    notify(`${count(before.size)} card(s) marked ${decision}.`);
    applyFilters();
  }

  function undoBulk() {
    if (undo === null) return;
    for (const [id, entry] of undo) {
      if (entry === undefined) decisions.delete(id);
      else decisions.set(id, entry);
    }
    notify(`Undone: ${count(undo.size)} card(s) as they were.`);
    undo = null;
    $("#undo").disabled = true;
    saveDecisions();
    applyFilters();
  }

  // -- the decisions CSV ----------------------------------------------------------------------------------

  function csvCell(value) {
    let text = value == null ? "" : String(value);
    if (FORMULA.test(text) && !NUMBER.test(text)) text = `'${text}`;
    return /[",;\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
  }

  function decisionsCsv() {
    const each = data.each.map((name) => (FIXED_CSV.includes(name.trim().toLowerCase()) ? `each_${name}` : name));
    const lines = [["request_id", "decision", "note", "outcome", ...each, "build"]];
    const seen = new Set();
    for (const card of cards) {
      if (card.request_id == null || seen.has(card.request_id)) continue;
      seen.add(card.request_id);
      lines.push([card.request_id, decisionOf(card), noteOf(card), card.outcome, ...card.each, data.build]);
    }
    return "\ufeff" + lines.map((cells) => cells.map(csvCell).join(",")).join("\n") + "\n";
  }

  function download() {
    const blob = new Blob([decisionsCsv()], { type: "text/csv;charset=utf-8" });
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = "decisions.csv";
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
    const rejected = ids.filter((id) => (decisions.get(id) || {}).decision === "rejected").length;
    notify(`decisions.csv downloaded: ${count(rejected)} rejected for batchkit retry --from-review.`);
  }

  // -- events ---------------------------------------------------------------------------------------------

  function cardOf(target) {
    const element = target.closest(".card");
    return element ? [element, cards[Number(element.dataset.index)]] : [null, null];
  }

  list.addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (!button) return;
    const [element, card] = cardOf(button);
    if (!card) return;
    if (button.classList.contains("play")) {
      play(element, card);
      return;
    }
    const wanted = { approve: "approved", reject: "rejected" }[button.className];
    if (wanted === undefined) return;
    decide(card, decisionOf(card) === wanted ? "undecided" : wanted); // pressing again takes it back
    saveDecisions();
    for (const [index, other] of elements) {
      if (cards[index].request_id === card.request_id) paintDecision(other, cards[index]);
    }
  });

  let noteTimer = 0;
  list.addEventListener("input", (event) => {
    if (!event.target.matches(".note input")) return;
    const [, card] = cardOf(event.target);
    if (!card || card.request_id == null) return;
    const entry = decisions.get(card.request_id) || { decision: "undecided", note: "" };
    decisions.set(card.request_id, { ...entry, note: event.target.value });
    clearTimeout(noteTimer);
    noteTimer = setTimeout(saveDecisions, 250);
  });

  // a / r / u on a card's buttons: approve, reject, undecided
  list.addEventListener("keydown", (event) => {
    if (event.target.matches("input") || event.ctrlKey || event.metaKey || event.altKey) return;
    const keys = { a: "approved", r: "rejected", u: "undecided" };
    const decision = keys[event.key];
    const [element, card] = cardOf(event.target);
    if (!decision || !card || card.request_id == null) return;
    event.preventDefault();
    decide(card, decision);
    saveDecisions();
    paintDecision(element, card);
  });

  const filters = $("#filters");
  filters.addEventListener("submit", (event) => event.preventDefault());
  filters.addEventListener("change", () => { readFilters(); applyFilters(); });
  let textTimer = 0;
  $("#filter-text").addEventListener("input", () => {
    clearTimeout(textTimer);
    textTimer = setTimeout(() => { readFilters(); applyFilters(); }, 150);
  });
  filters.addEventListener("reset", () => setTimeout(() => { readFilters(); applyFilters(); }, 0));

  $("#bulk-approve").addEventListener("click", () => bulk("approved"));
  $("#bulk-reject").addEventListener("click", () => bulk("rejected"));
  $("#bulk-clear").addEventListener("click", () => bulk("undecided"));
  $("#undo").addEventListener("click", undoBulk);
  $("#download").addEventListener("click", download);
  $("#more").addEventListener("click", () => {
    const first = rendered;
    renderFrom(rendered);
    // Keyboard users go on from the first new card: it stands where the button was, so no scrolling.
    const element = elements.get(shown[first]?.index);
    if (element) {
      element.tabIndex = -1;
      element.focus({ preventScroll: true });
    }
  });

  // Render the next page when the end of the list comes near. The observer only says "look again": an entry
  // can be stale (queued before the filters changed), so the end's position is measured now.
  if ("IntersectionObserver" in window) {
    const end = $(".more");
    const near = () => end.getBoundingClientRect().top < window.innerHeight + 800;
    const observer = new IntersectionObserver(() => {
      if (rendered >= shown.length || !near()) return;
      renderFrom(rendered);
      observer.unobserve(end); // observing again reports whether the end is still near: fill tall screens
      observer.observe(end);
    }, { rootMargin: "800px 0px" });
    observer.observe(end);
  }

  // Another tab of the same page changed the decisions.
  window.addEventListener("storage", (event) => {
    if (event.key !== storageKey) return;
    decisions.clear();
    loadDecisions();
    repaint();
    showTally();
  });

  loadDecisions();
  buildFilters();
  showSummary();
  showTally();
  applyFilters();
  document.documentElement.dataset.ready = "true";
})();
