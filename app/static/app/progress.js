// Live progress of unfinished pipeline runs: poll the dashboard's JSON endpoint every 2 s.
(function () {
  var script = document.currentScript;
  var endpoint = script && script.dataset.endpoint;
  var reload = !!script && script.dataset.reload === "true";
  var FINISHED = ["succeeded", "failed", "previewed"];

  function activeRows() {
    return Array.prototype.filter.call(
      document.querySelectorAll("tr[data-run]"),
      function (row) { return FINISHED.indexOf(row.dataset.status) === -1; }
    );
  }

  function update(row, run) {
    row.dataset.status = run.status;
    var status = row.querySelector("[data-role=status]");
    if (status) { status.textContent = run.status; status.className = "badge status-" + run.status; }
    var bar = row.querySelector(".progress .bar");
    if (bar) bar.style.width = run.progress + "%";
    var progress = row.querySelector(".progress");
    if (progress) progress.setAttribute("aria-valuenow", run.progress);
    var counts = row.querySelector("[data-role=counts]");
    if (counts) {
      counts.textContent = run.rows_total ? run.rows_done + "/" + run.rows_total + " rows"
        : run.steps_total ? run.steps_done + "/" + run.steps_total + " steps" : "";
    }
  }

  // The bars' widths come from aria-valuenow: an inline style would break the page's CSP.
  Array.prototype.forEach.call(document.querySelectorAll(".progress[aria-valuenow]"), function (progress) {
    var bar = progress.querySelector(".bar");
    if (bar) bar.style.width = progress.getAttribute("aria-valuenow") + "%";
  });

  function poll() {
    if (!endpoint) return;
    var rows = activeRows();
    if (!rows.length) return;
    var ids = rows.map(function (row) { return row.dataset.run; }).join(",");
    fetch(endpoint + "?ids=" + ids, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.json() : { runs: [] }; })
      .then(function (data) {
        data.runs.forEach(function (run) {
          var row = document.querySelector('tr[data-run="' + run.id + '"]');
          if (row) update(row, run);
          if (reload && FINISHED.indexOf(run.status) !== -1) window.location.reload();
        });
      })
      .catch(function () { /* transient; try again on the next tick */ })
      .finally(function () { setTimeout(poll, 2000); });
  }

  setTimeout(poll, 2000);
})();
