// The export dialog: open it from #open-export, keep focus inside, summarise the marked segments,
// narrow Codec to what the chosen Format allows, show the Encoder note while GPU is chosen, and
// close it once an export has started.
// The server renders the form and judges it; this only does what htmx cannot.
(() => {
  "use strict";

  const dialog = () => document.getElementById("export-dialog");

  function markedSegments() {
    const field = document.getElementById("segments-field");
    try {
      const list = JSON.parse((field && field.value) || "[]");
      return Array.isArray(list) ? list : [];
    } catch {
      return [];
    }
  }

  function clock(seconds) {
    const whole = Math.floor(seconds);
    const tenths = Math.round((seconds - whole) * 10) % 10;
    return `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, "0")}.${tenths}`;
  }

  function summarise() {
    const out = document.getElementById("export-segments-summary");
    if (!out) return;
    const list = markedSegments();
    const total = list.reduce((sum, s) => sum + Math.max(0, Number(s.end) - Number(s.start)), 0);
    out.textContent = list.length
      ? `${list.length} segment${list.length === 1 ? "" : "s"}, ${clock(total)} in total`
      : "Whole video (no segments marked)";
  }

  function narrowCodecs(form) {
    const format = form.elements.format;
    const codec = form.elements.codec;
    const allowed = JSON.parse(format.dataset.codecs)[format.value] || [];
    const labels = JSON.parse(codec.dataset.labels);
    const keep = allowed.includes(codec.value) ? codec.value : allowed[0];
    codec.replaceChildren(...allowed.map((v) => new Option(labels[v] || v, v, v === keep, v === keep)));
  }

  function focusFirst(d) {
    const target = d.querySelector('[aria-invalid="true"]') || d.querySelector("#export-form select");
    if (target) target.focus();
  }

  function tabbables(d) {
    return Array.from(d.querySelectorAll("button, select, input, a[href], [tabindex]")).filter(
      (el) => !el.disabled && el.tabIndex >= 0 && el.type !== "hidden" && el.getClientRects().length > 0,
    );
  }

  document.addEventListener("click", (event) => {
    const d = dialog();
    if (!d) return;
    if (event.target.closest("#open-export")) {
      summarise();
      d.showModal();
      focusFirst(d);
    } else if (event.target.closest("[data-close-dialog]")) {
      d.close();
    }
  });

  // The server renders the note (no GPU worker online) only when it applies; it shows while GPU is chosen.
  function showEncoderNote(form) {
    const note = document.getElementById("export-encoder-note");
    if (note) note.hidden = form.elements.encoder.value !== "gpu";
  }

  document.addEventListener("change", (event) => {
    if (event.target.matches("#export-form [name=format]")) narrowCodecs(event.target.form);
    if (event.target.matches("#export-form [name=encoder]")) showEncoderNote(event.target.form);
  });

  // A modal <dialog> already makes the page inert; this keeps Tab cycling inside it instead of
  // leaving for the browser's own controls.
  document.addEventListener("keydown", (event) => {
    const d = dialog();
    if (event.key !== "Tab" || !d || !d.open) return;
    const items = tabbables(d);
    if (!items.length) return;
    const first = items[0];
    const last = items[items.length - 1];
    if (event.shiftKey && (document.activeElement === first || !d.contains(document.activeElement))) {
      event.preventDefault();
      last.focus();
    } else if (!event.shiftKey && (document.activeElement === last || !d.contains(document.activeElement))) {
      event.preventDefault();
      first.focus();
    }
  });

  // The server answers a refused form with the form again (field errors inline): point at the first.
  document.addEventListener("htmx:afterSwap", (event) => {
    if (event.target.id !== "export-form") return;
    summarise();
    const d = dialog();
    if (d && d.open) focusFirst(d);
  });

  // HX-Trigger from POST /videos/{id}/exports: the card is in #exports, the dialog's job is done.
  document.addEventListener("export-created", () => {
    const d = dialog();
    if (d && d.open) d.close();
  });
})();
