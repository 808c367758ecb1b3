// Upload with a real progress bar: XHR reports upload progress, fetch does not.
// The CSRF token travels in a header, so the server never has to parse the whole form to find it.
// Errors are shown in the page as a sentence (the server's problem+json `detail`), never as raw JSON.
(function () {
  "use strict";
  const form = document.getElementById("upload");
  if (!form) return;
  const input = document.getElementById("file");
  const submit = form.querySelector('button[type="submit"]');
  const status = document.getElementById("upload-status");
  const bar = document.getElementById("upload-progress");
  const fill = bar.querySelector(".fill");
  const text = document.getElementById("upload-text");
  const error = document.getElementById("upload-error");
  const token = document.querySelector('meta[name="csrf-token"]').content;

  function setProgress(percent) {
    bar.setAttribute("aria-valuenow", String(percent));
    fill.style.width = percent + "%";
  }

  function showError(message) {
    status.hidden = true;
    error.textContent = message;
    error.hidden = false;
    submit.disabled = false;
  }

  function problemText(xhr) {
    const fallback = {
      403: "Your session has expired: reload the page and try again.",
      413: "The file is larger than the upload limit.",
      415: "That file type is not a video.",
    }[xhr.status] || "The upload failed (error " + xhr.status + ").";
    try {
      const detail = JSON.parse(xhr.responseText).detail;
      if (typeof detail === "string" && detail) {
        return detail.charAt(0).toUpperCase() + detail.slice(1) + (/[.!?]$/.test(detail) ? "" : ".");
      }
    } catch (_) {
      // Not JSON (a proxy's error page, say): the status says enough.
    }
    return fallback;
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    const file = input.files[0];
    if (!file) return;
    const body = new FormData();
    body.append("file", file, file.name);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.setRequestHeader("X-CSRFToken", token);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.onprogress = function (e) {
      if (!e.lengthComputable) return;
      const percent = Math.round((e.loaded / e.total) * 100);
      setProgress(percent);
      text.textContent = percent < 100 ? percent + " % of " + file.name : "Checking the video…";
    };
    xhr.onload = function () {
      if (xhr.status !== 201) {
        showError(problemText(xhr));
        return;
      }
      status.hidden = true;
      submit.disabled = false;
      const rows = document.getElementById("video-rows");
      rows.insertAdjacentHTML("afterbegin", xhr.responseText);
      const row = rows.firstElementChild;
      if (window.htmx) window.htmx.process(row);
      const count = document.getElementById("video-count");
      count.textContent = String(Number(count.textContent) + 1);
      form.reset();
      const link = row.querySelector("td.name a");
      if (link) link.focus();
    };
    xhr.onerror = function () {
      showError("The connection failed during the upload. Check your network and try again.");
    };
    error.hidden = true;
    status.hidden = false;
    submit.disabled = true;
    setProgress(0);
    text.textContent = "0 % of " + file.name;
    xhr.send(body);
  });
})();
