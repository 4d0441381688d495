// The create → train → predict flow and a recommender's box: each form is a call to mlsvc's REST API through
// window.mlsvcApi (console.js), the same call a program makes. Handlers are delegated from the document, so forms
// that a live refresh brings in work too; loaded twice (a page and its recommendation part), it acts once.
"use strict";

(() => {
  if (window.mlsvcFlow) return;
  window.mlsvcFlow = true;

  const text = (value) => (value === undefined || value === null ? "" : String(value).trim());
  const element = (tag, content, attributes = {}) => {
    const node = document.createElement(tag);
    if (content !== undefined) node.textContent = content;
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
    return node;
  };

  // Run one API call for a form: its button off while it runs, the API's message shown if it is refused.
  async function submitting(form, call) {
    const button = form.querySelector("button[type=submit]");
    const result = form.querySelector(".form-result");
    if (button) button.disabled = true;
    if (result) { result.classList.remove("error"); result.textContent = "Sending…"; }
    try {
      await call();
      if (result) result.textContent = "";
    } catch (error) {
      if (result) { result.classList.add("error"); result.setAttribute("role", "alert"); result.textContent = error.message; }
      else throw error;
    } finally {
      if (button) button.disabled = false;
    }
  }

  async function createDatasource(form) {
    const body = { data_uri: text(form.elements.data_uri.value) };
    for (const name of ["target", "name"]) if (text(form.elements[name].value)) body[name] = text(form.elements[name].value);
    const ds = await window.mlsvcApi("POST", "/v1/datasources", body);
    window.location = `/console/new?datasource=${encodeURIComponent(ds.id)}`;
  }

  async function trainModel(form) {
    const body = { name: text(form.elements.name.value), datasource_id: form.dataset.datasource };
    const budget = text(form.elements.time_budget_s.value);
    if (budget) body.time_budget_s = Number(budget);
    const modelType = form.elements.model_type.value;
    if (modelType) body.model_type = modelType;
    if (form.elements.target.value) body.target = form.elements.target.value;
    const model = await window.mlsvcApi("POST", "/v1/models", body);
    const query = new URLSearchParams({ datasource: form.dataset.datasource, model: model.id });
    window.location = `/console/new?${query}`;
  }

  // A form input as the JSON value the API reads: numbers as numbers, flags as booleans, the rest as text; an
  // empty input is left out (missing). A number the browser cannot read is sent as typed, for the API to name.
  function recordOf(form) {
    const record = {};
    for (const input of form.querySelectorAll("[data-type]")) {
      const raw = text(input.value);
      if (raw === "") continue;
      const type = input.dataset.type;
      if (type === "NUMERIC") record[input.name] = Number.isFinite(Number(raw)) ? Number(raw) : raw;
      else if (type === "BINARY") record[input.name] = raw === "true" ? true : raw === "false" ? false : raw;
      else record[input.name] = raw;
    }
    return record;
  }

  function showPrediction(target, prediction) {
    target.replaceChildren();
    const headline = element("p", undefined, { class: "prediction-headline" });
    if (prediction.predicted_label !== undefined && prediction.predicted_label !== null) {
      headline.append("Predicted: ", element("strong", prediction.predicted_label, { id: "prediction-label" }));
    } else {
      headline.append("Predicted value: ", element("strong", String(prediction.predicted_value), { id: "prediction-value" }));
    }
    target.append(headline);
    const scores = Object.entries(prediction.predicted_scores || {}).sort((a, b) => b[1] - a[1]);
    if (scores.length) {
      const table = element("table", undefined, { class: "scores", id: "prediction-scores" });
      table.append(element("caption", "Scores per class", { class: "small muted" }));
      for (const [label, score] of scores) {
        const row = element("tr", undefined, { class: "score", "data-class": label, "data-score": String(score) });
        const bar = element("span", undefined, { class: "score-bar" });
        bar.style.width = `${Math.max(0, Math.min(1, score)) * 100}%`;
        const cell = element("td", undefined, { class: "score-cell" });
        cell.append(bar);
        row.append(element("th", label, { scope: "row" }), cell, element("td", score.toFixed(4), { class: "num" }));
        table.append(row);
      }
      target.append(table);
    }
    if (prediction.warnings && prediction.warnings.length) {
      const list = element("ul", undefined, { class: "warnings", id: "prediction-warnings" });
      for (const warning of prediction.warnings) list.append(element("li", warning));
      target.append(element("p", "Warnings", { class: "small muted" }), list);
    }
  }

  async function predict(form) {
    const target = document.getElementById("prediction");
    const path = `/v1/models/${encodeURIComponent(form.dataset.model)}/predict`;
    try {
      const answer = await window.mlsvcApi("POST", path, { record: recordOf(form) });
      showPrediction(target, answer.predictions[0]);
    } catch (error) {
      target.replaceChildren(element("p", error.message, { class: "error", role: "alert" }));
    }
  }

  async function ask(form) {
    const target = document.getElementById("rec-results");
    const key = form.dataset.ask;
    const body = { [key]: text(form.elements.id.value) };
    if (text(form.elements.k.value)) body.k = Number(form.elements.k.value);
    try {
      const answer = await window.mlsvcApi("POST", `/v1/models/${encodeURIComponent(form.dataset.model)}/predict`, body);
      const what = key === "user_id" ? `Recommended for user ${answer.user_id}` : `Items like ${answer.item_id}`;
      const items = answer.recommendations || [];
      target.replaceChildren(element("h3", `${what}: ${items.length} items`));
      if (answer.cold_start) {
        const why = key === "user_id" ? "an unknown user: the most popular items" : "an unknown item: similar by attributes";
        target.append(element("p", `Cold start (${why}).`, { class: "small muted", id: "rec-cold-start" }));
      }
      const list = element("ol", undefined, { class: "rec-list", id: "rec-list", "data-ask": key });
      for (const item of items) {
        const entry = element("li", undefined, { "data-item": item.item_id, "data-score": String(item.score) });
        entry.append(element("span", item.item_id, { class: "rec-item" }), element("span", item.score.toFixed(4), { class: "small muted" }));
        list.append(entry);
      }
      target.append(list);
    } catch (error) {
      target.replaceChildren(element("p", error.message, { class: "error", role: "alert" }));
    }
  }

  const actions = { "new-datasource": createDatasource, "new-model": trainModel, "try-form": predict };
  document.addEventListener("submit", (event) => {
    const form = event.target;
    const action = actions[form.id] || (form.matches("form.rec-ask") ? ask : null);
    if (!action) return;
    event.preventDefault();
    submitting(form, () => action(form));
  });
})();
