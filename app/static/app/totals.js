// The product list's totals (count, stock units, stock value of the filtered set): fetched
// after the page, since they read the whole filtered set (app.web.views.product_totals).
(function () {
  var box = document.getElementById("totals");
  if (!box) return;
  var format = new Intl.NumberFormat(undefined);
  var money = new Intl.NumberFormat(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  function show(name, text) {
    var cell = box.querySelector("[data-total=" + name + "]");
    if (cell) cell.textContent = text;
  }
  fetch(box.dataset.url, { credentials: "same-origin", headers: { Accept: "application/json" } })
    .then(function (response) {
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.json();
    })
    .then(function (totals) {
      show("count", format.format(totals.count));
      show("units", format.format(totals.units));
      // The value is a decimal string (exact); shown with grouping, two decimals.
      show("value", money.format(Number(totals.value)));
      box.dataset.value = totals.value;
      box.dataset.loaded = "true";
    })
    .catch(function () {
      ["count", "units", "value"].forEach(function (name) { show(name, "unavailable"); });
    });
})();
