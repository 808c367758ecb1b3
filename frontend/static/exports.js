// Live export cards and history rows, and refusals shown in place.
(() => {
  "use strict";

  // Bring `old` to look like `fresh` while keeping its nodes: attributes and text change in place
  // (the bar's width transition runs, focus and hover stay), a different shape is replaced.
  function morph(old, fresh) {
    if (old.tagName !== fresh.tagName) {
      old.replaceWith(fresh);
      return;
    }
    for (const { name } of Array.from(old.attributes)) {
      if (!fresh.hasAttribute(name)) old.removeAttribute(name);
    }
    for (const { name, value } of Array.from(fresh.attributes)) {
      if (old.getAttribute(name) !== value) old.setAttribute(name, value);
    }
    const before = Array.from(old.childNodes);
    const after = Array.from(fresh.childNodes);
    if (before.length !== after.length) {
      old.replaceChildren(...after);
      return;
    }
    before.forEach((node, i) => {
      const next = after[i];
      if (node.nodeType === Node.ELEMENT_NODE && next.nodeType === Node.ELEMENT_NODE) {
        morph(node, next);
      } else if (node.nodeType !== next.nodeType || node.nodeValue !== next.nodeValue) {
        node.replaceWith(next);
      }
    });
  }

  // While an export keeps its status, only its [data-live] parts (bar, phase, fps, ETA, encoder,
  // GPU note) change: update those and leave the rest, buttons included, untouched, so a click on
  // Cancel is never lost to a swap. False when the element must be replaced whole.
  function updateInPlace(current, fresh) {
    if (current.dataset.status !== fresh.dataset.status) return false;
    const olds = current.querySelectorAll("[data-live]");
    const news = fresh.querySelectorAll("[data-live]");
    if (olds.length !== news.length) return false;
    olds.forEach((old, i) => morph(old, news[i]));
    return true;
  }

  // Where a new export's element goes on this page, if anywhere: the video page's cards of its
  // video; the history table when it shows the newest page and the row matches its filters. Only
  // an export newer than the newest one shown is new (one older than it was left out by the page).
  function newHome(element) {
    let home = null;
    if (element.matches("article.export")) {
      home = document.querySelector(`#exports[data-video-id="${element.dataset.videoId}"]`);
    } else if (element.matches("tr.history-row")) {
      const body = document.querySelector("#history-body[data-live-insert]");
      const wanted = (key) => !body.dataset[key] || body.dataset[key] === element.dataset[key];
      if (body && wanted("status") && wanted("videoId")) home = body;
    }
    const newest = home && home.firstElementChild;
    return !newest || element.dataset.created >= newest.dataset.created ? home : null;
  }

  // Each /ws/ui/exports message holds an export's card and its history row. A page shows one of
  // them, or neither (another video's export, a filtered-out row): htmx reports every fragment
  // without a target as an error, so what is handled here is taken out, and htmx swaps the rest
  // (an element whose status changed) whole, by id.
  htmx.defineExtension("exports-live", {
    transformResponse(text) {
      const template = document.createElement("template");
      template.innerHTML = text;
      for (const element of Array.from(template.content.children)) {
        const current = element.id && document.getElementById(element.id);
        if (current && updateInPlace(current, element)) {
          element.remove();
        } else if (!current) {
          const home = element.id && newHome(element);
          element.remove();
          if (home) {
            home.prepend(element);
            htmx.process(element);
          }
        }
      }
      return template.innerHTML;
    },
  });

  // The dialog's and Re-run's answers prepend the new export, which the socket may have shown
  // already: keep the element that came first, it is being kept up to date.
  document.addEventListener("htmx:load", (event) => {
    const element = event.detail.elt;
    if (element.id && document.querySelectorAll(`[id="${element.id}"]`).length > 1) element.remove();
  });

  // htmx 2 swaps no 4xx answer by default. Under [data-swap-errors] the server answers a refusal
  // (a form with field errors 422, a busy video 409, too many exports 429) with HTML to show.
  document.addEventListener("htmx:beforeSwap", (event) => {
    const status = event.detail.xhr.status;
    if ([409, 422, 429].includes(status) && event.detail.elt.closest("[data-swap-errors]")) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
})();
