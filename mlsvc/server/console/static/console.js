// What every console page shares: calls to mlsvc's own REST API with the page's CSRF token, live refresh of the
// parts of a page that show work in progress, and sign-out. No library, nothing fetched from another host.
"use strict";

const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";

// The REST API a program calls; with the console's session the cookie authenticates and the token guards changes.
async function api(method, path, body) {
  const headers = { "content-type": "application/json" };
  if (csrf) headers["x-csrf-token"] = csrf;
  const response = await fetch(path, {
    method, headers, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const message = data && data.error ? data.error.message : `${response.status} ${response.statusText}`;
    throw new Error(message);
  }
  return data;
}
window.mlsvcApi = api;

// An element with data-refresh="URL" is replaced by the same element of URL's page every few seconds while the
// page shows work in progress (data-live="1"): lists and pages follow their jobs without a reload.
function refreshLive() {
  for (const element of document.querySelectorAll("[data-refresh][data-live='1']")) {
    fetch(element.dataset.refresh, { credentials: "same-origin" })
      .then((r) => (r.ok ? r.text() : null))
      .then((html) => {
        if (!html || !element.id) return;
        const fresh = new DOMParser().parseFromString(html, "text/html").getElementById(element.id);
        if (fresh) element.replaceWith(fresh);
      })
      .catch(() => {});
  }
}
setInterval(refreshLive, 2000);

document.getElementById("sign-out")?.addEventListener("click", async () => {
  await fetch("/console/logout", { method: "POST", headers: { "x-csrf-token": csrf }, credentials: "same-origin" });
  window.location = "/console/login";
});
