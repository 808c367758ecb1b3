// Live export cards and history rows, and refusals shown in place.
(() => {
  "use strict";

  // Each /ws/ui/exports message holds an export's card and its history row; a page shows one of
  // them (or neither: another video's export, a filtered-out row). htmx reports every fragment
  // without a target as an error, so only those with an element on this page are kept.
  htmx.defineExtension("exports-live", {
    transformResponse(text) {
      const template = document.createElement("template");
      template.innerHTML = text;
      for (const element of Array.from(template.content.children)) {
        if (!element.id || !document.getElementById(element.id)) element.remove();
      }
      return template.innerHTML;
    },
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
