// The overview's chart: cumulative declared compute per party over logged time, drawn with the vendored uPlot.
// The same numbers are in the table under it, so the page reads without JavaScript.
const COLOURS = ["#1f5fa8", "#b00020", "#0b6b2b", "#7a4b00", "#6a3d9a", "#00727a", "#8a2a5c", "#444444", "#999999"];

function draw() {
  const box = document.getElementById("compute-chart");
  const data = document.getElementById("compute-data");
  if (!box || !data || typeof uPlot === "undefined") return;
  const d = JSON.parse(data.textContent);
  if (!d.x.length) { box.textContent = "No runs declared yet."; return; }
  const series = [{ label: "time (UTC)" }].concat(d.series.map((name, k) => ({
    label: name, stroke: COLOURS[k % COLOURS.length], width: 2, paths: uPlot.paths.stepped({ align: 1 }),
    value: (u, v) => v == null ? "—" : v.toExponential(2) + " FLOP",
  })));
  const opts = {
    width: Math.max(320, Math.min(box.clientWidth || 900, 1100)), height: 300, series,
    scales: { x: { time: true } },
    axes: [{}, { size: 80, values: (u, vals) => vals.map(v => v.toExponential(1)) }],
  };
  const chart = new uPlot(opts, [d.x].concat(d.y), box);
  box.dataset.series = d.series.join("|");
  box.dataset.drawn = "1";
  window.redlineChart = chart;
}

if (document.readyState === "complete") draw(); else window.addEventListener("load", draw);
