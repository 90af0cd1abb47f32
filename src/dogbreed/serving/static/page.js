// The page at / of the local server: each photo chosen or dropped is sent, one after the other, to
// POST /invocations exactly as any client sends it (the file's bytes, its own Content-Type), and the
// answer drawn as five labelled bars; with "Show why", the Grad-CAM heat map of the top breed lies over
// the photo. Errors are the server's own, put as a sentence beside the photo.
"use strict";

const TOPK = 5;

// What each refusal means for a person holding a photo; the server's message follows it.
const SENTENCES = {
  0: "The server could not be reached: is it still running?",
  400: "The server could not read this file as a photo.",
  406: "The server cannot answer in the form this page asked for.",
  408: "The photo took too long to arrive at the server; try again.",
  413: "This photo is too large for the server: try a smaller one.",
  415: "This kind of file is not an image the server reads (JPEG, PNG, WebP, BMP, GIF or TIFF).",
  500: "The server failed to answer; its log says why.",
  503: "The server is busy with other photos; try again in a moment.",
};

function percent(p) {
  if (p > 0 && p < 0.001) return "<0.1%";
  return `${(100 * p).toFixed(p >= 0.995 || p === 0 ? 0 : 1)}%`;
}

async function describeModel() {
  const line = document.getElementById("model");
  try {
    const response = await fetch("model");
    if (!response.ok) throw new Error(`status ${response.status}`);
    const model = await response.json();
    const parts = [`${model.title}`];
    if (model.test_accuracy !== null) {
      let accuracy = `test accuracy ${percent(model.test_accuracy)}`;
      if (model.test_top5_accuracy !== null) accuracy += ` (top-5 ${percent(model.test_top5_accuracy)})`;
      parts.push(accuracy);
    } else {
      parts.push("no test accuracy recorded with this model");
    }
    if (model.engine) parts.push(`served by ${model.engine}`);
    line.textContent = parts.join(" · ");
    if (model.report) document.getElementById("report").hidden = false;
  } catch (error) {
    line.textContent = `The model's description could not be read (${error.message}).`;
  }
}

function addResult(file) {
  const item = document.getElementById("result").content.firstElementChild.cloneNode(true);
  const picture = item.querySelector(".picture");
  picture.src = URL.createObjectURL(file);
  picture.alt = `Your photo ${file.name}, the centre square the model looks at`;
  item.querySelector("figcaption").textContent = file.name;
  document.getElementById("results").prepend(item);
  return item;
}

function showBars(item, prediction) {
  const bars = item.querySelector(".bars");
  bars.replaceChildren();
  for (const entry of prediction.topk) {
    const row = document.createElement("li");
    row.setAttribute("aria-label", `${entry.label}: ${percent(entry.probability)}`);
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = entry.label;
    label.title = entry.class_name;
    const track = document.createElement("span");
    track.className = "track";
    track.setAttribute("aria-hidden", "true");
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.display = "block";
    fill.style.width = `${(100 * entry.probability).toFixed(2)}%`;
    track.append(fill);
    const value = document.createElement("span");
    value.className = "probability";
    value.textContent = percent(entry.probability);
    row.append(label, track, value);
    bars.append(row);
  }
  bars.hidden = false;
}

function showHeatmap(item, gradcam) {
  const heatmap = item.querySelector(".heatmap");
  // The map covers the centred square the network sees: crop_fraction of the photo's shorter side, which
  // is the frame's side (the frame shows the photo's centre square).
  const inset = `${((100 * (1 - gradcam.crop_fraction)) / 2).toFixed(3)}%`;
  Object.assign(heatmap.style, { top: inset, left: inset, right: inset, bottom: inset,
                                 width: `calc(100% - 2 * ${inset})`, height: `calc(100% - 2 * ${inset})` });
  heatmap.src = `data:image/png;base64,${gradcam.png}`;
  heatmap.alt = `Heat map over the photo: red where the model found the most evidence for ${gradcam.label}`;
  heatmap.hidden = false;
  const slider = item.querySelector(".slider");
  const opacity = slider.querySelector("input");
  opacity.setAttribute("aria-label", `Opacity of the heat map for ${gradcam.label}`);
  const apply = () => { heatmap.style.opacity = String(opacity.value / 100); };
  opacity.addEventListener("input", apply);
  apply();
  slider.hidden = false;
}

function showError(item, status, message) {
  const sentence = SENTENCES[status] || `The server answered with status ${status}.`;
  const error = item.querySelector(".error");
  error.textContent = message ? `${sentence} (${message})` : sentence;
  error.hidden = false;
  item.querySelector(".status").hidden = true;
  item.dataset.state = "error";
}

async function ask(file, item, explain) {
  let accept = `application/json; topk=${TOPK}`;
  if (explain) accept += "; explain=gradcam";
  const started = performance.now();
  let response;
  try {
    response = await fetch("invocations", {
      method: "POST",
      headers: { "Content-Type": file.type || "application/octet-stream", Accept: accept },
      body: file,
    });
  } catch (error) {
    showError(item, 0, error.message);
    return;
  }
  const body = await response.json().catch(() => ({}));
  const elapsed = performance.now() - started;
  if (!response.ok) {
    showError(item, response.status, body.message);
    return;
  }
  const prediction = body.predictions[0];
  showBars(item, prediction);
  const latency = item.querySelector(".latency");
  latency.textContent = `Answered in ${Math.round(elapsed)} ms (upload, decoding, the network${explain ? ", the heat map" : ""}).`;
  latency.hidden = false;
  item.querySelector(".status").textContent = `Most likely ${prediction.topk[0].label}.`;
  if (prediction.gradcam) showHeatmap(item, prediction.gradcam);
  item.dataset.state = "done";
}

async function askAll(files) {
  const explain = document.getElementById("explain").checked;
  const items = Array.from(files, (file) => [file, addResult(file)]);
  for (const [file, item] of items) await ask(file, item, explain);
}

function setUp() {
  for (const id of ["photos", "camera"]) {
    const input = document.getElementById(id);
    input.addEventListener("change", () => {
      if (input.files.length) askAll(input.files);
      input.value = "";  // choosing the same file again asks again
    });
  }
  const drop = document.getElementById("drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("dragging"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("dragging"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("dragging");
    if (event.dataTransfer.files.length) askAll(event.dataTransfer.files);
  });
  describeModel();
}

setUp();
