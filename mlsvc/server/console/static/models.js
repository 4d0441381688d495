// The model and evaluation pages: the threshold slider (precision, recall, false-positive rate, accuracy and the
// confusion counts follow it from the evaluation's own table, embedded in the page: nothing is asked of the server
// while it moves), saving the threshold, and moving an alias. Both actions call the REST API a program would.
// Listeners sit on the document, so parts that a live refresh replaces keep working.
"use strict";

const RATE_FIELDS = ["precision", "recall", "false_positive_rate", "accuracy", "f1"];

function tableOf(view) {
  if (!view.thresholdRows) {
    view.thresholdRows = JSON.parse(view.querySelector("script[data-threshold-table]").textContent);
  }
  return view.thresholdRows;
}

function shown(field, value) {
  if (value === null || value === undefined) return "—";
  if (field === "threshold") return value.toFixed(2);
  return RATE_FIELDS.includes(field) ? String(Number(value.toPrecision(3))) : String(value);
}

// A marker of the threshold in a chart, made once and then moved.
function marker(svg, tag) {
  let mark = svg.querySelector(`${tag}.cursor`);
  if (!mark) {
    mark = document.createElementNS("http://www.w3.org/2000/svg", tag);
    mark.setAttribute("class", "cursor");
    svg.appendChild(mark);
  }
  return mark;
}

// The plot's box of a chart: the unit square of a curve, the value axis of a histogram.
function box(svg) {
  const rect = svg && svg.querySelector("rect.frame, rect.plot-area");
  if (!rect) return null;
  const [x, y, w, h] = ["x", "y", "width", "height"].map((name) => Number(rect.getAttribute(name)));
  return { x, y, w, h };
}

// The threshold's point on the ROC and precision-recall curves, and its place among the scores of each class.
function markCharts(row) {
  const points = [["#roc svg", row.false_positive_rate, row.recall], ["#precision-recall svg", row.recall, row.precision]];
  for (const [selector, x, y] of points) {
    const svg = document.querySelector(selector);
    const b = box(svg);
    if (!b) continue;
    const dot = marker(svg, "circle");
    const defined = x !== null && y !== null;
    dot.setAttribute("r", defined ? 4.5 : 0);
    if (defined) {
      dot.setAttribute("cx", (b.x + b.w * x).toFixed(1));
      dot.setAttribute("cy", (b.y + b.h * (1 - y)).toFixed(1));
    }
  }
  for (const svg of document.querySelectorAll("[data-score-histogram] svg")) {
    const b = box(svg);
    if (!b) continue;
    const line = marker(svg, "line");
    const x = (b.x + b.w * row.threshold).toFixed(1);
    for (const [name, value] of [["x1", x], ["x2", x], ["y1", b.y], ["y2", b.y + b.h]]) line.setAttribute(name, value);
  }
}

// The row of the table at the slider's threshold (0.00, 0.01, … 1.00: row i is threshold i / 100).
function showThreshold(slider) {
  const view = slider.closest("[data-threshold-view]");
  const row = tableOf(view)[Math.round(Number(slider.value) * 100)];
  if (!row) return;
  for (const element of view.querySelectorAll("[data-field]")) {
    element.textContent = shown(element.dataset.field, row[element.dataset.field]);
  }
  markCharts(row);
}

for (const slider of document.querySelectorAll("input[data-threshold-slider]")) showThreshold(slider);

document.addEventListener("input", (event) => {
  if (event.target.matches("input[data-threshold-slider]")) showThreshold(event.target);
});

async function saveThreshold(button) {
  const view = button.closest("[data-threshold-view]");
  const threshold = Number(view.querySelector("input[data-threshold-slider]").value);
  const status = view.querySelector("#threshold-saved");
  status.classList.remove("error");
  status.textContent = "Saving…";
  try {
    const path = `/v1/models/${encodeURIComponent(button.dataset.model)}`;
    const model = await window.mlsvcApi("PATCH", path, { score_threshold: threshold });
    const saved = shown("threshold", model.score_threshold);
    status.textContent = `Saved: the score threshold is now ${saved}.`;
    for (const element of document.querySelectorAll("[data-current-threshold]")) element.textContent = saved;
  } catch (error) {
    status.classList.add("error");
    status.textContent = `Not saved: ${error.message}`;
  }
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-save-threshold]");
  if (button) saveThreshold(button);
});

// Parts of this page as the server now renders them (after a change, the aliases of every version).
async function refreshParts(ids) {
  const response = await fetch(window.location.href, { credentials: "same-origin" });
  if (!response.ok) return;
  const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
  for (const id of ids) {
    const part = fresh.getElementById(id);
    if (part) document.getElementById(id)?.replaceWith(part);
  }
}

async function moveAlias(form) {
  const alias = form.elements.alias.value.trim();
  const result = form.querySelector("#alias-result");
  result.classList.remove("error");
  try {
    const path = `/v1/models/${encodeURIComponent(form.dataset.name)}/aliases/${encodeURIComponent(alias)}`;
    const model = await window.mlsvcApi("PUT", path, { version: Number(form.dataset.version) });
    await refreshParts(["model-badges", "model-aliases", "model-versions"]);
    const now = document.querySelector("#alias-result");
    if (now) now.textContent = `'${alias}' now points at version ${model.version}.`;
  } catch (error) {
    result.classList.add("error");
    result.textContent = `Not moved: ${error.message}`;
  }
}

document.addEventListener("submit", (event) => {
  if (!event.target.matches("form[data-alias-form]")) return;
  event.preventDefault();
  moveAlias(event.target);
});
