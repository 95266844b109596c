// The overview's charts (Chart.js, vendored). The figures come from the page itself
// (#chart-data) and are also in the table beneath, which stays for anyone without
// JavaScript or a screen: the charts only add a picture. A click on a bar opens the
// history filtered to the messages behind it.
(function () {
  "use strict";
  var source = document.getElementById("chart-data");
  if (!source || typeof window.Chart === "undefined") return;
  var data = JSON.parse(source.textContent);
  var colours = {delivered: "#15803d", failed: "#b91c1c", awaiting: "#64748b", unknown: "#b45309",
                 refused: "#7c3aed"};
  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
  Chart.defaults.color = "#334155";
  Chart.defaults.animation = false;  // figures, not a show: drawn at once, as they are

  function show(name) {
    var box = document.querySelector('[data-chart="' + name + '"]');
    box.hidden = false;
    return box.querySelector("canvas");
  }

  // The log axis's labels: only round times (Chart.js also offers 3, 4, 7...).
  var NICE = [1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 21600, 43200, 86400];

  function duration(seconds) {
    if (seconds < 60) return seconds + " s";
    if (seconds < 3600) return Math.round(seconds / 6) / 10 + " min";
    return Math.round(seconds / 360) / 10 + " h";
  }

  // A day without messages has no rate and no time to delivery: the lines break there
  // (spanGaps false) rather than draw a trend through days that had none.
  var datasets = data.outcomes.map(function (o) {
    return {type: "bar", label: o.label, data: o.values, backgroundColor: colours[o.key],
            stack: "messages", yAxisID: "y", links: o.links, order: 2};
  });
  datasets.push({type: "line", label: "Delivery rate (%)", data: data.rate, yAxisID: "rate",
                 borderColor: "#1d4ed8", backgroundColor: "#1d4ed8", spanGaps: false,
                 pointRadius: 3, order: 1});
  new Chart(show("outcomes"), {
    data: {labels: data.labels, datasets: datasets},
    options: {
      responsive: true, maintainAspectRatio: false,
      interaction: {mode: "index", intersect: false},
      scales: {
        x: {stacked: true},
        y: {stacked: true, beginAtZero: true, title: {display: true, text: "Messages"},
            ticks: {precision: 0}},
        rate: {position: "right", min: 0, max: 100, grid: {drawOnChartArea: false},
               title: {display: true, text: "Delivered %"}}
      },
      onHover: function (event, elements) {
        event.native.target.style.cursor = elements.some(function (e) {
          return datasets[e.datasetIndex].links; }) ? "pointer" : "default";
      },
      onClick: function (event, elements, chart) {
        var hit = chart.getElementsAtEventForMode(event, "nearest", {intersect: true}, false)
          .filter(function (e) { return datasets[e.datasetIndex].links; })[0];
        if (hit && datasets[hit.datasetIndex].data[hit.index]) {
          window.location.href = datasets[hit.datasetIndex].links[hit.index];
        }
      }
    }
  });

  if (data.p50.some(function (v) { return v; })) {
    new Chart(show("latency"), {
      type: "line",
      data: {labels: data.labels, datasets: [
        {label: "Half delivered within", data: data.p50, borderColor: "#15803d",
         backgroundColor: "#15803d", spanGaps: false},
        {label: "95% delivered within", data: data.p95, borderColor: "#b45309",
         backgroundColor: "#b45309", borderDash: [6, 4], spanGaps: false}
      ]},
      options: {
        responsive: true, maintainAspectRatio: false,
        scales: {y: {type: "logarithmic", title: {display: true, text: "Time to delivery"},
                     ticks: {autoSkip: false, callback: function (v) {
                       return NICE.indexOf(v) >= 0 ? duration(v) : null; }}}},
        plugins: {tooltip: {callbacks: {label: function (c) {
          return c.dataset.label + ": " + duration(c.parsed.y); }}}}
      }
    });
  }
  // The table stays one click away ("The figures per day").
  var table = document.getElementById("per-day-table");
  if (table) table.open = false;
})();
