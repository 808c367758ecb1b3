// Upload with a real progress bar: XHR exposes upload progress, fetch does not.
// The CSRF token travels in a header, so the server never has to parse the whole form to find it.
(function () {
  const form = document.getElementById("upload");
  if (!form) return;
  const status = document.getElementById("upload-status");
  const bar = document.getElementById("upload-progress");
  const text = document.getElementById("upload-text");
  const error = document.getElementById("upload-error");
  const token = document.querySelector('meta[name="csrf-token"]').content;

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    const file = document.getElementById("file").files[0];
    if (!file) return;
    const body = new FormData();
    body.append("file", file, file.name);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.setRequestHeader("X-CSRFToken", token);
    xhr.upload.onprogress = function (e) {
      if (!e.lengthComputable) return;
      const pct = Math.round((e.loaded / e.total) * 100);
      bar.value = pct;
      text.textContent = pct < 100 ? pct + " %" : "Checking the video…";
    };
    xhr.onload = function () {
      status.hidden = true;
      if (xhr.status === 201) {
        document.getElementById("video-rows").insertAdjacentHTML("afterbegin", xhr.responseText);
        const empty = document.getElementById("empty");
        if (empty) empty.remove();
        const count = document.getElementById("video-count");
        count.textContent = String(Number(count.textContent) + 1);
        form.reset();
        return;
      }
      let message = "Upload failed (" + xhr.status + ").";
      try { message = JSON.parse(xhr.responseText).detail || message; } catch (_) { /* not JSON */ }
      error.textContent = message;
      error.hidden = false;
    };
    xhr.onerror = function () {
      status.hidden = true;
      error.textContent = "The connection failed during the upload.";
      error.hidden = false;
    };
    error.hidden = true;
    status.hidden = false;
    bar.value = 0;
    text.textContent = "0 %";
    xhr.setRequestHeader("Accept", "application/json");
    xhr.send(body);
  });
})();
