// The API tokens page: "Copy" puts the new token on the clipboard. A listener on the document, since
// htmx swaps the panel that holds the button in after the page loaded (and the Content-Security-Policy
// allows no inline handler such as hx-on).
(() => {
  "use strict";

  document.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-copy]");
    if (!button) return;
    const source = document.getElementById(button.dataset.copy);
    await navigator.clipboard.writeText(source.textContent);
    button.textContent = "Copied";
  });
})();
