// gesture-web's page: webcam frames or a chosen photo -> POST /api/classify -> boxes, labels
// and the current gesture. One request at a time: the next frame is taken when the answer is
// in, so a slow server lowers the frame rate instead of piling up requests.
"use strict";

// The colours of gesture-client's annotated photos (client/annotate.py), box by box.
const PALETTE = ["rgb(255,64,64)", "rgb(64,200,64)", "rgb(64,128,255)", "rgb(255,200,0)", "rgb(200,64,255)"];
// The smoothing rule of `gesture-client stream --smooth N`: mean of the last N distributions.
const SMOOTH_FRAMES = 5;
// Photos are scaled to this longest side before sending; the detector works at 320 px anyway.
const MAX_SIDE = 1280;
const JPEG_QUALITY = 0.85;

const $ = (id) => document.getElementById(id);
const view = $("view");
const viewCtx = view.getContext("2d");
const grab = document.createElement("canvas");
const grabCtx = grab.getContext("2d");
const video = $("video");

let stream = null;
let running = false;
let recent = [];
let lastAnswerAt = null;
let intervalAvg = null;
let answered = 0;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function setStatus(text, isError = false) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

async function classify(blob) {
  const response = await fetch("/api/classify", {
    method: "POST",
    body: blob,
    headers: { "Content-Type": blob.type || "application/octet-stream" },
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error(answer.error || `the app answered HTTP ${response.status}`);
  }
  return answer;
}

// The frame that was sent, with the answer's boxes: boxes are in that frame's pixels.
function draw(source, width, height, answer) {
  view.width = width;
  view.height = height;
  viewCtx.drawImage(source, 0, 0, width, height);
  const short = Math.min(width, height);
  const line = Math.max(2, Math.round(short / 200));
  const font = Math.max(12, Math.round(short / 28));
  viewCtx.font = `${font}px system-ui, sans-serif`;
  viewCtx.lineWidth = line;
  viewCtx.textBaseline = "top";
  answer.hands.forEach((hand, i) => {
    const [x1, y1, x2, y2] = hand.box;
    const colour = PALETTE[i % PALETTE.length];
    viewCtx.strokeStyle = colour;
    viewCtx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const text = `${hand.gesture} ${hand.gesture_score.toFixed(2)}`;
    const w = viewCtx.measureText(text).width + 6;
    const h = font + 6;
    const y = y1 >= h ? y1 - h : y1; // above the box when there is room
    viewCtx.fillStyle = colour;
    viewCtx.fillRect(x1, y, w, h);
    viewCtx.fillStyle = "#fff";
    viewCtx.fillText(text, x1 + 3, y + 3);
  });
}

function smoothed(answer) {
  const labels = Object.keys(answer.probabilities);
  recent.push(labels.map((name) => answer.probabilities[name]));
  if (recent.length > SMOOTH_FRAMES) recent.shift();
  const mean = labels.map((_, k) => recent.reduce((sum, p) => sum + p[k], 0) / recent.length);
  let best = 0;
  mean.forEach((p, k) => { if (p > mean[best]) best = k; });
  return `${labels[best]} ${mean[best].toFixed(2)}`;
}

function show(answer) {
  answered += 1;
  const now = performance.now();
  if (lastAnswerAt !== null) {
    const interval = now - lastAnswerAt;
    intervalAvg = intervalAvg === null ? interval : 0.8 * intervalAvg + 0.2 * interval;
    $("fps").textContent = (1000 / intervalAvg).toFixed(1);
  }
  lastAnswerAt = now;
  $("gesture").textContent = answer.gesture;
  $("score").textContent = answer.score.toFixed(2);
  $("smoothed").textContent = smoothed(answer);
  $("hands").textContent = String(answer.hands.length);
  $("latency").textContent = `${answer.latency_ms.toFixed(0)} ms`;
  // For scripts and tests: what the page shows, as data.
  document.body.dataset.answered = String(answered);
  document.body.dataset.hands = String(answer.hands.length);
  window.lastAnswer = answer;
}

function toBlob(canvas) {
  return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", JPEG_QUALITY));
}

async function cameraLoop() {
  while (running) {
    if (video.readyState < 2 || !video.videoWidth) {
      await sleep(50);
      continue;
    }
    const width = video.videoWidth;
    const height = video.videoHeight;
    grab.width = width;
    grab.height = height;
    grabCtx.drawImage(video, 0, 0, width, height);
    try {
      const answer = await classify(await toBlob(grab));
      if (!running) break;
      draw(grab, width, height, answer);
      show(answer);
      setStatus(`camera ${width}x${height}`);
    } catch (error) {
      setStatus(error.message, true);
      await sleep(1000); // the server may be restarting: do not hammer it
    }
  }
}

async function startCamera() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    setStatus("this browser gives no camera here (open the page on localhost or HTTPS)", true);
    return;
  }
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: 640 }, height: { ideal: 480 } },
      audio: false,
    });
  } catch (error) {
    setStatus(`no camera: ${error.message}`, true);
    return;
  }
  video.srcObject = stream;
  await video.play();
  running = true;
  recent = [];
  lastAnswerAt = null;
  intervalAvg = null;
  $("camera").disabled = true;
  $("stop").disabled = false;
  cameraLoop();
}

function stopCamera() {
  running = false;
  if (stream) stream.getTracks().forEach((track) => track.stop());
  stream = null;
  $("camera").disabled = false;
  $("stop").disabled = true;
}

async function classifyPhoto(file) {
  stopCamera();
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch (error) {
    setStatus(`${file.name}: not an image this browser can open`, true);
    return;
  }
  // Sent as drawn (EXIF rotation applied, scaled down), so the boxes fit what is shown.
  const scale = Math.min(1, MAX_SIDE / Math.max(bitmap.width, bitmap.height));
  const width = Math.round(bitmap.width * scale);
  const height = Math.round(bitmap.height * scale);
  grab.width = width;
  grab.height = height;
  grabCtx.drawImage(bitmap, 0, 0, width, height);
  try {
    const answer = await classify(await toBlob(grab));
    recent = [];
    draw(grab, width, height, answer);
    show(answer);
    setStatus(file.name);
  } catch (error) {
    setStatus(error.message, true);
  }
}

$("camera").addEventListener("click", startCamera);
$("stop").addEventListener("click", stopCamera);
$("photo").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (file) classifyPhoto(file);
});
