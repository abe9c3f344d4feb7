// The console's own script. Pages work without it; it adds:
// * confirmations: a form with data-confirm asks before it is sent;
// * uploads with a progress bar (forms with data-upload), sent with the CSRF header;
// * the CSRF header on htmx requests comes from <body hx-headers>, not from here.
"use strict";

document.addEventListener("submit", (ev) => {
  const form = ev.target;
  if (!(form instanceof HTMLFormElement)) return;
  const question = form.dataset.confirm;
  if (question && !window.confirm(question)) {
    ev.preventDefault();
    ev.stopImmediatePropagation();
    return;
  }
  if (form.dataset.upload !== undefined) {
    ev.preventDefault();
    upload(form);
  }
}, true);

function csrfToken() {
  const body = document.body.getAttribute("hx-headers");
  try {
    return JSON.parse(body)["X-CSRF-Token"];
  } catch (_) {
    return "";
  }
}

// Sends the form's file as the request body (its other fields in the query string) with
// XMLHttpRequest, showing progress in the form's <progress> and status element; on success
// follows the location the server names. The body is the file alone so that the server can
// stream it on with its exact length.
function upload(form) {
  const bar = form.querySelector("progress");
  const status = form.querySelector("[data-status]");
  const button = form.querySelector("button[type=submit]");
  const data = new FormData(form);
  let file = null;
  const params = new URLSearchParams();
  for (const [k, v] of data) {
    if (typeof v === "string") {
      if (k !== "_csrf") params.append(k, v);
    } else {
      file = v;
    }
  }
  const xhr = new XMLHttpRequest();
  xhr.open("POST", form.getAttribute("action") + "?" + params.toString());
  xhr.setRequestHeader("X-CSRF-Token", csrfToken());
  xhr.setRequestHeader("X-Sunstone-Upload", "1");
  const say = (text) => { if (status) status.textContent = text; };
  xhr.upload.addEventListener("progress", (e) => {
    if (!bar || !e.lengthComputable) return;
    bar.max = e.total;
    bar.value = e.loaded;
    const pct = Math.floor(e.loaded / e.total * 100);
    say(pct < 100 ? `Uploading… ${pct} %` : "Uploaded; registering the image…");
  });
  xhr.addEventListener("load", () => {
    if (button) button.disabled = false;
    let answer = {};
    try { answer = JSON.parse(xhr.responseText); } catch (_) { answer = { error: xhr.responseText }; }
    if (xhr.status >= 200 && xhr.status < 300 && answer.location) {
      window.location.href = answer.location;
    } else {
      say(answer.error || `Upload failed (HTTP ${xhr.status})`);
      form.classList.add("failed");
    }
  });
  xhr.addEventListener("error", () => {
    if (button) button.disabled = false;
    say("Upload failed: the connection was lost.");
    form.classList.add("failed");
  });
  if (button) button.disabled = true;
  form.classList.remove("failed");
  if (bar) { bar.hidden = false; bar.value = 0; }
  say("Uploading… 0 %");
  xhr.send(file);
}
