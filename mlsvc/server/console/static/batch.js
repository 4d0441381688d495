// Starting a batch prediction from the console: the form is a POST /v1/batch-predictions through window.mlsvcApi
// (console.js), as a program would send it; on success the page of the new job follows its progress.
"use strict";

document.addEventListener("submit", async (event) => {
  const form = event.target;
  if (form.id !== "batch-form") return;
  event.preventDefault();
  const value = (name) => form.elements[name].value.trim();
  const body = { model: value("model"), output_uri: value("output_uri") };
  for (const name of ["datasource_id", "data_uri", "name"]) if (value(name)) body[name] = value(name);
  const button = form.querySelector("button[type=submit]");
  const result = form.querySelector(".form-result");
  button.disabled = true;
  result.classList.remove("error");
  result.textContent = "Sending…";
  try {
    const batch = await window.mlsvcApi("POST", "/v1/batch-predictions", body);
    window.location = `/console/batch-predictions/${encodeURIComponent(batch.id)}`;
  } catch (error) {
    result.classList.add("error");
    result.textContent = error.message;
  } finally {
    button.disabled = false;
  }
});
