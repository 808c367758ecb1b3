// The segment editor: mark in / mark out from the player's current time (buttons, or keys I and O),
// reorder and remove segments, and keep #segments-field (the export form's `segments`) in sync.
// Times are kept as whole milliseconds, so sums and comparisons are exact, and sent as decimal-second
// strings ("1.5"), the API's format. The list survives a reload: it is kept in sessionStorage per video.
(function () {
  "use strict";
  const editor = document.getElementById("editor");
  if (!editor) return;
  const MAX_SEGMENTS = 500;
  const player = document.getElementById("player");
  const list = document.getElementById("segments");
  const total = document.getElementById("segments-total");
  const field = document.getElementById("segments-field");
  const pending = document.getElementById("pending-in");
  const error = document.getElementById("mark-error");
  const storageKey = "segments:" + editor.dataset.videoId;
  const probedMs = Math.floor(Number(editor.dataset.duration) * 1000) || 0;

  let segments = [];
  let inPoint = null;

  function durationMs() {
    if (probedMs > 0) return probedMs;
    return Number.isFinite(player.duration) ? Math.floor(player.duration * 1000) : 0;
  }

  function nowMs() {
    const limit = durationMs();
    const t = Math.max(0, Math.round(player.currentTime * 1000));
    return limit > 0 ? Math.min(t, limit) : t;
  }

  function clock(ms) {
    const whole = Math.floor(ms / 1000);
    const h = Math.floor(whole / 3600);
    const m = Math.floor((whole % 3600) / 60);
    const s = whole % 60;
    const frac = String(ms % 1000).padStart(3, "0");
    const ss = String(s).padStart(2, "0");
    return (h ? h + ":" + String(m).padStart(2, "0") : String(m)) + ":" + ss + "." + frac;
  }

  function seconds(ms) {
    return String(ms / 1000);
  }

  function say(message) {
    error.textContent = message;
    error.hidden = !message;
  }

  function save() {
    try {
      sessionStorage.setItem(storageKey, JSON.stringify({ segments: segments, inPoint: inPoint }));
    } catch (_) {
      // Storage full or disabled: the editor still works, it just won't survive a reload.
    }
  }

  function load() {
    let saved;
    try {
      saved = JSON.parse(sessionStorage.getItem(storageKey) || "null");
    } catch (_) {
      return;
    }
    if (!saved || !Array.isArray(saved.segments)) return;
    const limit = durationMs();
    const valid = function (ms) {
      return Number.isInteger(ms) && ms >= 0 && (limit === 0 || ms <= limit);
    };
    segments = saved.segments
      .filter(function (s) { return s && valid(s.start) && valid(s.end) && s.start < s.end; })
      .slice(0, MAX_SEGMENTS)
      .map(function (s) { return { start: s.start, end: s.end }; });
    inPoint = valid(saved.inPoint) ? saved.inPoint : null;
  }

  function button(label, text, action, disabled) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "icon";
    b.setAttribute("aria-label", label);
    b.textContent = text;
    b.dataset.action = action;
    b.disabled = disabled;
    return b;
  }

  function render() {
    list.replaceChildren();
    segments.forEach(function (seg, i) {
      const n = i + 1;
      const item = document.createElement("li");
      item.dataset.index = String(i);
      const jump = document.createElement("button");
      jump.type = "button";
      jump.className = "seg-times";
      jump.dataset.action = "jump";
      jump.setAttribute("aria-label", "Jump to segment " + n + ", " + clock(seg.start) + " to " + clock(seg.end));
      const from = document.createElement("span");
      const to = document.createElement("span");
      from.textContent = clock(seg.start);
      to.textContent = clock(seg.end);
      jump.append(from, " – ", to);
      const length = document.createElement("span");
      length.className = "seg-length";
      length.textContent = clock(seg.end - seg.start);
      const actions = document.createElement("span");
      actions.className = "seg-actions";
      actions.append(
        button("Move segment " + n + " up", "↑", "up", i === 0),
        button("Move segment " + n + " down", "↓", "down", i === segments.length - 1),
        button("Remove segment " + n, "✕", "remove", false)
      );
      item.append(jump, length, actions);
      list.append(item);
    });
    const sum = segments.reduce(function (acc, s) { return acc + s.end - s.start; }, 0);
    total.textContent = segments.length ? clock(sum) : "nothing marked yet";
    pending.textContent = inPoint === null ? "" : "In at " + clock(inPoint) + ": now mark the out-point.";
    field.value = JSON.stringify(segments.map(function (s) {
      return { start: seconds(s.start), end: seconds(s.end) };
    }));
    field.dispatchEvent(new Event("change", { bubbles: true }));
  }

  function update() {
    render();
    save();
  }

  function markIn() {
    inPoint = nowMs();
    say("");
    update();
  }

  function markOut() {
    if (inPoint === null) {
      say("Mark an in-point first.");
      return;
    }
    const out = nowMs();
    if (out <= inPoint) {
      say("The out-point (" + clock(out) + ") must be after the in-point (" + clock(inPoint) + ").");
      return;
    }
    if (segments.length >= MAX_SEGMENTS) {
      say("An export can have at most " + MAX_SEGMENTS + " segments.");
      return;
    }
    segments.push({ start: inPoint, end: out });
    inPoint = null;
    say("");
    update();
  }

  function wholeVideo() {
    const end = durationMs();
    if (!(end > 0)) {
      say("The video's duration is not known yet; mark it by hand.");
      return;
    }
    segments = [{ start: 0, end: end }];
    inPoint = null;
    say("");
    update();
  }

  function focusIn(index, action) {
    const item = list.children[index];
    const wanted = item && item.querySelector('[data-action="' + action + '"]:not(:disabled)');
    const fallback = item && item.querySelector('[data-action="remove"]');
    (wanted || fallback || document.getElementById("mark-in")).focus();
  }

  list.addEventListener("click", function (event) {
    const target = event.target.closest("button[data-action]");
    if (!target) return;
    const i = Number(target.closest("li").dataset.index);
    const action = target.dataset.action;
    if (action === "jump") {
      player.currentTime = segments[i].start / 1000;
      return;
    }
    if (action === "remove") {
      segments.splice(i, 1);
      update();
      focusIn(Math.min(i, segments.length - 1), "remove");
      return;
    }
    const j = action === "up" ? i - 1 : i + 1;
    if (j < 0 || j >= segments.length) return;
    const moved = segments[i];
    segments[i] = segments[j];
    segments[j] = moved;
    update();
    focusIn(j, action);
  });

  document.getElementById("mark-in").addEventListener("click", markIn);
  document.getElementById("mark-out").addEventListener("click", markOut);
  document.getElementById("whole-video").addEventListener("click", wholeVideo);

  function typing(el) {
    return el instanceof HTMLElement && (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName));
  }

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    if (typing(event.target) || document.querySelector("dialog[open]")) return;
    const key = event.key.toLowerCase();
    if (key === "i") {
      event.preventDefault();
      markIn();
    } else if (key === "o") {
      event.preventDefault();
      markOut();
    }
  });

  player.addEventListener("loadedmetadata", render);
  load();
  render();
})();
